package cache

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
	bolt "go.etcd.io/bbolt"
)

// listedServer serves directory d as nginx's JSON autoindex (exact sizes) and its
// one file d/f with validators, recording the method of every request for d/f.
type listedServer struct {
	body []byte
	mu   sync.Mutex
	reqs []string
}

func (s *listedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mtime := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	switch r.URL.Path {
	case "/d/":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `[{"name":"f","type":"file","mtime":%q,"size":%d}]`, mtime.Format(http.TimeFormat), len(s.body))
	case "/d/f":
		s.mu.Lock()
		s.reqs = append(s.reqs, r.Method)
		s.mu.Unlock()
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "f", mtime, bytes.NewReader(s.body))
	default:
		http.NotFound(w, r)
	}
}

func (s *listedServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// A small file listed with its exact size is read cold with one GET, its version
// taken from that response; after a restart, the cached copy is checked with a HEAD,
// not fetched again whole.
func TestSmallListedFileOneGET(t *testing.T) {
	s := &listedServer{body: bytes.Repeat([]byte("0123456789"), 1000)}
	srv := httptest.NewServer(s)
	defer srv.Close()
	o, err := origin.NewHTTP(srv.URL+"/", origin.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	read := func() {
		c, err := Open(o, f.opts)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.List(context.Background(), "d"); err != nil {
			t.Fatal(err)
		}
		if got := readWhole(t, c, "d/f"); !bytes.Equal(got, s.body) {
			t.Fatalf("read %d bytes, not the file", len(got))
		}
		h, err := c.Open(context.Background(), "d/f")
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		if h.Entry().Version != `"v1"` || !h.Complete() {
			t.Fatalf("cached version %q, complete %v; want the GET's ETag, complete", h.Entry().Version, h.Complete())
		}
	}
	read()
	if got := s.requests(); !slices.Equal(got, []string{"GET"}) {
		t.Fatalf("a cold read sent %v for the file, want one GET", got)
	}
	// After a restart within the TTL the stat kept in index.db names the cached
	// version: nothing is asked.
	read()
	if got := s.requests(); !slices.Equal(got, []string{"GET"}) {
		t.Fatalf("a read after a restart sent %v for the file in all, want the first GET only", got)
	}
	// Without it, the cached version is checked with a HEAD, not fetched again. (The
	// metadata goes; the object index, which holds the small file's sidecar, stays.)
	db, err := bolt.Open(filepath.Join(f.cacheDir, "index.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(clearBuckets); err != nil {
		t.Fatal(err)
	}
	db.Close()
	read()
	if got := s.requests(); !slices.Equal(got, []string{"GET", "HEAD"}) {
		t.Fatalf("a read after a restart without its metadata sent %v for the file in all, want GET then HEAD", got)
	}
}

// A cold small listed file whose origin lists it but then goes silent costs one
// unanswered GET, not a GET and then a HEAD each waiting the whole timeout.
func TestSilentOriginSmallFileOneTimeout(t *testing.T) {
	s := &listedServer{body: []byte("tiny")}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/d/f" {
			s.mu.Lock()
			s.reqs = append(s.reqs, r.Method)
			s.mu.Unlock()
			select { // a blackholed origin: the request is taken, nothing comes back
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		s.ServeHTTP(w, r)
	}))
	defer srv.Close()
	defer close(release)
	o, err := origin.NewHTTP(srv.URL+"/", origin.Options{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	f.opts.OriginTimeout = 300 * time.Millisecond
	c, err := Open(o, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.List(context.Background(), "d"); err != nil {
		t.Fatal(err)
	}
	if h, err := c.Open(context.Background(), "d/f"); err == nil {
		h.Close()
		t.Fatal("opened a file whose origin never answered")
	}
	if got := s.requests(); !slices.Equal(got, []string{"GET"}) {
		t.Fatalf("opening the file sent %v, want one GET", got)
	}
}
