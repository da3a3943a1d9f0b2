package control

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/origin"
)

// recordingOrigin is a real local origin that records every path it is asked about,
// and can hold reads of one path until the test releases them.
type recordingOrigin struct {
	origin.Origin
	mu      sync.Mutex
	paths   []string
	stall   string        // ReadRange of this path waits for release or its context
	inRead  chan struct{} // receives when a stalled read starts
	release chan struct{} // closed when the test ends
}

func (o *recordingOrigin) record(p string) {
	o.mu.Lock()
	o.paths = append(o.paths, p)
	o.mu.Unlock()
}

func (o *recordingOrigin) asked() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.paths...)
}

func (o *recordingOrigin) Stat(ctx context.Context, p string) (origin.Entry, error) {
	o.record(p)
	return o.Origin.Stat(ctx, p)
}

func (o *recordingOrigin) List(ctx context.Context, p string) ([]origin.Entry, error) {
	o.record(p)
	return o.Origin.List(ctx, p)
}

func (o *recordingOrigin) ReadRange(ctx context.Context, p, v string, off, n int64) (io.ReadCloser, error) {
	o.record(p)
	if p == o.stall {
		o.inRead <- struct{}{}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-o.release:
			return nil, context.Canceled
		}
	}
	return o.Origin.ReadRange(ctx, p, v, off, n)
}

// lockedWriter collects log output written from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

type fixture struct {
	origin *recordingOrigin
	c      *cache.Cache
	hc     *http.Client
	log    *lockedWriter
}

