package serve

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/origin"
	"github.com/cachegate/cachegate/internal/zerocopy"
)

// parts reads a multipart/byteranges body into "Content-Range" -> bytes.
func parts(t *testing.T, r response) map[string][]byte {
	t.Helper()
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" {
		t.Fatalf("Content-Type %q, want multipart/byteranges", r.Header.Get("Content-Type"))
	}
	out := map[string][]byte{}
	mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		out[p.Header.Get("Content-Range")] = b
	}
}

// TestRangeAmplification: overlapping ranges are coalesced, and ranges that add up
// to more than the file, or too many of them, get the whole file with 200 (issue 19
// point 6). Before, 64 times "0-" sent the file 64 times over.
func TestRangeAmplification(t *testing.T) {
	for _, transfer := range []string{"auto", "copy", "sendfile"} {
		t.Run(transfer, func(t *testing.T) { testRangeAmplification(t, transfer) })
	}
}

func testRangeAmplification(t *testing.T, transfer string) {
	const size = 1 << 20
	data := randomBytes(size)
	ts := startTestServer(t, &stubOrigin{files: map[string][]byte{"f": data}}, cache.Options{}, Options{Transfer: transfer})
	many := make([]string, 11)
	for i := range many {
		many[i] = fmt.Sprintf("%d-%d", 2*i, 2*i)
	}
	for _, c := range []struct {
		name, rangeH string
		code         int
		cr           string // Content-Range of a single part
		body         []byte
		parts        map[string][]byte
	}{
		{"64 times 0-", "bytes=" + strings.Repeat("0-,", 63) + "0-", 200, "", data, nil},
		{"0-,1-", "bytes=0-,1-", 200, "", data, nil},
		{"overlapping and adjacent", "bytes=5-19,20-29,0-9", 206, fmt.Sprintf("bytes 0-29/%d", size), data[:30], nil},
		{"11 ranges", "bytes=" + strings.Join(many, ","), 200, "", data, nil},
		{"two ranges", "bytes=100-109,0-9", 206, "", nil, map[string][]byte{
			fmt.Sprintf("bytes 0-9/%d", size):     data[:10],
			fmt.Sprintf("bytes 100-109/%d", size): data[100:110],
		}},
	} {
		r := ts.get(t, "/f", "Range: "+c.rangeH)
		if r.StatusCode != c.code {
			t.Errorf("%s: status %d, want %d", c.name, r.StatusCode, c.code)
			continue
		}
		if r.Header.Get("Content-Range") != c.cr {
			t.Errorf("%s: Content-Range %q, want %q", c.name, r.Header.Get("Content-Range"), c.cr)
		}
		if c.parts != nil {
			got := parts(t, r)
			if len(got) != len(c.parts) {
				t.Errorf("%s: %d parts, want %d", c.name, len(got), len(c.parts))
			}
			for cr, want := range c.parts {
				if !bytes.Equal(got[cr], want) {
					t.Errorf("%s: part %q wrong (%d bytes)", c.name, cr, len(got[cr]))
				}
			}
			continue
		}
		if !bytes.Equal(r.body, c.body) {
			t.Errorf("%s: %d bytes, not the %d expected", c.name, len(r.body), len(c.body))
		}
	}
}

// TestMultipartStreams: a multipart answer sends each part as it fills, instead of
// filling every range before the first byte (issue 19 point 6): the second part's
// origin read is held until the client has the first part.
func TestMultipartStreams(t *testing.T) {
	for _, transfer := range []string{"auto", "mmap", "sendfile", "copy"} {
		t.Run(transfer, func(t *testing.T) { testMultipartStreams(t, transfer) })
	}
}

