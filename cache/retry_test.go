package cache

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
)

// The fill has one retry policy: its own, which resumes from the first chunk not
// yet written. The origin client makes one attempt per request of a fill, where it
// used to retry each three times inside the fill's four: twelve requests for a span
// that makes no progress.
func TestFillRetriesOnce(t *testing.T) {
	var firstSpanGETs atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", "4194304")
			w.Header().Set("ETag", `"v1"`)
			return
		}
		if strings.HasPrefix(r.Header.Get("Range"), "bytes=0-") {
			firstSpanGETs.Add(1)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	o, err := origin.NewHTTP(srv.URL+"/", origin.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h := openOver(t, o, "f")
	if _, err := h.Fill(ctx, 0, 64<<10); err == nil {
		t.Fatal("a fill from an origin answering 503 succeeded")
	}
	if n := firstSpanGETs.Load(); n != maxAttempts {
		t.Fatalf("a span that makes no progress cost %d requests, want %d (the fill's attempts, one request each)", n, maxAttempts)
	}
}

// openOver opens a cache of the fixture's options over o, and p in it; both close
// with the test.
func openOver(t *testing.T, o origin.Origin, p string) *Handle {
	t.Helper()
	c, err := Open(o, newFixture(t).opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h, err := c.Open(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}
