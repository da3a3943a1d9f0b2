package serve

import (
	"encoding/json"
	"fmt"
	"html"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/origin"
)

// TestHTMLIndexHrefs: a name that looks like a URL scheme stays a relative link
// (issue 19 point 18).
func TestHTMLIndexHrefs(t *testing.T) {
	body := string((&indexPage{path: "d", entries: []origin.Entry{
		{Name: "javascript:alert(document.domain)", Size: 1},
		{Name: "data:text", IsDir: true},
		{Name: `a"b<c>`, Size: 1},
	}}).render())
	for _, want := range []string{
		`<a href="./javascript:alert%28document.domain%29">javascript:alert(document.domain)</a>`,
		`<a href="./data:text/">data:text/</a>`,
		`<a href="./a%22b%3Cc%3E">a&#34;b&lt;c&gt;</a>`,
		`<a href="../">../</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("index lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, `href="javascript:`) || strings.Contains(body, `href="data:`) {
		t.Errorf("index links to a scheme:\n%s", body)
	}
}

// TestJSONListingEmptyFileSize: a 0-byte file's entry says "size": 0, so a client
// can tell an empty file from one whose size is not known (issue 20 point 13).
func TestJSONListingEmptyFileSize(t *testing.T) {
	ts := startTestServer(t, &stubOrigin{files: map[string][]byte{"d/empty": {}, "d/x": []byte("abc")}}, cache.Options{}, Options{})
	r := ts.get(t, "/d/?format=json")
	var items []map[string]any
	if err := json.Unmarshal(r.body, &items); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	sizes := map[string]any{}
	for _, it := range items {
		sizes[it["name"].(string)] = it["size"]
	}
	if sizes["empty"] != float64(0) || sizes["x"] != float64(3) {
		t.Errorf("sizes %v, want empty: 0, x: 3 (%s)", sizes, r.body)
	}
}

// indexFixture is a directory with subdirectories and files in every cache state.
func indexFixture() *indexPage {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	return &indexPage{
		path: "data/sets",
		entries: []origin.Entry{
			{Name: "b.bin", Size: 3 << 20, ModTime: t0.Add(2 * time.Hour)},
			{Name: "zeta", IsDir: true, ModTime: t0},
			{Name: "a.txt", Size: 1500, ModTime: t0.Add(3 * time.Hour)},
			{Name: "<script>alert(1)</script>", Size: 10, ModTime: t0.Add(time.Hour)},
			{Name: "alpha", IsDir: true, ModTime: t0.Add(time.Hour)},
			{Name: "c.iso", Size: 700 << 20, ModTime: t0},
		},
		objects: map[string]cache.ObjectInfo{
			"b.bin": {Size: 3 << 20, CachedBytes: 3 << 20, Complete: true, Pinned: true},
			"c.iso": {Size: 700 << 20, CachedBytes: 175 << 20},
		},
		used: 178 << 20, limit: 1 << 30, objectCount: 2,
	}
}

// rowNames returns the names of the table's rows in order.
func rowNames(body string) []string {
	var names []string
	for _, m := range regexp.MustCompile(`<td class="name"><a href="[^"]*">([^<]*)</a>`).FindAllStringSubmatch(body, -1) {
		names = append(names, html.UnescapeString(m[1]))
	}
	return names
}

