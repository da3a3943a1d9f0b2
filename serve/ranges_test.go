package serve

import (
	"bufio"
	"fmt"
	"strings"
	"testing"
)

func TestParseRange(t *testing.T) {
	const size = 1000
	cases := []struct {
		h    string
		want string // "a+n a+n", "416" or "ignore"
	}{
		{"bytes=0-499", "0+500"},
		{"bytes=500-", "500+500"},
		{"bytes=-200", "800+200"},
		{"bytes=-5000", "0+1000"},
		{"bytes=900-5000", "900+100"},
		{"bytes=0-0,-1", "0+1 999+1"},
		{"bytes= 0-1 , 5-6 ", "0+2 5+2"},
		{"bytes=1000-", "416"},
		{"bytes=1000-2000,5000-", "416"},
		{"bytes=-0", "416"},
		{"bytes=5-1", "ignore"},
		{"bytes=a-b", "ignore"},
		{"bytes=", "ignore"},
		{"items=0-1", "ignore"},
		{"bytes=0-1;", "ignore"},
		{"bytes=--1", "ignore"},
		{"bytes=1-2-3", "ignore"},
		{"bytes=+1-2", "ignore"},
		{"bytes=99999999999999999999-", "ignore"},
		{"bytes=" + strings.Repeat("0-0,", maxRanges+1), "ignore"},
	}
	for _, c := range cases {
		rs, unsat, ok := parseRange(c.h, size)
		var got string
		switch {
		case !ok:
			got = "ignore"
		case unsat:
			got = "416"
		default:
			var parts []string
			for _, r := range rs {
				parts = append(parts, fmt.Sprintf("%d+%d", r.start, r.length))
			}
			got = strings.Join(parts, " ")
		}
		if got != c.want {
			t.Errorf("parseRange(%q) = %s, want %s", c.h, got, c.want)
		}
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-1", "bytes=-5", "bytes=5-", "bytes=0-1,3-4", "bytes=x", "bytes=9-1"} {
		f.Add(s, int64(10))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
		}
		rs, unsat, ok := parseRange(h, size)
		if !ok || unsat {
			if len(rs) != 0 {
				t.Fatalf("ranges returned with ok=%v unsat=%v", ok, unsat)
			}
			return
		}
		if len(rs) == 0 || len(rs) > maxRanges {
			t.Fatalf("%d ranges", len(rs))
		}
		for _, r := range rs {
			if r.start < 0 || r.length <= 0 || r.start+r.length > size {
				t.Fatalf("range %+v outside a %d-byte file", r, size)
			}
		}
	})
}

func TestReadRequest(t *testing.T) {
	in := "GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\nRANGE: bytes=0-1\r\nConnection: close\r\nIf-None-Match: \"x\"\r\n\r\n"
	r, err := readRequest(bufio.NewReader(strings.NewReader(in)), 16<<10)
	if err != nil {
		t.Fatal(err)
	}
	if r.method != "GET" || r.target != "/a%20b?x=1" || r.rangeH != "bytes=0-1" || r.keepAlive || r.ifNoneMatch != `"x"` {
		t.Fatalf("%+v", r)
	}
	for _, bad := range []string{
		"GET / HTTP/1.1\r\n\r\n",            // no Host
		"GET / HTTP/2.0\r\nHost: h\r\n\r\n", // protocol
		"GET /\r\n\r\n",                     // HTTP/0.9
		"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nBad Name: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n",
	} {
		if _, err := readRequest(bufio.NewReader(strings.NewReader(bad)), 16<<10); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	big := "GET / HTTP/1.1\r\nHost: h\r\nX: " + strings.Repeat("a", 20000) + "\r\n\r\n"
	if _, err := readRequest(bufio.NewReaderSize(strings.NewReader(big), 8192), 16<<10); err != errHeaderTooLarge {
		t.Errorf("20 KB header: %v, want errHeaderTooLarge", err)
	}
}

func FuzzReadRequest(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	f.Add("HEAD /x HTTP/1.0\r\nRange: bytes=0-1\r\n\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := readRequest(bufio.NewReaderSize(strings.NewReader(s), 4096), 8192)
		if err == nil && (r.method == "" || r.target == "") {
			t.Fatalf("accepted a request without method or target: %+v", r)
		}
	})
}

func FuzzCleanURLPath(f *testing.F) {
	for _, s := range []string{"/a/b", "/../x", "/%2e%2e/x", "/a%2fb", "/a%00", "/%zz", "/ü%20x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := cleanURLPath(raw)
		if err != nil {
			return
		}
		if strings.HasPrefix(p, "/") || p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") || strings.ContainsRune(p, 0) {
			t.Fatalf("cleanURLPath(%q) = %q escapes the namespace", raw, p)
		}
	})
}
