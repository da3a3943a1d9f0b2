package origin

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/url"
	"path"
	"sort"
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
	Size  *int64 `json:"size,omitempty"` // nil: not given, so not known (an empty file says 0)
	ETag  string `json:"etag,omitempty"`
}

// ParseListing parses a directory listing body. contentType selects the format: JSON
// (nginx autoindex_format json, cachegate) or HTML (nginx autoindex, Apache,
// python -m http.server, Go's http.FileServer). dirURL is the listing's own URL; HTML
// links are resolved against it and only direct children are kept.
func ParseListing(contentType string, body []byte, dirURL *url.URL) ([]Entry, error) {
	return ReadListing(contentType, bytes.NewReader(body), dirURL, DefaultMaxDirEntries)
}

// ReadListing is ParseListing over a stream: it holds the entries and one entry's
// text at a time, never the whole body, and fails with ErrTooManyEntries past
// maxEntries entries.
func ReadListing(contentType string, r io.Reader, dirURL *url.URL, maxEntries int) ([]Entry, error) {
	return readListing(contentType, r, dirURL, maxEntries, false)
}

// readListing is ReadListing, taking an nginx HTML index's byte sizes and minute
// times as exact when trustHTML is set (Options.TrustHTMLIndex).
func readListing(contentType string, r io.Reader, dirURL *url.URL, maxEntries int, trustHTML bool) ([]Entry, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	br := bufio.NewReaderSize(r, 64<<10)
	b := &listingBuilder{max: maxEntries, dir: dirURL.Redacted(), trustHTML: trustHTML}
	var err error
	switch {
	case mt == "application/json" || (mt == "" && firstNonSpace(br) == '['):
		err = parseJSONListing(br, b)
	case mt == "text/html" || mt == "" || mt == "text/plain":
		err = parseHTMLListing(br, dirURL, b)
	default:
		return nil, fmt.Errorf("directory listing has unsupported content type %q", contentType)
	}
	if err != nil {
		return nil, err
	}
	return b.finish(), nil
}

// firstNonSpace returns the first byte after leading white space without consuming
// it (0 at the end of the stream).
func firstNonSpace(br *bufio.Reader) byte {
	for {
		c, err := br.ReadByte()
		if err != nil {
			return 0
		}
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			br.UnreadByte()
			return c
		}
	}
}

// maxNameLen is the longest name a Linux filesystem (and so any tool) can open.
const maxNameLen = 255

// maxListingItem bounds the text of one JSON listing element, so that a hostile
// element cannot make the decoder hold an unbounded value.
const maxListingItem = 1 << 20

// listingBuilder collects the entries of one listing: it skips names no tool could
// open, refuses more than max entries, and (in finish) keeps one entry per name.
type listingBuilder struct {
	max      int
	dir      string // the listing's URL, for logs
	out      []Entry
	long     int    // names skipped for being longer than maxNameLen
	longName string // one of them, for the log
	// trustHTML: an nginx HTML line with a size in bytes makes its file exact.
	trustHTML bool
}

func (b *listingBuilder) add(e Entry) error {
	if len(e.Name) > maxNameLen {
		if b.long++; b.longName == "" {
			b.longName = e.Name[:64] + "…"
		}
		return nil
	}
	if len(b.out) >= b.max {
		return fmt.Errorf("%w: more than %d in %s (raise --max-dir-entries to list it)", ErrTooManyEntries, b.max, b.dir)
	}
	b.out = append(b.out, e)
	return nil
}

// finish returns the entries in listing order with one entry per name: a name listed
// both as a file and as a directory is the directory (a JSON listing can say both;
// nothing could open the file by that name beside the directory), else the first.
func (b *listingBuilder) finish() []Entry {
	if b.long > 0 {
		slog.Warn("skipped listing entries with names longer than 255 bytes: no tool could open them", "listing", b.dir, "count", b.long, "example", b.longName)
	}
	// Listings usually come sorted (nginx, S3): then no name repeats.
	sorted := true
	for i := 1; i < len(b.out) && sorted; i++ {
		sorted = b.out[i-1].Name < b.out[i].Name
	}
	if sorted {
		return b.out
	}
	// Sort positions, not entries, to find equal names in O(n log n) with 4 bytes
	// per entry and keep the listing's order.
	idx := make([]int32, len(b.out))
	for i := range idx {
		idx[i] = int32(i)
	}
	sort.SliceStable(idx, func(i, j int) bool { return b.out[idx[i]].Name < b.out[idx[j]].Name })
	var drop []bool // by position, made at the first duplicate
	conflicts, example := 0, ""
	for i := 0; i < len(idx); {
		j, keep, dir, file := i, idx[i], false, false
		for ; j < len(idx) && b.out[idx[j]].Name == b.out[idx[i]].Name; j++ {
			if b.out[idx[j]].IsDir {
				if !dir {
					keep = idx[j]
				}
				dir = true
			} else {
				file = true
			}
		}
		for k := i; k < j; k++ {
			if idx[k] != keep {
				if drop == nil {
					drop = make([]bool, len(b.out))
				}
				drop[idx[k]] = true
			}
		}
		if dir && file {
			if conflicts++; example == "" {
				example = b.out[keep].Name
			}
		}
		i = j
	}
	if conflicts > 0 {
		slog.Warn("listing names entries both as a file and as a directory; showing the directory", "listing", b.dir, "count", conflicts, "example", example)
	}
	if drop == nil {
		return b.out
	}
	out := b.out[:0]
	for i, e := range b.out {
		if !drop[i] {
			out = append(out, e)
		}
	}
	return out
}

