package origin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// laxServer is an origin that serves one file and ignores every conditional header
// (If-Match, If-Unmodified-Since), as some CDNs and hand-written servers do; its
// validators and body can change between requests.
type laxServer struct {
	mu          sync.Mutex
	body        []byte
	lastMod     string // "" sends none
	etag        string // "" sends none
	ignoreRange bool   // answer 200 with the whole body
}

func (s *laxServer) set(f func(s *laxServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *laxServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	body, lm, tag, ignore := s.body, s.lastMod, s.etag, s.ignoreRange
	s.mu.Unlock()
	if lm != "" {
		w.Header().Set("Last-Modified", lm)
	}
	if tag != "" {
		w.Header().Set("ETag", tag)
	}
	rng := r.Header.Get("Range")
	if rng == "" || ignore || r.Method == http.MethodHead {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method != http.MethodHead {
			w.Write(body)
		}
		return
	}
	var a, b int
	if _, err := fmt.Sscanf(rng, "bytes=%d-%d", &a, &b); err != nil || a > b || a >= len(body) {
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return
	}
	b = min(b, len(body)-1)
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, len(body)))
	w.Header().Set("Content-Length", strconv.Itoa(b-a+1))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(body[a : b+1])
}

func newLax(t *testing.T, s *laxServer) *HTTP {
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	o, err := NewHTTP(srv.URL+"/", Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

const (
	lm1 = "Wed, 26 Nov 2026 00:54:29 GMT"
	lm2 = "Wed, 26 Nov 2026 00:54:30 GMT"
)

// Versions without a strong ETag (built from Last-Modified or size) are checked
// against every range answer: the complete length, Last-Modified, and an ETag that
// appears. An origin that ignores the conditional headers then still never mixes.
func TestRangeAnswerMustMatchVersionWithoutETag(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		before func(s *laxServer)
		change func(s *laxServer)
		off, n int64
	}{
		{"last-modified changed, If-Unmodified-Since ignored",
			func(s *laxServer) { s.body, s.lastMod = bytes.Repeat([]byte("a"), 4096), lm1 },
			func(s *laxServer) { s.body, s.lastMod = bytes.Repeat([]byte("b"), 4096), lm2 },
			1024, 1024},
		{"no validators, grew from 16 to 32 MiB",
			func(s *laxServer) { s.body = make([]byte, 16<<20) },
			func(s *laxServer) { s.body = make([]byte, 32<<20) },
			15 << 20, 1 << 20},
		{"no validators, shrank",
			func(s *laxServer) { s.body = make([]byte, 8192) },
			func(s *laxServer) { s.body = make([]byte, 6000) },
			0, 4096},
		{"an ETag appears, then changes",
			func(s *laxServer) { s.body, s.lastMod = []byte("0123456789"), lm1 },
			func(s *laxServer) { s.etag = `"b"` },
			0, 4},
		{"200 for a whole-object read with a new Last-Modified",
			func(s *laxServer) { s.body, s.lastMod, s.ignoreRange = []byte("old!"), lm1, true },
			func(s *laxServer) { s.body, s.lastMod = []byte("new!"), lm2 },
			0, 4},
		{"200 for a whole-object read, no validators, new size",
			func(s *laxServer) { s.body, s.ignoreRange = []byte("old!"), true },
			func(s *laxServer) { s.body = []byte("newer") },
			0, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &laxServer{}
			s.set(tc.before)
			o := newLax(t, s)
			e, err := o.Stat(ctx, "f")
			if err != nil {
				t.Fatal(err)
			}
			if strongETag(e.Version) {
				t.Fatalf("version %q is an ETag; the test needs one without", e.Version)
			}
			if strings.Contains(tc.name, "ETag appears") {
				// The first answer that carries an ETag pins it for this version.
				s.set(func(s *laxServer) { s.etag = `"a"` })
				if _, err := readAll(t, o, "f", e.Version, tc.off, tc.n); err != nil {
					t.Fatalf("read with the first ETag seen: %v", err)
				}
			} else if _, err := readAll(t, o, "f", e.Version, tc.off, tc.n); err != nil {
				t.Fatalf("read of the unchanged file: %v", err)
			}
			s.set(tc.change)
			b, err := readAll(t, o, "f", e.Version, tc.off, tc.n)
			if !errors.Is(err, ErrChanged) {
				t.Fatalf("read after the change: %d bytes, err %v; want ErrChanged", len(b), err)
			}
		})
	}
}