func testMultipartStreams(t *testing.T, transfer string) {
	const size = 12 << 20
	data := randomBytes(size)
	release := make(chan struct{})
	o := &stubOrigin{files: map[string][]byte{"f": data}, gate: func(ctx context.Context, p string, off, n int64) {
		if off+n > 8<<20 {
			<-release
		}
	}}
	ts := startTestServer(t, o, cache.Options{}, Options{Transfer: transfer})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "GET /f HTTP/1.1\r\nHost: x\r\nRange: bytes=0-99,%d-%d\r\n\r\n", 10<<20, 10<<20+99)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no header while the second part is still at the origin: %v", err)
	}
	_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	mr := multipart.NewReader(resp.Body, params["boundary"])
	p, err := mr.NextPart()
	if err != nil {
		t.Fatalf("first part: %v", err)
	}
	b, err := io.ReadAll(p)
	if err != nil || !bytes.Equal(b, data[:100]) {
		t.Fatalf("first part: %d bytes, %v", len(b), err)
	}
	close(release)
	if p, err = mr.NextPart(); err != nil {
		t.Fatalf("second part: %v", err)
	}
	if b, err = io.ReadAll(p); err != nil || !bytes.Equal(b, data[10<<20:10<<20+100]) {
		t.Fatalf("second part: %d bytes, %v", len(b), err)
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Fatalf("after two parts: %v", err)
	}
	// Now both parts are cached: the same answer from the cache.
	fmt.Fprintf(nc, "GET /f HTTP/1.1\r\nHost: x\r\nRange: bytes=0-99,%d-%d\r\n\r\n", 10<<20, 10<<20+99)
	r := readResponse(t, br, "GET /f again")
	if got := parts(t, r); len(got) != 2 || !bytes.Equal(got[fmt.Sprintf("bytes 0-99/%d", size)], data[:100]) ||
		!bytes.Equal(got[fmt.Sprintf("bytes %d-%d/%d", 10<<20, 10<<20+99, size)], data[10<<20:10<<20+100]) {
		t.Errorf("cached multipart: wrong parts (X-Transfer %s)", r.Header.Get("X-Transfer"))
	}
}

// TestErrorBodiesSayOnlyWhatFailed: 502 and 400 bodies are fixed texts; the origin's
// error (URL, credentials, internal paths) and the request line go to the log only
// (issue 19 points 13 and 19).
func TestErrorBodiesSayOnlyWhatFailed(t *testing.T) {
	secret := errors.New(`GET http://alice:Pa55w0rd@origin.example/data/f: open /var/cache/cachegate/ab/cd.data: refused`)
	o := &stubOrigin{files: map[string][]byte{"f": randomBytes(10), "d/g": randomBytes(10)}}
	ts := startTestServer(t, o, cache.Options{}, Options{})
	leaks := []string{"alice", "Pa55w0rd", "origin.example", "/var/cache", "refused"}
	check := func(what string, r response, code int) {
		t.Helper()
		if r.StatusCode != code {
			t.Errorf("%s: %d, want %d", what, r.StatusCode, code)
		}
		for _, l := range leaks {
			if bytes.Contains(r.body, []byte(l)) {
				t.Errorf("%s: body %q shows %q", what, r.body, l)
			}
		}
	}
	o.mu.Lock()
	o.readErr = secret
	o.mu.Unlock()
	check("read fails", ts.get(t, "/f"), 502)
	o.mu.Lock()
	o.listErr = secret
	o.mu.Unlock()
	check("listing fails", ts.get(t, "/d/"), 502)
	o.mu.Lock()
	o.statErr = secret
	o.mu.Unlock()
	check("stat fails", ts.get(t, "/g"), 502)
	if !strings.Contains(ts.logs.String(), "origin.example") {
		t.Errorf("the log lacks the detail:\n%s", ts.logs)
	}
	r := ts.do(t, "GET /<script>alert(1)</script> HTTP/9.9\r\nHost: x\r\n\r\n")
	if r.StatusCode != 400 || bytes.Contains(r.body, []byte("script")) || bytes.Contains(r.body, []byte("HTTP/9.9")) {
		t.Errorf("bad request line: %d %q", r.StatusCode, r.body)
	}
	r = ts.do(t, "GET /x HTTP/1.1\r\nHost: x\r\nBad<b>Name : y\r\n\r\n")
	if r.StatusCode != 400 || bytes.Contains(r.body, []byte("<b>")) {
		t.Errorf("bad header line: %d %q", r.StatusCode, r.body)
	}
}

