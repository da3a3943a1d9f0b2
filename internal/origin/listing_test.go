package origin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func mustURL(t testing.TB, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

const nginxHTML = `<html>
<head><title>Index of /data/</title></head>
<body>
<h1>Index of /data/</h1><hr><pre><a href="../">../</a>
<a href="sub%20dir/">sub dir/</a>                                          26-Nov-2026 00:54                   -
<a href="a%2Bb%25c%23d.txt">a+b%c#d.txt</a>                                        26-Nov-2026 00:55                1234
<a href="this-is-a-very-long-file-name-that-nginx-truncates-in-its-html-output.bin">this-is-a-very-long-file-name-that-nginx-trunc..&gt;</a> 25-Nov-2026 23:01             7
<a href="%C3%BCn%C3%AF.txt">&#252;n&#239;.txt</a>                                            26-Nov-2026 00:55                   0
</pre><hr></body>
</html>
`

func TestParseNginxHTML(t *testing.T) {
	got, err := ParseListing("text/html", []byte(nginxHTML), mustURL(t, "http://h/data/"))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name  string
		dir   bool
		size  int64
		mtime string
	}{
		{"sub dir", true, 0, "26-Nov-2026 00:54"},
		{"a+b%c#d.txt", false, 1234, "26-Nov-2026 00:55"},
		{"this-is-a-very-long-file-name-that-nginx-truncates-in-its-html-output.bin", false, 7, "25-Nov-2026 23:01"},
		{"ünï.txt", false, 0, "26-Nov-2026 00:55"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries %+v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		g := got[i]
		mt, _ := time.Parse("02-Jan-2006 15:04", w.mtime)
		if g.Name != w.name || g.IsDir != w.dir || g.Size != w.size || !g.ModTime.Equal(mt) || g.Exact {
			t.Errorf("entry %d = %+v, want %+v (inexact)", i, g, w)
		}
	}
}

// TestParseNginxHTMLTrusted: with Options.TrustHTMLIndex, a file whose size nginx
// prints in bytes is exact, with its time to the minute; a rounded size, a line
// without a time and a directory stay as they were.
func TestParseNginxHTMLTrusted(t *testing.T) {
	body := `<html><body><pre><a href="../">../</a>
<a href="sub/">sub/</a>                                          26-Nov-2026 00:54                   -
<a href="a.txt">a.txt</a>                                        26-Nov-2026 00:55                1234
<a href="b.bin">b.bin</a>                                        26-Nov-2026 00:55                 12K
<a href="c.txt">c.txt</a>
</pre></body></html>`
	got, err := readListing("text/html", strings.NewReader(body), mustURL(t, "http://h/"), 100, true)
	if err != nil {
		t.Fatal(err)
	}
	exact := map[string]bool{}
	for _, e := range got {
		exact[e.Name] = e.Exact
		if e.Name == "a.txt" && (e.Size != 1234 || !e.ModTime.Equal(time.Date(2026, 11, 26, 0, 55, 0, 0, time.UTC))) {
			t.Errorf("a.txt = %+v, want 1234 bytes at 26-Nov-2026 00:55 UTC", e)
		}
	}
	if len(got) != 4 || !exact["a.txt"] || exact["b.bin"] || exact["c.txt"] || exact["sub"] {
		t.Errorf("exact = %v, want only a.txt of 4 entries", exact)
	}
	// Not trusted (the default): the same line is inexact.
	if got, err := ParseListing("text/html", []byte(body), mustURL(t, "http://h/")); err != nil || got[1].Name != "a.txt" || got[1].Exact {
		t.Errorf("untrusted a.txt = %+v, %v; want inexact", got, err)
	}
}

// nginx with autoindex_exact_size off rounds sizes ("12K"): those entries keep no
// size (not 12 bytes).
func TestParseNginxHTMLRoundedSizes(t *testing.T) {
	body := `<html><body><pre><a href="../">../</a>
<a href="a.bin">a.bin</a>                                        26-Nov-2026 00:55                 12K
<a href="b.bin">b.bin</a>                                        26-Nov-2026 00:55                 3M
<a href="c.txt">c.txt</a>                                        26-Nov-2026 00:55                 900
</pre></body></html>`
	got, err := ParseListing("text/html", []byte(body), mustURL(t, "http://h/"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %+v", got)
	}
	for _, e := range got[:2] {
		if e.Exact || e.Size != 0 {
			t.Errorf("%s: rounded size taken as bytes: %+v", e.Name, e)
		}
	}
	if got[2].Size != 900 {
		t.Errorf("c.txt: %+v, want size 900", got[2])
	}
}

func TestParseNginxJSON(t *testing.T) {
	body := `[
{ "name":"sub", "type":"directory", "mtime":"Wed, 26 Nov 2026 00:54:28 GMT" },
{ "name":"q\"uote's.txt", "type":"file", "mtime":"Wed, 26 Nov 2026 00:54:29 GMT", "size":42 },
{ "name":"link", "type":"other", "mtime":"Wed, 26 Nov 2026 00:54:29 GMT" },
{ "name":"../evil", "type":"file", "mtime":"Wed, 26 Nov 2026 00:54:29 GMT", "size":1 },
{ "name":"c.bin", "type":"file", "mtime":"Wed, 26 Nov 2026 00:54:29 GMT", "size":5, "etag":"\"abc\"" }
]`
	got, err := ParseListing("application/json", []byte(body), mustURL(t, "http://h/"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %+v, want 3 entries (other and ../evil dropped)", got)
	}
	if !got[0].IsDir || got[0].Name != "sub" || !got[0].Exact {
		t.Errorf("dir entry %+v", got[0])
	}
	if got[1].Name != `q"uote's.txt` || got[1].Size != 42 || got[1].ModTime.Unix() != 1795654469 || !got[1].Exact {
		t.Errorf("file entry %+v", got[1])
	}
	if got[2].Version != `"abc"` {
		t.Errorf("etag not kept as version: %+v", got[2])
	}
}

const apacheHTML = `<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<html><head><title>Index of /pub</title></head><body><h1>Index of /pub</h1>
<table><tr><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th></tr>
<tr><td><a href="/">Parent Directory</a></td><td>&nbsp;</td></tr>
<tr><td><a href="file%201.txt">file 1.txt</a></td><td align="right">2026-11-26 00:54  </td><td align="right">1.2K</td></tr>
<tr><td><a href="docs/">docs/</a></td><td align="right">2026-11-26 00:54  </td><td align="right">  - </td></tr>
<tr><td><a href="http://elsewhere/x">x</a></td></tr>
<tr><td><a href="/pub/abs.txt">abs.txt</a></td></tr>
<tr><td><a href='single&amp;quote.txt'>s</a></td></tr>
</table></body></html>`

func TestParseApacheHTML(t *testing.T) {
	got, err := ParseListing("text/html;charset=UTF-8", []byte(apacheHTML), mustURL(t, "http://h/pub/"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range got {
		names = append(names, e.Name)
		if e.Exact {
			t.Errorf("%s: HTML entries must be inexact", e.Name)
		}
	}
	if strings.Join(names, "|") != "file 1.txt|docs|abs.txt|single&quote.txt" {
		t.Errorf("names = %q", names)
	}
}

const pythonHTML = `<!DOCTYPE HTML>
<html lang="en"><head><meta charset="utf-8"><title>Directory listing for /</title></head>
<body><h1>Directory listing for /</h1><hr><ul>
<li><a href="%5Bb%5D%20%28p%29.txt">[b] (p).txt</a></li>
<li><a href="dir/">dir/</a></li>
<li><a href="%E2%9C%93.txt">✓.txt</a></li>
</ul><hr></body></html>`

func TestParsePythonHTML(t *testing.T) {
	got, err := ParseListing("text/html; charset=utf-8", []byte(pythonHTML), mustURL(t, "http://h/"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Name != "[b] (p).txt" || !got[1].IsDir || got[1].Name != "dir" || got[2].Name != "✓.txt" {
		t.Errorf("got %+v", got)
	}
}

func TestParseListingRejectsBadJSON(t *testing.T) {
	if _, err := ParseListing("application/json", []byte(`{"not":"an array"}`), mustURL(t, "http://h/")); err == nil {
		t.Error("want an error for a JSON object")
	}
	if _, err := ParseListing("image/png", []byte("x"), mustURL(t, "http://h/")); err == nil {
		t.Error("want an error for a non-listing content type")
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{"": "", "/": "", "/a/b": "a/b", "a//b/": "a/b", "./a": "a", "a/./b": "a/b"} {
		if got, err := Clean(in); err != nil || got != want {
			t.Errorf("Clean(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"..", "../x", "a/../../b", "a/..", "a\x00b"} {
		if got, err := Clean(in); err == nil {
			t.Errorf("Clean(%q) = %q, want an error", in, got)
		}
	}
}

func FuzzParseListing(f *testing.F) {
	f.Add("text/html", nginxHTML)
	f.Add("text/html", apacheHTML)
	f.Add("text/html", pythonHTML)
	f.Add("application/json", `[{"name":"a","type":"file","mtime":"Wed, 26 Nov 2026 00:54:29 GMT","size":1}]`)
	f.Add("application/json", `[{"name":"nosize","type":"file","mtime":"Wed, 26 Nov 2026 00:54:29 GMT"},{"name":"z","type":"file","size":0},{"name":"n","type":"file","size":null},{"name":"m","type":"file","size":-1}]`)
	f.Add("application/json", `[{"name":"dup","type":"file","size":1},{"name":"dup","type":"directory"},{"name":"dup","type":"file"}]`)
	f.Add("application/json", `[{"name":"`+strings.Repeat("n", 256)+`","type":"file"}] trailing`)
	f.Add("", `  [{"name":"a","type":"directory"}`)
	f.Add("text/html", `<a href="d">d</a><a href="d/">d/</a><a href="d">d</a>`+strings.Repeat("<a href=x>", 3))
	f.Add("text/html", `<a href="javascript:alert(document.domain)">x</a><a href="./%2e%2e/">..</a>`)
	base := mustURL(f, "http://h/d/")
	f.Fuzz(func(t *testing.T, ct, body string) {
		entries, err := ParseListing(ct, []byte(body), base)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, e := range entries {
			if !validName(e.Name) {
				t.Fatalf("invalid name %q from listing", e.Name)
			}
			if e.Size < 0 {
				t.Fatalf("negative size for %q", e.Name)
			}
			if len(e.Name) > maxNameLen {
				t.Fatalf("name of %d bytes from listing", len(e.Name))
			}
			if seen[e.Name] {
				t.Fatalf("duplicate name %q", e.Name)
			}
			seen[e.Name] = true
		}
	})
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "/a//b/", "a/%2e%2e/b", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Clean(s)
		if err != nil {
			return
		}
		if strings.HasPrefix(c, "/") || c == ".." || strings.HasPrefix(c, "../") || strings.Contains(c, "/../") || strings.HasSuffix(c, "/..") || strings.IndexByte(c, 0) >= 0 {
			t.Fatalf("Clean(%q) = %q escapes or is unclean", s, c)
		}
		if c2, err := Clean(c); err != nil || c2 != c {
			t.Fatalf("Clean not idempotent: %q -> %q -> %q, %v", s, c, c2, err)
		}
	})
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-5/*", "bytes 9-0/10", "bytes -1-2/3", "bytes 0-9/5", "bytes 5-5/6", "bytes 1-0/5", "bytes 0-9/+10", "bytes 00-9/10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, b, total, ok := ParseContentRange(s)
		if !ok {
			return
		}
		if a < 0 || b < a || (total != -1 && total <= b) {
			t.Fatalf("ParseContentRange(%q) = %d %d %d accepted", s, a, b, total)
		}
		tot := "*"
		if total != -1 {
			tot = fmt.Sprint(total)
		}
		if got := fmt.Sprintf("bytes %d-%d/%s", a, b, tot); got != s {
			t.Fatalf("%q parsed as %s", s, got)
		}
	})
}

// A JSON listing naming one entry as both a file and a directory shows it once, as
// the directory; names longer than 255 bytes are skipped (no tool could open them).
func TestListingKeepsOneEntryPerNameAndSkipsLongNames(t *testing.T) {
	long := strings.Repeat("x", 256)
	body := `[
{"name":"dup","type":"file","mtime":"Wed, 26 Nov 2026 00:54:29 GMT","size":3},
{"name":"a","type":"file","mtime":"Wed, 26 Nov 2026 00:54:29 GMT","size":1},
{"name":"dup","type":"directory","mtime":"Wed, 26 Nov 2026 00:54:29 GMT"},
{"name":"` + long + `","type":"file","mtime":"Wed, 26 Nov 2026 00:54:29 GMT","size":1},
{"name":"` + long[:255] + `","type":"file","mtime":"Wed, 26 Nov 2026 00:54:29 GMT","size":1},
{"name":"a","type":"file","mtime":"Wed, 26 Nov 2026 00:54:29 GMT","size":2}
]`
	got, err := ParseListing("application/json", []byte(body), mustURL(t, "http://h/"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Name != "a" || got[0].Size != 1 || got[1].Name != "dup" || !got[1].IsDir || got[2].Name != long[:255] {
		t.Errorf("got %+v; want dup (directory), a (the first), and the 255-byte name", got)
	}
	html := `<a href="dup">dup</a><a href="x/">x/</a><a href="dup/">dup/</a><a href="` + long + `">l</a><a href="x/">x/</a>`
	got, err = ParseListing("text/html", []byte(html), mustURL(t, "http://h/"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "x" || got[1].Name != "dup" || !got[1].IsDir {
		t.Errorf("HTML: got %+v; want x and dup, both directories", got)
	}
}

// More entries than the cap is ErrTooManyEntries, whatever the format; a huge single
// element or token is an error, not an unbounded buffer.
func TestListingLimits(t *testing.T) {
	var js, html strings.Builder
	js.WriteString("[")
	for i := range 11 {
		if i > 0 {
			js.WriteString(",")
		}
		fmt.Fprintf(&js, `{"name":"f%d","type":"file","size":1}`, i)
		fmt.Fprintf(&html, `<a href="f%d">f%d</a>`+"\n", i, i)
	}
	js.WriteString("]")
	base := mustURL(t, "http://h/")
	for ct, body := range map[string]string{"application/json": js.String(), "text/html": html.String()} {
		if _, err := ReadListing(ct, strings.NewReader(body), base, 10); !errors.Is(err, ErrTooManyEntries) {
			t.Errorf("%s: 11 entries with a cap of 10: %v, want ErrTooManyEntries", ct, err)
		}
		if got, err := ReadListing(ct, strings.NewReader(body), base, 11); err != nil || len(got) != 11 {
			t.Errorf("%s: 11 entries with a cap of 11: %d, %v", ct, len(got), err)
		}
	}
	huge := `[{"name":"a","type":"file","pad":"` + strings.Repeat("p", maxListingItem) + `"}]`
	if _, err := ParseListing("application/json", []byte(huge), base); err == nil {
		t.Error("a JSON element over 1 MiB was accepted")
	}
	huge = `<a href="a">` + strings.Repeat("p", maxHTMLToken+1) + `</a>`
	if _, err := ParseListing("text/html", []byte(huge), base); err == nil {
		t.Error("an HTML token over 1 MiB was accepted")
	}
}

// A listing body that fails midway is an error, not a short listing.
func TestListingReadErrorIsAnError(t *testing.T) {
	for _, ct := range []string{"application/json", "text/html"} {
		r := io.MultiReader(strings.NewReader(`[{"name":"a","type":"file"},<a href="a">a</a>`), iotest.ErrReader(errors.New("connection reset")))
		if got, err := ReadListing(ct, r, mustURL(t, "http://h/"), 10); err == nil {
			t.Errorf("%s: listing cut by a read error gave %+v", ct, got)
		}
	}
}

// nginxLineRegexp is what nginxLine hand-matches.
var nginxLineRegexp = regexp.MustCompile(`^\s+(\d{2}-[A-Za-z]{3}-\d{4} \d{2}:\d{2})\s+(\d+|-)\s*$`)

// FuzzNginxLineMatchesRegexp: nginxLine accepts exactly what the regexp matches and
// splits it alike.
func FuzzNginxLineMatchesRegexp(f *testing.F) {
	for _, s := range []string{
		"   26-Nov-2026 00:54     1234", "   26-Nov-2026 00:54     -", "  26-Nov-2026 00:54   12K",
		"26-Nov-2026 00:54 1", " 26-Nov-2026 00:54\t7\r\n", " 26-Nov-2026 00:541", " 2x-Nov-2026 00:54 1",
		" 26-N0v-2026 00:54 1", " 26-Nov-2026 00:54 -5", " 26-Nov-2026 00:54 ", "\f26-[ov-2026 00:54 1",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		when, size, ok := nginxLine(b)
		m := nginxLineRegexp.FindSubmatch(b)
		if ok != (m != nil) {
			t.Fatalf("%q: nginxLine ok=%v, regexp matched=%v", b, ok, m != nil)
		}
		if ok && (!bytes.Equal(when, m[1]) || !bytes.Equal(size, m[2])) {
			t.Fatalf("%q: nginxLine %q %q, regexp %q %q", b, when, size, m[1], m[2])
		}
	})
}