// newFixture runs a real control server, over a real cache of a local origin, on a
// unix socket. Beside the origin's root lies outside/secret, which no request may
// reach.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	top := t.TempDir()
	root := filepath.Join(top, "root")
	for name, body := range map[string]string{"root/f": "hello", "root/d/g": "world", "root/slow": "stalled", "outside/secret": "secret"} {
		p := filepath.Join(top, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lo, err := origin.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{origin: &recordingOrigin{Origin: lo, inRead: make(chan struct{}, 1), release: make(chan struct{})}, log: &lockedWriter{}}
	log := slog.New(slog.NewTextHandler(f.log, nil))
	f.c, err = cache.Open(f.origin, cache.Options{Dir: filepath.Join(top, "cache"), Limit: 64 << 20, ChunkSize: 64 << 10, TTL: time.Hour, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Listen(f.c, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(f.origin.release)
		srv.Close()
		f.c.Close()
	})
	sock := filepath.Join(f.c.Dir(), SocketName)
	f.hc = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	return f
}

// call sends a raw request and returns the status and the body.
func (f *fixture) call(t *testing.T, method, target, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://cachegate"+target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body = nil
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHostileRequestsAreRefused posts what a confused or hostile client could send to
// the control socket. Each is refused with 400 and a message naming the problem;
// none reaches the origin or changes the cache.
func TestHostileRequestsAreRefused(t *testing.T) {
	f := newFixture(t)
	// Something cached, to see that refused verbs leave it alone.
	if code, body := f.call(t, "POST", "/v1/warm", `{"paths":["f"]}`); code != 200 || !strings.Contains(body, `"done":true`) || strings.Contains(body, `"error"`) {
		t.Fatalf("warm f: %d %s", code, body)
	}
	before := len(f.origin.asked())

	cases := []struct {
		name, method, target, body string
		want                       string // in the error message
	}{
		{"huge parallel", "POST", "/v1/warm", `{"paths":["f"],"parallel":100000}`, "parallel 100000 is out of range"},
		{"negative parallel", "POST", "/v1/pin", `{"paths":["f"],"parallel":-3}`, "parallel -3 is out of range"},
		{"warm outside the root", "POST", "/v1/warm", `{"paths":["../../outside/secret"]}`, "leaves the origin's root"},
		{"pin outside the root", "POST", "/v1/pin", `{"paths":["d/../../outside/secret"]}`, "leaves the origin's root"},
		{"evict outside the root", "POST", "/v1/evict", `{"paths":["../x"]}`, "leaves the origin's root"},
		{"unpin outside the root", "POST", "/v1/unpin", `{"paths":[".."]}`, "leaves the origin's root"},
		{"NUL in a path", "POST", "/v1/warm", `{"paths":["f\u0000x"]}`, "NUL"},
		{"stat outside the root", "GET", "/v1/object?path=..%2F..%2Foutside%2Fsecret", "", "leaves the origin's root"},
		{"ls outside the root", "GET", "/v1/objects?prefix=..%2Foutside&origin=1", "", "leaves the origin's root"},
		{"semicolon in a query", "GET", "/v1/object?path=a;b", "", "invalid semicolon"},
		{"unknown parameter", "GET", "/v1/object?paht=f", "", `unknown parameter "paht"`},
		{"repeated parameter", "GET", "/v1/object?path=f&path=..%2Fx", "", `"path" given 2 times`},
		{"bad origin flag", "GET", "/v1/objects?prefix=d&origin=yes", "", `origin="yes"`},
		{"negative gc target", "POST", "/v1/gc", `{"to":-1}`, "to -1 is negative"},
		{"unknown field", "POST", "/v1/warm", `{"paths":["f"],"paralel":2}`, `unknown field "paralel"`},
		{"two JSON values", "POST", "/v1/gc", `{"to":1} {"to":0}`, "more than one JSON value"},
		{"not JSON", "POST", "/v1/clear", `clear everything`, "invalid character"},
		{"oversized body", "POST", "/v1/evict", `{"paths":["` + strings.Repeat("a", 2<<20) + `"]}`, "body larger than"},
		{"GET with a body", "GET", "/v1/status", `{"x":1}`, "takes no body"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := f.call(t, tc.method, tc.target, tc.body)
			var e apiError
			json.Unmarshal([]byte(body), &e)
			if code != http.StatusBadRequest || !strings.Contains(e.Error, tc.want) {
				t.Errorf("%s %s: got %d %s; want 400 with %q", tc.method, tc.target, code, strings.TrimSpace(body), tc.want)
			}
		})
	}
	if asked := f.origin.asked()[before:]; len(asked) != 0 {
		t.Errorf("refused requests reached the origin, asking for %q", asked)
	}
	if objs := f.c.Objects(""); len(objs) != 1 || objs[0].Path != "f" {
		t.Errorf("refused requests changed the cache: it holds %v", objs)
	}

	// Paths that stay inside the root are cleaned as the CLI cleans them.
	if code, body := f.call(t, "GET", "/v1/object?path=%2F.%2F%2Ff%2F", ""); code != 200 || !strings.Contains(body, `"path":"f"`) {
		t.Errorf("stat /.//f/: %d %s; want the object f", code, body)
	}
	if code, body := f.call(t, "POST", "/v1/warm", `{"paths":["d//g"],"parallel":64}`); code != 200 || strings.Contains(body, `"error"`) {
		t.Errorf("warm d//g with parallel 64: %d %s", code, body)
	}
}

// TestClientLeavingCancelsTheCall: a client that disconnects (a killed `cache warm`
// or `cache ls`) cancels its call's context in the owner, so its work stops.
func TestClientLeavingCancelsTheCall(t *testing.T) {
	f := newFixture(t)
	f.origin.stall = "slow"
	conn, err := net.Dial("unix", filepath.Join(f.c.Dir(), SocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"paths":["slow"]}`
	// Sent in two writes, as a client may: the server must read the body to its end.
	io.WriteString(conn, "POST /v1/warm HTTP/1.1\r\nHost: cachegate\r\nContent-Type: application/json\r\nContent-Length: "+
		strconv.Itoa(len(body)+2)+"\r\n\r\n"+body)
	time.Sleep(50 * time.Millisecond)
	io.WriteString(conn, "\r\n")
	select {
	case <-f.origin.inRead:
	case <-time.After(10 * time.Second):
		t.Fatalf("the warm never reached the origin; log:\n%s", f.log.String())
	}
	conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(f.log.String(), "the client left before the answer") {
		if time.Now().After(deadline) {
			t.Fatalf("the owner did not notice the client leaving within 10s; log:\n%s", f.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