// TestHTMLIndexTable: the index is a table with a header row, directories first,
// sorted by the column the query names, with breadcrumbs, the exact size in a
// tooltip, cached %, a pin mark and the cache's fill level; no external assets
// (issue 20 point 14).
func TestHTMLIndexTable(t *testing.T) {
	ip := indexFixture()
	body := string(ip.render())
	for _, want := range []string{
		`<table`, `<thead>`, `>Name`, `>Size`, `>Modified`, `>Cached`,
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		`title="3,145,728 bytes"`, `title="1,500 bytes"`,
		`>100%<`, `>25%<`, `class="pin"`,
		`<a href="../../">`, `<a href="../">data</a>`, `<a href="./">sets</a>`,
		`&lt;script&gt;alert(1)&lt;/script&gt;`, `href="./%3Cscript%3Ealert%281%29%3C/script%3E"`,
		`178.0 MiB of 1.0 GiB`, `2 objects cached`, `6 entries here`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("index lacks %s", want)
		}
	}
	for _, bad := range []string{"<script>", "<link", " src=", "http://", "https://", "url("} {
		if strings.Contains(body, bad) {
			t.Errorf("index holds %q", bad)
		}
	}
	if got, want := rowNames(body), []string{"alpha/", "zeta/", "<script>alert(1)</script>", "a.txt", "b.bin", "c.iso"}; !slices.Equal(got, want) {
		t.Errorf("default order %q, want %q", got, want)
	}
	for _, c := range []struct {
		sort, order string
		want        []string
	}{
		{"size", "desc", []string{"alpha/", "zeta/", "c.iso", "b.bin", "a.txt", "<script>alert(1)</script>"}},
		{"size", "asc", []string{"alpha/", "zeta/", "<script>alert(1)</script>", "a.txt", "b.bin", "c.iso"}},
		{"mtime", "desc", []string{"alpha/", "zeta/", "a.txt", "b.bin", "<script>alert(1)</script>", "c.iso"}},
		{"cached", "desc", []string{"alpha/", "zeta/", "b.bin", "c.iso", "<script>alert(1)</script>", "a.txt"}},
		{"name", "desc", []string{"zeta/", "alpha/", "c.iso", "b.bin", "a.txt", "<script>alert(1)</script>"}},
		{"bogus", "sideways", []string{"alpha/", "zeta/", "<script>alert(1)</script>", "a.txt", "b.bin", "c.iso"}},
	} {
		ip := indexFixture()
		ip.setSort(url.Values{"sort": {c.sort}, "order": {c.order}})
		body := string(ip.render())
		if got := rowNames(body); !slices.Equal(got, c.want) {
			t.Errorf("sort=%s order=%s: %q, want %q", c.sort, c.order, got, c.want)
		}
	}
	// The column sorted by links to the other order; the others to ascending.
	ip = indexFixture()
	ip.setSort(url.Values{"sort": {"size"}, "order": {"asc"}})
	body = string(ip.render())
	for _, want := range []string{`href="?sort=size&amp;order=desc"`, `href="?sort=name&amp;order=asc"`, `href="?sort=mtime&amp;order=asc"`, `href="?sort=cached&amp;order=asc"`, `aria-sort="ascending"`} {
		if !strings.Contains(body, want) {
			t.Errorf("sorted by size: lacks %s", want)
		}
	}
}

// TestHTMLIndexServed: the server fills the index's cache column from the cache and
// redirects a directory URL that is not in its canonical form, so that the relative
// breadcrumb links resolve.
func TestHTMLIndexServed(t *testing.T) {
	ts := startTestServer(t, &stubOrigin{files: map[string][]byte{"d/x": randomBytes(4096), "d/y": []byte("y")}}, cache.Options{}, Options{})
	ts.get(t, "/d/x")
	r := ts.get(t, "/d/?sort=cached&order=desc")
	if r.StatusCode != 200 || !strings.Contains(string(r.body), ">100%<") {
		t.Fatalf("%d:\n%s", r.StatusCode, r.body)
	}
	if got := rowNames(string(r.body)); !slices.Equal(got, []string{"x", "y"}) {
		t.Errorf("rows %q", got)
	}
	if r := ts.get(t, "//d//"); r.StatusCode != 301 || r.Header.Get("Location") != "/d/" {
		t.Errorf("//d//: %d, Location %q", r.StatusCode, r.Header.Get("Location"))
	}
}

// TestJSONListingCostsNoStatPerEntry: the JSON listing of a directory whose origin
// listing lacks exact sizes stated every file, one origin request per entry however
// big the directory (review of issue 19 point 8). It now writes what it knows
// exactly (the listing's exact entries, cached stats) and leaves the size out of the
// others, which a reader (another cachegate) takes as unknown.
func TestJSONListingCostsNoStatPerEntry(t *testing.T) {
	files := map[string][]byte{}
	for i := 0; i < 100; i++ {
		files[fmt.Sprintf("d/f%03d", i)] = []byte("x")
	}
	o := &stubOrigin{files: files, inexact: true}
	ts := startTestServer(t, o, cache.Options{}, Options{})
	if r := ts.get(t, "/d/f007"); r.StatusCode != 200 { // a stat of one file, now cached
		t.Fatalf("GET /d/f007: %d", r.StatusCode)
	}
	before := o.statCount()
	r := ts.get(t, "/d/?format=json")
	if n := o.statCount() - before; n > 1 {
		t.Fatalf("the JSON listing of 100 inexact entries sent %d origin stats", n)
	}
	var items []map[string]any
	if err := json.Unmarshal(r.body, &items); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	if len(items) != 100 {
		t.Fatalf("%d entries, want 100", len(items))
	}
	for _, it := range items {
		size, has := it["size"]
		switch name := it["name"].(string); {
		case name == "f007" && size != float64(1):
			t.Errorf("f007, whose stat is cached: size %v, want 1", size)
		case name != "f007" && has:
			t.Errorf("%s, whose size is not known: size %v, want none", name, size)
		}
	}
	entries, err := origin.ParseListing("application/json", r.body, &url.URL{Scheme: "http", Host: "h", Path: "/d/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Exact != (e.Name == "f007") {
			t.Errorf("read back by another cachegate, %s is exact: %v", e.Name, e.Exact)
		}
	}
}
