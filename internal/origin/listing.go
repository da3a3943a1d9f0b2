package origin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/html"
)

// ListingEntry is one element of a JSON directory listing: the shape nginx's
// `autoindex_format json` produces, which cachegate's own server also emits (adding
// "etag") so that one cachegate can be the origin of another.
type ListingEntry struct {
	Name  string `json:"name"`
	Type  string `json:"type"` // "file", "directory" (nginx also says "other")
	MTime string `json:"mtime"`
	Size  int64  `json:"size,omitempty"`
	ETag  string `json:"etag,omitempty"`
}

// ParseListing parses a directory listing body. contentType selects the format: JSON
// (nginx autoindex_format json, cachegate) or HTML (nginx autoindex, Apache,
// python -m http.server, Go's http.FileServer). dirURL is the listing's own URL; HTML
// links are resolved against it and only direct children are kept.
func ParseListing(contentType string, body []byte, dirURL *url.URL) ([]Entry, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	trimmed := bytes.TrimSpace(body)
	if mt == "application/json" || (mt == "" && len(trimmed) > 0 && trimmed[0] == '[') {
		return parseJSONListing(trimmed)
	}
	if mt == "text/html" || mt == "" || mt == "text/plain" {
		return parseHTMLListing(body, dirURL)
	}
	return nil, fmt.Errorf("directory listing has unsupported content type %q", contentType)
}

func parseJSONListing(body []byte) ([]Entry, error) {
	var items []ListingEntry
	if err := json.Unmarshal(body, &items); err != nil {
		return nil, fmt.Errorf("parse JSON directory listing: %w", err)
	}
	out := make([]Entry, 0, len(items))
	for _, it := range items {
		if !validName(it.Name) {
			continue
		}
		e := Entry{Name: it.Name, Exact: true}
		switch it.Type {
		case "directory":
			e.IsDir = true
		case "file":
			if it.Size < 0 {
				continue
			}
			e.Size = it.Size
			if it.ETag != "" && strongETag(it.ETag) {
				e.Version = it.ETag
			}
		default:
			continue
		}
		t, err := http.ParseTime(it.MTime)
		if err != nil {
			if t, err = time.Parse(time.RFC3339Nano, it.MTime); err != nil {
				e.Exact = false
			}
		}
		e.ModTime = t
		out = append(out, e)
	}
	return out, nil
}

// nginxLine matches what nginx's HTML autoindex prints after each link:
// "   26-Nov-2026 00:54     1234" (or "-" for a directory).
var nginxLine = regexp.MustCompile(`^\s+(\d{2}-[A-Za-z]{3}-\d{4} \d{2}:\d{2})\s+(\d+|-)`)

func parseHTMLListing(body []byte, dirURL *url.URL) ([]Entry, error) {
	base := *dirURL
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
		base.RawPath = ""
	}
	z := html.NewTokenizer(bytes.NewReader(body))
	var out []Entry
	seen := map[string]bool{}
	var pending *Entry // the entry whose <a> was just closed, for nginx's trailing text
	depth := 0         // nesting inside <a>
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return out, nil
		case html.StartTagToken:
			name, hasAttr := z.TagName()
			if string(name) != "a" {
				pending = nil
				continue
			}
			depth++
			pending = nil
			for hasAttr {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				if string(k) != "href" {
					continue
				}
				e, ok := childFromHref(&base, string(v))
				if ok && !seen[e.Name] {
					seen[e.Name] = true
					out = append(out, e)
				}
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if string(name) == "a" && depth > 0 {
				depth--
				if len(out) > 0 {
					pending = &out[len(out)-1]
				}
			}
		case html.TextToken:
			if pending != nil {
				if m := nginxLine.FindSubmatch(z.Text()); m != nil {
					if t, err := time.Parse("02-Jan-2006 15:04", string(m[1])); err == nil {
						pending.ModTime = t
					}
					if n, err := strconv.ParseInt(string(m[2]), 10, 64); err == nil && !pending.IsDir {
						pending.Size = n
					}
				}
				pending = nil
			}
		}
	}
}

// childFromHref turns a link of an HTML index into an entry when it names a direct
// child of base. The href is authoritative; the link text may be truncated (nginx cuts
// names over 50 characters) or decorated.
func childFromHref(base *url.URL, href string) (Entry, bool) {
	if href == "" || strings.HasPrefix(href, "?") || strings.HasPrefix(href, "#") {
		return Entry{}, false
	}
	ref, err := url.Parse(href)
	if err != nil {
		return Entry{}, false
	}
	u := base.ResolveReference(ref)
	if u.Scheme != base.Scheme || u.Host != base.Host || u.RawQuery != "" {
		return Entry{}, false
	}
	p := u.Path
	if !strings.HasPrefix(p, base.Path) {
		return Entry{}, false
	}
	rest := p[len(base.Path):]
	isDir := strings.HasSuffix(rest, "/")
	rest = strings.TrimSuffix(rest, "/")
	if !validName(rest) || path.Clean("/"+rest) != "/"+rest {
		return Entry{}, false
	}
	return Entry{Name: rest, IsDir: isDir}, true
}

// strongETag reports whether an ETag may be used with If-Match (RFC 9110 §13.1.1 needs
// strong comparison there).
func strongETag(tag string) bool {
	return len(tag) >= 2 && tag[0] == '"' && tag[len(tag)-1] == '"'
}