// TestForbiddenUnlessWorldReadable: a file of an origin with owners that others may
// not read gets 403, as from a web server running unprivileged (issue 19 point 14).
func TestForbiddenUnlessWorldReadable(t *testing.T) {
	data := []byte("data\n")
	e := func(name string, has bool, perm uint32) origin.Entry {
		return origin.Entry{Name: name, Size: int64(len(data)), ModTime: stubTime, Version: `"v1"`, Exact: true, HasOwner: has, Uid: 0, Gid: 0, Perm: fs.FileMode(perm)}
	}
	o := &stubOrigin{
		files: map[string][]byte{"secret": data, "group": data, "public": data, "s3": data},
		entries: map[string]origin.Entry{
			"secret": e("secret", true, 0o600),
			"group":  e("group", true, 0o640),
			"public": e("public", true, 0o644),
			"s3":     e("s3", false, 0),
		},
	}
	ts := startTestServer(t, o, cache.Options{}, Options{})
	for _, c := range []struct {
		p    string
		code int
	}{{"secret", 403}, {"group", 403}, {"public", 200}, {"s3", 200}} {
		for _, m := range []string{"GET", "HEAD"} {
			r := ts.do(t, m+" /"+c.p+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if r.StatusCode != c.code {
				t.Errorf("%s /%s: %d, want %d", m, c.p, r.StatusCode, c.code)
			}
		}
	}
	if n := o.readCount(); n != 2 {
		t.Errorf("%d origin reads, want 2 (public and s3)", n)
	}
}

// TestConditionalRequests: the server evaluates If-Match, If-Unmodified-Since,
// If-None-Match, If-Modified-Since and If-Range in RFC 9110's order (issue 19
// point 19: If-Match and If-Unmodified-Since were ignored).
func TestConditionalRequests(t *testing.T) {
	data := randomBytes(1000)
	ts := startTestServer(t, &stubOrigin{files: map[string][]byte{"f": data}}, cache.Options{}, Options{})
	etag := ts.get(t, "/f").Header.Get("ETag")
	lm := stubTime.Format(http.TimeFormat)
	before := stubTime.Add(-time.Hour).Format(http.TimeFormat)
	after := stubTime.Add(time.Hour).Format(http.TimeFormat)
	for _, c := range []struct {
		hdr  []string
		code int
	}{
		{[]string{"If-Match: " + etag}, 200},
		{[]string{"If-Match: *"}, 200},
		{[]string{`If-Match: "other", ` + etag}, 200},
		{[]string{`If-Match: "other"`}, 412},
		{[]string{"If-Match: W/" + etag}, 412}, // If-Match compares strongly
		{[]string{"If-Unmodified-Since: " + lm}, 200},
		{[]string{"If-Unmodified-Since: " + after}, 200},
		{[]string{"If-Unmodified-Since: " + before}, 412},
		{[]string{"If-Unmodified-Since: not a date"}, 200},
		{[]string{"If-Match: " + etag, "If-Unmodified-Since: " + before}, 200}, // If-Match wins
		{[]string{`If-Match: "other"`, "If-None-Match: " + etag}, 412},
		{[]string{"If-None-Match: " + etag}, 304},
		{[]string{"If-None-Match: W/" + etag}, 304},
		{[]string{"If-Modified-Since: " + lm}, 304},
		{[]string{"If-Modified-Since: " + before}, 200},
		{[]string{`If-None-Match: "other"`, "If-Modified-Since: " + lm}, 200},
		{[]string{"Range: bytes=0-9", "If-Range: " + etag}, 206},
		{[]string{"Range: bytes=0-9", "If-Range: " + lm}, 206},
		{[]string{"Range: bytes=0-9", "If-Range: " + before}, 200},
		{[]string{"Range: bytes=0-9", "If-Range: W/" + etag}, 200},
		{[]string{"Range: bytes=0-9", `If-Range: "other"`}, 200},
		{[]string{"Range: bytes=5000-", "If-Match: " + etag}, 416},
		{[]string{"Range: bytes=5000-", `If-Match: "other"`}, 412},
	} {
		if r := ts.get(t, "/f", c.hdr...); r.StatusCode != c.code {
			t.Errorf("%q: %d, want %d", c.hdr, r.StatusCode, c.code)
		}
	}
}

func TestWriteFileHeader(t *testing.T) {
	s, err := New(nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := &conn{s: s}
	for _, tc := range []struct {
		fh   fileHeader
		want string // the header without its Date line
	}{
		{fileHeader{code: 200, keep: true, contentType: "text/plain", length: 5, etag: `"e"`, lastModified: "Sun, 01 Nov 2026 12:00:00 GMT", xCache: "HIT", transfer: zerocopy.Sendfile},
			"HTTP/1.1 200 OK\r\nServer: cachegate\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nAccept-Ranges: bytes\r\nETag: \"e\"\r\nLast-Modified: Sun, 01 Nov 2026 12:00:00 GMT\r\nX-Cache: HIT\r\nX-Transfer: sendfile\r\n\r\n"},
		{fileHeader{code: 206, contentType: "a/b", length: 2, contentRange: "bytes 0-1/9", etag: `"e"`, xCache: "MISS", transfer: zerocopy.Copy},
			"HTTP/1.1 206 Partial Content\r\nServer: cachegate\r\nConnection: close\r\nContent-Type: a/b\r\nContent-Length: 2\r\nAccept-Ranges: bytes\r\nContent-Range: bytes 0-1/9\r\nETag: \"e\"\r\nX-Cache: MISS\r\nX-Transfer: copy\r\n\r\n"},
		{fileHeader{code: 304, keep: true, length: -1, etag: `"e"`, xCache: "HIT", transfer: zerocopy.Copy},
			"HTTP/1.1 304 Not Modified\r\nServer: cachegate\r\nETag: \"e\"\r\nX-Cache: HIT\r\nX-Transfer: copy\r\n\r\n"},
		{fileHeader{code: 412, keep: true, length: 0, etag: `"e"`, xCache: "MISS", transfer: zerocopy.Copy},
			"HTTP/1.1 412 Precondition Failed\r\nServer: cachegate\r\nContent-Length: 0\r\nETag: \"e\"\r\nX-Cache: MISS\r\nX-Transfer: copy\r\n\r\n"},
		{fileHeader{code: 416, keep: true, contentType: "text/plain", length: 0, contentRange: "bytes */9", xCache: "MISS", transfer: zerocopy.Copy},
			"HTTP/1.1 416 Range Not Satisfiable\r\nServer: cachegate\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nContent-Range: bytes */9\r\nX-Cache: MISS\r\nX-Transfer: copy\r\n\r\n"},
	} {
		c.writeFileHeader(tc.fh)
		var lines []string
		for _, l := range strings.SplitAfter(string(c.hdr), "\r\n") {
			if !strings.HasPrefix(l, "Date: ") {
				lines = append(lines, l)
			}
		}
		if got := strings.Join(lines, ""); got != tc.want {
			t.Errorf("%d:\n%q\nwant\n%q", tc.fh.code, got, tc.want)
		}
	}
}

// TestNoRoomReadsThrough: when the cache cannot hold a segment, the answer is read
// from the origin instead, for single and multipart answers, whatever the method.
func TestNoRoomReadsThrough(t *testing.T) {
	const size = 20 << 20
	data := randomBytes(size)
	for _, transfer := range []string{"auto", "mmap", "sendfile", "copy"} {
		t.Run(transfer, func(t *testing.T) {
			o := &stubOrigin{files: map[string][]byte{"f": data}}
			ts := startTestServer(t, o, cache.Options{Limit: 4 << 20, Readahead: 1 << 20}, Options{Transfer: transfer})
			if r := ts.get(t, "/f"); r.StatusCode != 200 || !bytes.Equal(r.body, data) {
				t.Errorf("whole file: %d, %d bytes", r.StatusCode, len(r.body))
			}
			if r := ts.get(t, "/f", "Range: bytes=100-9000000"); r.StatusCode != 206 || !bytes.Equal(r.body, data[100:9000001]) {
				t.Errorf("one range: %d, %d bytes", r.StatusCode, len(r.body))
			}
			r := ts.get(t, "/f", fmt.Sprintf("Range: bytes=0-9,%d-%d", 9<<20, 18<<20))
			if r.StatusCode != 206 {
				t.Fatalf("two ranges: %d", r.StatusCode)
			}
			got := parts(t, r)
			if !bytes.Equal(got[fmt.Sprintf("bytes 0-9/%d", size)], data[:10]) || !bytes.Equal(got[fmt.Sprintf("bytes %d-%d/%d", 9<<20, 18<<20, size)], data[9<<20:18<<20+1]) {
				t.Errorf("two ranges: wrong parts")
			}
			if used, limit := ts.c.Used(); used > limit {
				t.Errorf("cache holds %d bytes, limit %d", used, limit)
			}
			if _, _, _, uncached := ts.c.Snapshot(); uncached == 0 {
				t.Error("nothing was read through: the test did not run out of room")
			}
		})
	}
}

// TestHeadErrorsHaveNoBody: an error answer to HEAD carries no body, or the next
// answer on the connection would start with it.
func TestHeadErrorsHaveNoBody(t *testing.T) {
	data := []byte("data\n")
	o := &stubOrigin{
		files:   map[string][]byte{"f": data, "secret": data},
		entries: map[string]origin.Entry{"secret": {Name: "secret", Size: 5, Version: `"v"`, HasOwner: true, Perm: 0o600}},
	}
	ts := startTestServer(t, o, cache.Options{}, Options{})
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	for _, p := range []string{"/missing", "/secret", "/%2f", "/-/nothing"} {
		fmt.Fprintf(nc, "HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n", p)
		readResponse(t, br, "HEAD "+p)
		fmt.Fprintf(nc, "GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
		if r := readResponse(t, br, "GET /f after HEAD "+p); r.StatusCode != 200 || !bytes.Equal(r.body, data) {
			t.Fatalf("GET /f after HEAD %s: %d %q", p, r.StatusCode, r.body)
		}
	}
}

// TestHeadSaysNoTransfer: a HEAD answer moves no body, so its X-Transfer says none
// (issue 20 point 13), cold or cached; a GET still names its method.
func TestHeadSaysNoTransfer(t *testing.T) {
	ts := startTestServer(t, &stubOrigin{files: map[string][]byte{"f": randomBytes(64 << 10), "empty": {}}}, cache.Options{}, Options{})
	for i, when := range []string{"cold", "cached"} {
		r := ts.do(t, "HEAD /f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if r.StatusCode != 200 || r.Header.Get("X-Transfer") != "none" {
			t.Errorf("HEAD /f (%s): %d, X-Transfer %q, want none", when, r.StatusCode, r.Header.Get("X-Transfer"))
		}
		if i == 0 {
			if g := ts.get(t, "/f"); g.Header.Get("X-Transfer") == "none" || len(g.body) != 64<<10 {
				t.Errorf("GET /f: X-Transfer %q, %d bytes", g.Header.Get("X-Transfer"), len(g.body))
			}
		}
	}
	if g := ts.get(t, "/empty"); g.StatusCode != 200 || g.Header.Get("X-Transfer") != "none" {
		t.Errorf("GET of an empty file: %d, X-Transfer %q, want none", g.StatusCode, g.Header.Get("X-Transfer"))
	}
}
