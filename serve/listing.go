package serve

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"strings"

	"github.com/cachegate/cachegate/internal/origin"
)

// directory answers for a directory URL: JSON (the format internal/origin reads, so
// one cachegate can be another's origin) for ?format=json or Accept: application/json,
// else an HTML index.
func (c *conn) directory(req *request, rawPath, p, query string) bool {
	html := !wantsJSON(req.accept, query)
	if canon := "/" + origin.EscapePath(p) + "/"; html && p != "" && rawPath != canon {
		// The index's links are relative (breadcrumbs climb with ../): they resolve
		// only against the directory's canonical URL, e.g. not against //d//.
		if unescaped, err := url.PathUnescape(rawPath); err != nil || unescaped != "/"+p+"/" {
			if query != "" {
				canon += "?" + query
			}
			return c.redirect(req, canon)
		}
	}
	l, err := c.s.c.List(c.context(), p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return c.simple(404, "not found", req.keepAlive)
		}
		// A file asked for with a trailing slash is not a directory.
		if e, serr := c.s.c.Stat(c.context(), p); serr == nil && !e.IsDir {
			return c.simple(404, "not found", req.keepAlive)
		}
		return c.originFailed(req, "list", p, err)
	}
	entries := c.s.visible(p, l.Entries)
	var body []byte
	var ct string
	if !html {
		items := make([]listingEntry, 0, len(entries))
		// Entries the origin's listing did not give exactly (an HTML index rounds
		// sizes) get what the cache knows of them without asking the origin, as
		// the mount's readdirplus does: a listing never costs a request per entry.
		// What stays unknown is written without a size, which a reader of this
		// listing (another cachegate) takes as unknown and stats when it needs to.
		ctx := c.context()
		for _, e := range entries {
			if ctx.Err() != nil {
				c.s.log.Debug("listing abandoned: the client went away", "path", "/"+p)
				return false
			}
			known := e.IsDir || e.Exact
			if !known {
				if x, ok := c.s.c.LookupListed(l, p, e.Name); ok {
					e, known = x, true
				}
			}
			it := listingEntry{Name: e.Name, Type: "directory", MTime: e.ModTime.UTC().Format(http.TimeFormat)}
			if !e.IsDir {
				it.Type = "file"
				if known {
					size := e.Size
					it.Size = &size
				}
				if e.Version != "" {
					it.ETag = etagFor(e.Version)
				}
			}
			items = append(items, it)
		}
		body, _ = json.Marshal(items)
		body = append(body, '\n')
		ct = "application/json"
	} else {
		ip := &indexPage{path: p, entries: entries, objects: c.s.c.CachedIn(p, entries)}
		q, _ := url.ParseQuery(query)
		ip.setSort(q)
		st := c.s.c.Status()
		ip.used, ip.limit, ip.objectCount = st.UsedBytes, st.LimitBytes, st.Objects
		body = ip.render()
		ct = "text/html; charset=utf-8"
	}
	return c.ok(req, ct, body, "Vary", "Accept")
}

// listingEntry is origin.ListingEntry as this server writes it: a file's size is
// there whenever it is known exactly, 0 included (an empty file is not one of
// unknown size), and left out when it is not; a directory has none, as in nginx's
// autoindex_format json.
type listingEntry struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	MTime string `json:"mtime"`
	Size  *int64 `json:"size,omitempty"`
	ETag  string `json:"etag,omitempty"`
}

func wantsJSON(accept, query string) bool {
	for _, kv := range strings.Split(query, "&") {
		if kv == "format=json" {
			return true
		}
	}
	return strings.Contains(accept, "application/json") && !strings.HasPrefix(accept, "text/html")
}
