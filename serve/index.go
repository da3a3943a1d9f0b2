package serve

import (
	"html"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/origin"
	"github.com/cachegate/cachegate/internal/units"
)

// indexPage is a directory's HTML index: a table of its entries, directories first,
// sortable by any column through links (no JavaScript), with what the cache holds
// of each file and the cache's fill level. Everything is in the page (inline CSS,
// no external assets), every name is escaped, and every link is relative ("./name",
// "../"), so a name such as "javascript:x" is a path and the page works behind a
// proxy that mounts the server under a prefix.
type indexPage struct {
	path        string // the directory, "" for the root
	entries     []origin.Entry
	objects     map[string]cache.ObjectInfo // cached files by name
	sortBy      string                      // name, size, mtime or cached
	desc        bool
	used, limit int64 // the cache's bytes on disk and limit
	objectCount int
}

// indexColumns are the table's columns: their sort key and heading.
var indexColumns = []struct{ key, title string }{
	{"name", "Name"}, {"size", "Size"}, {"mtime", "Modified"}, {"cached", "Cached"},
}

// setSort takes the order from the query (?sort=name|size|mtime|cached&order=asc|desc);
// anything else means by name, ascending.
func (ip *indexPage) setSort(q url.Values) {
	ip.sortBy, ip.desc = "name", false
	for _, c := range indexColumns {
		if q.Get("sort") == c.key {
			ip.sortBy = c.key
		}
	}
	ip.desc = q.Get("order") == "desc"
}

// fraction is how much of file e the cache holds, 0 to 1.
func (ip *indexPage) fraction(e origin.Entry) float64 {
	o, ok := ip.objects[e.Name]
	switch {
	case !ok:
		return 0
	case o.Size <= 0 || o.Complete:
		return 1
	}
	return float64(o.CachedBytes) / float64(o.Size)
}

// sorted returns the entries in the page's order: directories first, then files;
// each group by the sort column, ties by name (ascending whatever the order).
func (ip *indexPage) sorted() []origin.Entry {
	out := append([]origin.Entry(nil), ip.entries...)
	cmp := func(a, b origin.Entry) int {
		switch ip.sortBy {
		case "size":
			if !a.IsDir {
				return compare(a.Size, b.Size)
			}
		case "mtime":
			return a.ModTime.Compare(b.ModTime)
		case "cached":
			if !a.IsDir {
				return compare(ip.fraction(a), ip.fraction(b))
			}
		case "name":
			return strings.Compare(a.Name, b.Name)
		}
		return 0
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.IsDir != b.IsDir {
			return a.IsDir
		}
		c := cmp(a, b)
		if ip.desc {
			c = -c
		}
		if c == 0 {
			return a.Name < b.Name
		}
		return c < 0
	})
	return out
}

func compare[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// indexCSS is the page's only style: system fonts, a table that fits a phone
// (the Modified column goes below 560px), light and dark schemes.
const indexCSS = `
:root{color-scheme:light dark;--fg:#1f2328;--muted:#656d76;--line:#d8dee4;--head:#f6f8fa;--link:#0969da;--bar:#d0d7de;--fill:#2da44e;--part:#bf8700;--pin:#8250df}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#8d96a0;--line:#30363d;--head:#161b22;--link:#4493f8;--bar:#30363d;--fill:#3fb950;--part:#d29922;--pin:#a371f7}}
*{box-sizing:border-box}
body{margin:0;padding:24px 16px;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg)}
main{max-width:1000px;margin:0 auto}
h1{font-size:20px;font-weight:600;margin:0 0 16px;overflow-wrap:anywhere}
h1 .label{color:var(--muted);font-weight:400}
h1 a{color:var(--link);text-decoration:none}
h1 a:hover{text-decoration:underline}
h1 .sep{color:var(--muted);margin:0 2px}
table{width:100%;border-collapse:collapse;border:1px solid var(--line);border-radius:6px}
th,td{padding:7px 12px;text-align:left;border-bottom:1px solid var(--line);vertical-align:middle}
th{background:var(--head);font-size:13px;font-weight:600;white-space:nowrap}
th a{color:var(--fg);text-decoration:none}
th a:hover{text-decoration:underline}
th[aria-sort] a{color:var(--link)}
td.name{overflow-wrap:anywhere}
td.name a{color:var(--link);text-decoration:none}
td.name a:hover{text-decoration:underline}
tr.dir td.name a{font-weight:600}
td.size,th.size{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.mtime{white-space:nowrap;color:var(--muted);font-variant-numeric:tabular-nums}
td.cached{white-space:nowrap;font-variant-numeric:tabular-nums;width:1%}
td.muted{color:var(--muted)}
tbody tr:last-child td{border-bottom:0}
tbody tr:hover{background:var(--head)}
.bar{display:inline-block;width:60px;height:8px;border-radius:4px;background:var(--bar);vertical-align:middle;margin-right:8px;overflow:hidden}
.bar span{display:block;height:100%;background:var(--part)}
.bar span.full{background:var(--fill)}
.pct{display:inline-block;min-width:3.2em;text-align:right}
.pct.none{color:var(--muted)}
.pin{display:inline-block;margin-left:6px;padding:0 6px;border:1px solid var(--pin);border-radius:10px;color:var(--pin);font-size:11px;line-height:16px}
footer{max-width:1000px;margin:14px auto 0;color:var(--muted);font-size:13px;display:flex;flex-wrap:wrap;gap:4px 14px;align-items:center}
footer .bar{width:120px}
@media (max-width:560px){body{padding:14px 8px;font-size:14px}th,td{padding:6px 6px}.mtime{display:none}.bar{display:none}h1{font-size:17px}}
`

// render writes the page.
func (ip *indexPage) render() []byte {
	var b strings.Builder
	title := html.EscapeString("/" + ip.path + "/")
	if ip.path == "" {
		title = "/"
	}
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n" +
		"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>Index of ")
	b.WriteString(title)
	b.WriteString("</title>\n<style>")
	b.WriteString(indexCSS)
	b.WriteString("</style></head>\n<body><main>\n<h1><span class=\"label\">Index of </span>")
	ip.breadcrumbs(&b)
	b.WriteString("</h1>\n<table>\n<thead><tr>")
	for _, c := range indexColumns {
		ip.heading(&b, c.key, c.title)
	}
	b.WriteString("</tr></thead>\n<tbody>\n")
	if ip.path != "" {
		b.WriteString("<tr class=\"up\"><td class=\"name up\"><a href=\"../\">../</a></td><td class=\"size\"></td><td class=\"mtime\"></td><td class=\"cached\"></td></tr>\n")
	}
	for _, e := range ip.sorted() {
		ip.row(&b, e)
	}
	b.WriteString("</tbody>\n</table>\n</main>\n<footer>")
	ip.footer(&b)
	b.WriteString("</footer>\n</body></html>\n")
	return []byte(b.String())
}

