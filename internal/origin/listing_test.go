package origin

import (
	"net/url"
	"strings"
	"testing"
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
			if ct == "text/html" && seen[e.Name] {
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
	for _, s := range []string{"bytes 0-9/10", "bytes 5-5/*", "bytes 9-0/10", "bytes -1-2/3", "bytes 0-9/5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, b, total, ok := parseContentRange(s)
		if ok && (a < 0 || b < a || (total != -1 && total <= b)) {
			t.Fatalf("parseContentRange(%q) = %d %d %d accepted", s, a, b, total)
		}
	})
}