// An origin that ignores Range answers 200 with the whole body; for a read that is
// not the whole object that is an origin error, never bytes from the wrong offset,
// and not a change when the size still matches.
func TestRangeIgnoredIsAnErrorNotAMix(t *testing.T) {
	s := &laxServer{body: []byte("0123456789"), lastMod: lm1, ignoreRange: true}
	o := newLax(t, s)
	e, err := o.Stat(context.Background(), "f")
	if err != nil {
		t.Fatal(err)
	}
	b, err := readAll(t, o, "f", e.Version, 4, 3)
	if err == nil {
		t.Fatalf("read 4-6 from an origin ignoring Range gave %q", b)
	}
	if errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), "Range") {
		t.Errorf("error %v should say the origin ignores Range, not that the file changed", err)
	}
	if b, err := readAll(t, o, "f", e.Version, 0, 10); err != nil || string(b) != "0123456789" {
		t.Errorf("whole-object read from a 200: %q, %v", b, err)
	}
}

// An encoded answer to a ranged read (gzip) is an origin error, never stored as the
// file's bytes; every origin request asks for the identity encoding.
func TestEncodedRangeIsRefused(t *testing.T) {
	var accept sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accept.Store(r.Method+" "+r.Header.Get("Range"), r.Header.Get("Accept-Encoding"))
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Encoding", "gzip")
		if r.Header.Get("Range") == "" {
			w.Header().Set("Content-Length", "10")
			return
		}
		w.Header().Set("Content-Range", "bytes 0-4/10")
		w.Header().Set("Content-Length", "5")
		w.WriteHeader(http.StatusPartialContent)
		w.Write([]byte("\x1f\x8b\x08\x00\x00"))
	}))
	defer srv.Close()
	o, _ := NewHTTP(srv.URL, Options{Timeout: 5 * time.Second})
	if _, err := o.Stat(context.Background(), "f"); err != nil {
		t.Fatal(err)
	}
	b, err := readAll(t, o, "f", `"v1"`, 0, 5)
	if err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Fatalf("gzip-encoded range read as %q, err %v; want an error naming the encoding", b, err)
	}
	accept.Range(func(k, v any) bool {
		if v != "identity" {
			t.Errorf("%s sent Accept-Encoding %q, want identity", k, v)
		}
		return true
	})
}

// Credentials in the origin URL are sent on every request, ranged GETs included (an
// nginx with auth_basic is a working origin), and appear in no name or error.
func TestCredentialsOnEveryRequestNeverPrinted(t *testing.T) {
	var mu sync.Mutex
	var refused []string
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	fsrv := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "Pa55w0rd" {
			mu.Lock()
			refused = append(refused, r.Method+" "+r.URL.Path+" "+r.Header.Get("Range"))
			mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Basic realm="x"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/broken" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		fsrv.ServeHTTP(w, r)
	}))
	defer srv.Close()
	spec := strings.Replace(srv.URL, "http://", "http://alice:Pa55w0rd@", 1) + "/"
	o, err := New(spec, Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(o.String(), "Pa55w0rd") || !strings.Contains(o.String(), "alice") {
		t.Errorf("String() = %q: want the user without the password", o.String())
	}
	ctx := context.Background()
	ents, err := o.List(ctx, "")
	if err != nil || len(ents) != 1 {
		t.Fatalf("List: %v, %v", ents, err)
	}
	e, err := o.Stat(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := readAll(t, o, "f", e.Version, 2, 5); err != nil || string(b) != "23456" {
		t.Fatalf("ranged read with credentials: %q, %v", b, err)
	}
	mu.Lock()
	if len(refused) > 0 {
		t.Errorf("requests sent without the credentials: %q", refused)
	}
	mu.Unlock()
	for _, f := range []func() error{
		func() error { _, err := o.Stat(ctx, "broken"); return err },
		func() error { _, err := o.List(ctx, "broken"); return err },
		func() error { _, err := readAll(t, o, "broken", e.Version, 0, 5); return err },
		func() error { _, err := readAll(t, o, "f", e.Version, 0, 50); return err },
	} {
		if err := f(); err == nil || strings.Contains(err.Error(), "Pa55w0rd") {
			t.Errorf("error %v: want one without the password", err)
		}
	}
}
