package cache

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
	"sync/atomic"
	"testing"
)

// downServer answers 503 to every file request once down is set, counting them.
type downServer struct {
	*dirServer
	down  atomic.Bool
	fails atomic.Int64
}

func (s *downServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.down.Load() && r.URL.Path[len(r.URL.Path)-1] != '/' {
		s.fails.Add(1)
		s.mu.Lock()
		s.reqs[r.URL.Path] = append(s.reqs[r.URL.Path], r.Method)
		s.mu.Unlock()
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	s.dirServer.ServeHTTP(w, r)
}

// With the origin down, a reader going through a directory costs the origin no
// more requests with prefetch than without it, but for the prefetches running
// when the first one failed: a prefetch that finds the origin failing stops all
// prefetching for prefetchIdle, instead of sending (with retries) requests for
// every file ahead of a reader whose own opens fail too.
func TestPrefetchOriginDownNoRetryStorm(t *testing.T) {
	count := func(ahead int) int64 {
		s := &downServer{dirServer: newDirServer(1, 40, 1000)}
		c := prefetchFixtureHandler(t, s, ahead, 2)
		if c.prefetch != nil {
			c.prefetch.idle = time.Minute // the reader never goes away, the pause never ends
		}
		listDir(t, c, "d0")
		s.down.Store(true)
		for i := 0; i < 3; i++ {
			if _, err := readAll(c, fmt.Sprintf("d0/f%02d", i)); err == nil {
				t.Fatalf("read d0/f%02d with the origin down: no error", i)
			}
		}
		if c.prefetch != nil {
			waitPrefetchIdle(t, c)
		}
		return s.fails.Load()
	}
	without, with := count(0), count(16)
	if with > without+2*6 { // the 2 prefetches running when the first failed: 3 GETs and 3 HEADs each
		t.Errorf("origin down: %d requests with prefetch, %d without; prefetch kept asking a dead origin", with, without)
	}
}

// prefetchFixtureHandler is prefetchFixture over any handler.
func prefetchFixtureHandler(t *testing.T, h http.Handler, ahead, parallel int) *Cache {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	o, err := origin.NewHTTP(srv.URL+"/", origin.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	f.opts.Prefetch, f.opts.PrefetchParallel = ahead, parallel
	c, err := Open(o, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