// nginxLine splits what nginx's HTML autoindex prints after each link,
// "   26-Nov-2026 00:54     1234" (or "-" for a directory), into its time and size,
// as the regular expression
//
//	^\s+(\d{2}-[A-Za-z]{3}-\d{4} \d{2}:\d{2})\s+(\d+|-)\s*$
//
// would (FuzzNginxLineMatchesRegexp), at a tenth of its cost: the regexp was 40% of
// the CPU of a 100,000-entry listing. With autoindex_exact_size off the size reads
// "12K" and does not match: such an entry keeps no size and stays inexact.
func nginxLine(b []byte) (when, size []byte, ok bool) {
	i := skipSpace(b, 0)
	const layout = "02-Jan-2006 15:04"
	if i == 0 || len(b)-i < len(layout) {
		return nil, nil, false
	}
	for j := 0; j < len(layout); j++ {
		c, l := b[i+j], layout[j]
		switch {
		case l >= '0' && l <= '9':
			if c < '0' || c > '9' {
				return nil, nil, false
			}
		case l >= 'A' && l <= 'z':
			if (c|0x20) < 'a' || (c|0x20) > 'z' {
				return nil, nil, false
			}
		case c != l:
			return nil, nil, false
		}
	}
	when = b[i : i+len(layout)]
	i += len(layout)
	j := skipSpace(b, i)
	if j == i || j == len(b) {
		return nil, nil, false
	}
	k := j
	if b[k] == '-' {
		k++
	} else {
		for k < len(b) && b[k] >= '0' && b[k] <= '9' {
			k++
		}
	}
	if k == j || skipSpace(b, k) != len(b) {
		return nil, nil, false
	}
	return when, b[j:k], true
}

// skipSpace returns the index of the first byte at or after i that is not white
// space as the regexp \s means it (tab, newline, form feed, carriage return, space).
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\f' || b[i] == '\r') {
		i++
	}
	return i
}

// maxHTMLToken bounds the text of one HTML token (a tag with its attributes, or the
// text between two tags) the tokenizer may buffer.
const maxHTMLToken = 1 << 20

func parseHTMLListing(r io.Reader, dirURL *url.URL, b *listingBuilder) error {
	base := *dirURL
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
		base.RawPath = ""
	}
	z := html.NewTokenizer(r)
	z.SetMaxBuf(maxHTMLToken)
	pending := -1 // the entry whose <a> was just closed, for nginx's trailing text
	added := -1   // the entry the open <a> added, if any
	depth := 0    // nesting inside <a>
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			if err := z.Err(); err != io.EOF {
				return fmt.Errorf("read HTML directory listing: %w", err)
			}
			return nil
		case html.StartTagToken:
			name, hasAttr := z.TagName()
			pending = -1
			if string(name) != "a" {
				continue
			}
			depth++
			added = -1
			for hasAttr {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				if string(k) != "href" {
					continue
				}
				// Index pages often link an entry twice in a row (icon, then
				// name); finish drops duplicates further apart.
				e, ok := childFromHref(&base, string(v))
				if n := len(b.out); ok && (n == 0 || b.out[n-1].Name != e.Name) {
					if err := b.add(e); err != nil {
						return err
					}
					if len(b.out) > n {
						added = n
					}
				}
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if string(name) == "a" && depth > 0 {
				depth--
				pending, added = added, -1
			}
		case html.TextToken:
			if pending >= 0 {
				e := &b.out[pending]
				if when, size, ok := nginxLine(z.Text()); ok {
					if t, err := time.Parse("02-Jan-2006 15:04", string(when)); err == nil {
						e.ModTime = t
					}
					// The entry stays inexact although the size is in bytes:
					// nginx prints the time to the minute, and a stat through
					// the mount shows the file's own second (one HEAD), unless
					// the user would rather see the minute than pay a HEAD a file.
					if n, err := strconv.ParseInt(string(size), 10, 64); err == nil && !e.IsDir {
						e.Size = n
						e.Exact = b.trustHTML && !e.ModTime.IsZero()
					}
				}
				pending = -1
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