// breadcrumbs writes the directory's path with a link on each component: the page's
// URL is the directory's canonical one (directory redirects others), so component i
// of n is len(n)-1-i levels up.
func (ip *indexPage) breadcrumbs(b *strings.Builder) {
	var parts []string
	if ip.path != "" {
		parts = strings.Split(ip.path, "/")
	}
	up := func(n int) string {
		if n == 0 {
			return "./"
		}
		return strings.Repeat("../", n)
	}
	b.WriteString(`<a href="` + up(len(parts)) + `">/</a>`)
	for i, p := range parts {
		b.WriteString(`<a href="` + up(len(parts)-1-i) + `">` + html.EscapeString(p) + `</a><span class="sep">/</span>`)
	}
}

// heading writes a column heading linking to the table sorted by it: the column
// sorted by now links to the other order, the others to ascending.
func (ip *indexPage) heading(b *strings.Builder, key, title string) {
	order, arrow, aria := "asc", "", ""
	if ip.sortBy == key {
		if ip.desc {
			arrow, aria = " ▼", ` aria-sort="descending"`
		} else {
			order, arrow, aria = "desc", " ▲", ` aria-sort="ascending"`
		}
	}
	b.WriteString(`<th class="` + key + `"` + aria + `><a href="?sort=` + key + `&amp;order=` + order + `">` + title + arrow + `</a></th>`)
}

// row writes one entry's row.
func (ip *indexPage) row(b *strings.Builder, e origin.Entry) {
	// "./" keeps every href relative: a name such as "javascript:alert(1)" would
	// otherwise be read as a URL scheme.
	href, name := "./"+origin.EscapePath(e.Name), e.Name
	class := "file"
	if e.IsDir {
		href, name, class = href+"/", name+"/", "dir"
	}
	b.WriteString(`<tr class="` + class + `"><td class="name"><a href="` + html.EscapeString(href) + `">` + html.EscapeString(name) + `</a></td>`)
	if e.IsDir {
		b.WriteString(`<td class="size muted">—</td>`)
	} else {
		b.WriteString(`<td class="size" title="` + groupDigits(e.Size) + ` bytes">` + units.FormatSize(e.Size) + `</td>`)
	}
	if e.ModTime.IsZero() {
		b.WriteString(`<td class="mtime"></td>`)
	} else {
		t := e.ModTime.UTC()
		b.WriteString(`<td class="mtime"><time datetime="` + t.Format(time.RFC3339) + `">` + t.Format("2006-01-02 15:04") + `</time></td>`)
	}
	b.WriteString(`<td class="cached">`)
	if !e.IsDir {
		f := ip.fraction(e)
		pct := int(f * 100)
		if f > 0 && pct == 0 {
			pct = 1 // a few bytes of a huge file are not nothing
		}
		fill := ""
		if f >= 1 {
			fill = ` class="full"`
		}
		none := ""
		if pct == 0 {
			none = " none"
		}
		b.WriteString(`<span class="bar"><span` + fill + ` style="width:` + strconv.Itoa(pct) + `%"></span></span><span class="pct` + none + `">` + strconv.Itoa(pct) + `%</span>`)
		if ip.objects[e.Name].Pinned {
			b.WriteString(`<span class="pin" title="pinned: never evicted">pinned</span>`)
		}
	}
	b.WriteString("</td></tr>\n")
}

// footer writes the cache's fill level.
func (ip *indexPage) footer(b *strings.Builder) {
	var pct float64
	if ip.limit > 0 {
		pct = float64(ip.used) / float64(ip.limit) * 100
	}
	prec := 0
	if pct < 10 {
		prec = 1 // 0.8%, not 0%, of a large cache
	}
	b.WriteString(`<span>cache <span class="bar"><span class="full" style="width:` + strconv.FormatFloat(min(pct, 100), 'f', 1, 64) + `%"></span></span>` +
		units.FormatSize(ip.used) + ` of ` + units.FormatSize(ip.limit) + ` (` + strconv.FormatFloat(pct, 'f', prec, 64) + `%) used</span><span>` +
		plural(ip.objectCount, "object", "objects") + ` cached</span><span>` + plural(len(ip.entries), "entry", "entries") + ` here</span><span>served by cachegate</span>`)
}

// groupDigits formats n with thousands separators: 1048576 -> "1,048,576".
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// plural says "1 entry", "2 entries".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
