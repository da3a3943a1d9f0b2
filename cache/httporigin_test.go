package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
)

// bareServer serves one file by ranges and sends no validators at all (no ETag, no
// Last-Modified), so only the size tells its versions apart.
type bareServer struct {
	mu   sync.Mutex
	body []byte
}

func (s *bareServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	body := s.body
	s.mu.Unlock()
	var a, b int
	if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &a, &b); err != nil || r.Method == http.MethodHead {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method != http.MethodHead {
			w.Write(body)
		}
		return
	}
	if a > b || a >= len(body) {
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return
	}
	b = min(b, len(body)-1)
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, len(body)))
	w.Header().Set("Content-Length", strconv.Itoa(b-a+1))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(body[a : b+1])
}

// A file of an origin without validators that grows from 16 to 32 MiB while it is
// read: the cache fails the read of the old version instead of storing bytes of the
// new one in it, and then reads the new version whole.
func TestOriginWithoutValidatorsNeverMixes(t *testing.T) {
	s := &bareServer{body: bytes.Repeat([]byte{'o'}, 16<<20)}
	srv := httptest.NewServer(s)
	defer srv.Close()
	o, err := origin.NewHTTP(srv.URL+"/", origin.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	f.opts.Readahead = 64 << 10
	c, err := Open(o, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	h, err := c.Open(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	buf := make([]byte, 4096)
	if _, err := h.ReadAt(ctx, buf, 0); err != nil || buf[0] != 'o' {
		t.Fatalf("first read: %q, %v", buf[:1], err)
	}
	newer := bytes.Repeat([]byte{'n'}, 32<<20)
	s.mu.Lock()
	s.body = newer
	s.mu.Unlock()
	n, err := h.ReadAt(ctx, buf, 8<<20)
	if !errors.Is(err, origin.ErrChanged) {
		t.Fatalf("read of the old version after the file grew: %q, %v; want ErrChanged", buf[:min(n, 8)], err)
	}
	h.Close()
	if got := readWhole(t, c, "f"); !bytes.Equal(got, newer) {
		t.Fatalf("after the change: %d bytes, not the new version whole", len(got))
	}
}
