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

func TestSelectRanges(t *testing.T) {
	const size = 1000
	eleven := "bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18,20-20"
	for _, c := range []struct {
		h    string
		want string // "a+n a+n", "416" or "whole"
	}{
		{"", "whole"},
		{"bytes=0-499", "0+500"},
		{"bytes=0-", "0+1000"},
		{"bytes=0-,1-", "whole"}, // adds up to more than the file
		{"bytes=" + strings.Repeat("0-,", 63) + "0-", "whole"},          // 64 times the file
		{"bytes=" + strings.Repeat("0-0,", 63) + "0-0", "0+1"},          // 64 times one byte: merged
		{"bytes=" + strings.Repeat("0-0,", maxRanges) + "0-0", "whole"}, // past parseRange's bound
		{"bytes=500-599,0-99", "0+100 500+100"},                         // sorted
		{"bytes=0-99,50-149", "0+150"},                                  // overlapping
		{"bytes=0-99,100-199", "0+200"},                                 // adjacent
		{"bytes=0-99,101-199", "0+100 101+99"},                          // a byte apart
		{"bytes=10-19,0-9,20-29,-5", "0+30 995+5"},
		{"bytes=0-9,5-7", "0+10"}, // inside another
		{eleven, "whole"},         // more than maxParts
		{"bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18", "0+1 2+1 4+1 6+1 8+1 10+1 12+1 14+1 16+1 18+1"},
		{"bytes=0-0,1-1,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18,20-20", "0+2 4+1 6+1 8+1 10+1 12+1 14+1 16+1 18+1 20+1"}, // ten after merging
		{"bytes=1000-", "416"},
		{"bytes=5-1", "whole"},
		{"items=0-1", "whole"},
	} {
		rs, unsat := selectRanges(c.h, size)
		got := "whole"
		switch {
		case unsat:
			got = "416"
		case rs != nil:
			var parts []string
			for _, r := range rs {
				parts = append(parts, fmt.Sprintf("%d+%d", r.start, r.length))
			}
			got = strings.Join(parts, " ")
		}
		if got != c.want {
			t.Errorf("selectRanges(%.60q) = %s, want %s", c.h, got, c.want)
		}
	}
}

func FuzzSelectRanges(f *testing.F) {
	for _, s := range []string{"bytes=0-1", "bytes=0-,1-", "bytes=0-1,3-4", "bytes=5-9,0-5", "bytes=-5,0-"} {
		f.Add(s, int64(10))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
		}
		rs, _ := selectRanges(h, size)
		if len(rs) > maxParts {
			t.Fatalf("%d parts", len(rs))
		}
		var sum int64
		for i, r := range rs {
			if r.start < 0 || r.length <= 0 || r.start+r.length > size {
				t.Fatalf("range %+v outside a %d-byte file", r, size)
			}
			if i > 0 && r.start <= rs[i-1].start+rs[i-1].length {
				t.Fatalf("ranges %+v and %+v overlap or touch", rs[i-1], r)
			}
			sum += r.length
		}
		if sum > size {
			t.Fatalf("%d bytes of a %d-byte file", sum, size)
		}
	})
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
