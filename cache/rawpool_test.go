package cache

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
)

// An origin (nginx: keepalive_timeout 75 s) closes the raw client's idle pooled
// connections. A fill after a quiet minute must not fail on them: the pool used to
// keep them forever and retry once, onto the next dead one, and with the fill's
// reads made under WithCallerRetries each of its 4 attempts burnt 2 dead
// connections, so 8 pooled dead ones failed a cold read (review of 2026-12-03).
func TestStaleRawPoolDoesNotFailFill(t *testing.T) {
	s := &bareServer{body: bytes.Repeat([]byte{'o'}, 4<<20)}
	var hold atomic.Bool
	hold.Store(true)
	gate := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hold.Load() && r.Header.Get("Range") != "" {
			<-gate
		}
		s.ServeHTTP(w, r)
	}))
	defer srv.Close()
	o, err := origin.NewHTTP(srv.URL+"/", origin.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e, err := o.Stat(context.Background(), "warm")
	if err != nil {
		t.Fatal(err)
	}
	// Earlier parallel reads (readahead, several readers) left 12 connections pooled.
	const conns = 12
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rc, err := o.ReadRange(context.Background(), "warm", e.Version, int64(i)*100, 100)
			if err != nil {
				t.Error(err)
				return
			}
			io.ReadAll(rc)
			rc.Close()
		}(i)
	}
	time.Sleep(200 * time.Millisecond)
	hold.Store(false)
	close(gate)
	wg.Wait()
	// A quiet period: the origin closes its idle connections.
	srv.CloseClientConnections()
	time.Sleep(50 * time.Millisecond)

	ctx := context.Background()
	h := openOver(t, o, "f")
	buf := make([]byte, 4096)
	if _, err := h.ReadAt(ctx, buf, 1<<20); err != nil {
		t.Fatalf("a read after the origin closed idle connections failed: %v", err)
	}
}
