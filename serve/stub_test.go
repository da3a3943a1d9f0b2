package serve

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/origin"
)

// stubOrigin is an origin held in memory whose answers a test controls.
type stubOrigin struct {
	mu      sync.Mutex
	files   map[string][]byte
	entries map[string]origin.Entry // overrides Stat's answer for a path (owner, mode)
	statErr error                   // returned by every Stat when set
	listErr error                   // returned by every List when set
	readErr error                   // returned by every ReadRange when set
	// gate, when set, is called by ReadRange before it answers; it may block.
	gate  func(ctx context.Context, p string, off, n int64)
	reads int // ReadRange calls
	// inexact makes List's file entries inexact, as from an HTML listing, without
	// calling Stat.
	inexact bool
	stats   int // Stat calls
}

var stubTime = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func (o *stubOrigin) Stat(ctx context.Context, p string) (origin.Entry, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stats++
	if o.statErr != nil {
		return origin.Entry{}, o.statErr
	}
	if e, ok := o.entries[p]; ok {
		return e, nil
	}
	if p == "" {
		return origin.Entry{IsDir: true, ModTime: stubTime, Exact: true}, nil
	}
	b, ok := o.files[p]
	if !ok {
		return origin.Entry{}, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	return origin.Entry{Name: path.Base(p), Size: int64(len(b)), ModTime: stubTime, Version: `"v1"`, Exact: true}, nil
}

func (o *stubOrigin) List(ctx context.Context, p string) ([]origin.Entry, error) {
	o.mu.Lock()
	err, inexact := o.listErr, o.inexact
	var names []string
	dir := p
	if dir == "" {
		dir = "."
	}
	for name := range o.files {
		if path.Dir(name) == dir {
			names = append(names, name)
		}
	}
	o.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var out []origin.Entry
	for _, n := range names {
		if inexact {
			out = append(out, origin.Entry{Name: path.Base(n), Size: 1000, ModTime: stubTime})
			continue
		}
		e, err := o.Stat(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func (o *stubOrigin) ReadRange(ctx context.Context, p, version string, off, n int64) (io.ReadCloser, error) {
	o.mu.Lock()
	o.reads++
	gate, err, b := o.gate, o.readErr, o.files[p]
	o.mu.Unlock()
	if gate != nil {
		gate(ctx, p, off, n)
	}
	if err != nil {
		return nil, err
	}
	if off+n > int64(len(b)) {
		return nil, fmt.Errorf("read past the end of %s", p)
	}
	return io.NopCloser(bytes.NewReader(b[off : off+n])), nil
}

func (o *stubOrigin) String() string { return "stub" }

func (o *stubOrigin) statCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stats
}

func (o *stubOrigin) readCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reads
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// testServer is a Server on a real loopback listener over a cache of o.
type testServer struct {
	s    *Server
	c    *cache.Cache
	addr string
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func startTestServer(t *testing.T, o origin.Origin, copts cache.Options, opts Options) *testServer {
	t.Helper()
	copts.Dir = t.TempDir()
	if copts.Limit == 0 {
		copts.Limit = 256 << 20
	}
	logs := &syncBuffer{}
	copts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	opts.Logger = copts.Logger
	c, err := cache.Open(o, copts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		c.Close()
	})
	return &testServer{s: s, c: c, addr: ln.Addr().String(), logs: logs}
}

// response is an answer read off the wire, body included.
type response struct {
	*http.Response
	body []byte
}

// do sends raw (a whole request, or several) on a new connection and reads one
// response, within 10 s.
func (ts *testServer) do(t *testing.T, raw string) response {
	t.Helper()
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc, raw); err != nil {
		t.Fatal(err)
	}
	return readResponse(t, bufio.NewReader(nc), raw)
}

func readResponse(t *testing.T, br *bufio.Reader, what string) response {
	t.Helper()
	var req *http.Request
	if strings.HasPrefix(what, "HEAD ") {
		req = &http.Request{Method: "HEAD"}
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("%.80q: %v", what, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%.80q: body: %v", what, err)
	}
	return response{resp, b}
}

// get sends a GET of target with extra header lines ("Name: value").
func (ts *testServer) get(t *testing.T, target string, hdr ...string) response {
	t.Helper()
	raw := "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	for _, h := range hdr {
		raw += h + "\r\n"
	}
	return ts.do(t, raw+"\r\n")
}
