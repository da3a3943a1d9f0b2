package origin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// GetWhole takes an origin's answer as a file's bytes and version: an answer larger
// than asked, without a length, cut short, or that never ends must fail (the cache
// then asks as usual), never be taken or held without bound.
func TestGetWholeHostileAnswers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve func(w http.ResponseWriter, r *http.Request)
		want  string
	}{
		{"larger than asked", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"v"`)
			w.Write([]byte(strings.Repeat("x", 200)))
		}, "more than the 100 asked"},
		{"no length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"v"`)
			w.Write([]byte("abc"))
			w.(http.Flusher).Flush() // chunked: no Content-Length
		}, "no Content-Length"},
		{"cut short", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"v"`)
			w.Header().Set("Content-Length", "50")
			w.Write([]byte("only ten b"))
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		}, "read "},
		{"never ends", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"v"`)
			w.Header().Set("Content-Length", "50")
			w.Write([]byte("ten bytes."))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, "context deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(tc.serve))
			defer srv.Close()
			h, err := NewHTTP(srv.URL+"/", Options{Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			_, b, err := h.GetWhole(ctx, "f", 100)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("GetWhole: %d bytes, %v; want an error with %q", len(b), err, tc.want)
			}
		})
	}
}
