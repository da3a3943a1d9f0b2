package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
)

// fillStep scripts one origin request of a fill: it fails before any byte (open),
// or its body ends with bodyErr after breakAfter bytes, or (zero) it succeeds.
type fillStep struct {
	open       error
	breakAfter int64
	bodyErr    error
}

// scriptedOrigin answers ranged reads from the origin beneath, one script step a
// request, and records each request as the chunks it asks for ("3-9").
type scriptedOrigin struct {
	origin.Origin
	chunk int64

	mu    sync.Mutex
	steps []fillStep
	asked []string
}

func (s *scriptedOrigin) ReadRange(ctx context.Context, p, v string, off, n int64) (io.ReadCloser, error) {
	s.mu.Lock()
	s.asked = append(s.asked, fmt.Sprintf("%d-%d", off/s.chunk, (off+n-1)/s.chunk))
	var step fillStep
	if len(s.steps) > 0 {
		step, s.steps = s.steps[0], s.steps[1:]
	}
	s.mu.Unlock()
	if step.open != nil {
		return nil, step.open
	}
	rc, err := s.Origin.ReadRange(ctx, p, v, off, n)
	if err != nil || step.bodyErr == nil {
		return rc, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, step.breakAfter), errorReader{step.bodyErr}), rc}, nil
}

type errorReader struct{ err error }

func (r errorReader) Read([]byte) (int, error) { return 0, r.err }

// TestFillScript: the fill's one retry policy, case by case, from what the origin
// does to each request: which requests it makes (a retry resumes at the first chunk
// not written), what the reader gets, and which chunks end up cached. No timing: the
// pauses between attempts are set to none.
func TestFillScript(t *testing.T) {
	const chunk = 64 << 10
	reset := errors.New("connection reset by peer") // transient
	unavailable := &origin.StatusError{URL: "http://o/f", Status: 503}
	mid := func(c int64) int64 { return c*chunk + chunk/2 } // bytes into a request at chunk c's middle
	for _, tc := range []struct {
		name    string
		steps   []fillStep
		asked   string // the requests, by chunks
		wantErr error  // nil: chunks 3-9 are read and cached
		cached  string // the chunks cached after it
	}{
		{name: "no fault", asked: "3-9", cached: "3-9"},
		{name: "body breaks in chunk 5: resume at 5",
			steps: []fillStep{{breakAfter: mid(2), bodyErr: reset}},
			asked: "3-9 5-9", cached: "3-9"},
		{name: "503 twice, then the bytes",
			steps: []fillStep{{open: unavailable}, {open: unavailable}},
			asked: "3-9 3-9 3-9", cached: "3-9"},
		{name: "every request fails: maxAttempts, then the error",
			steps:   []fillStep{{open: unavailable}, {open: unavailable}, {open: unavailable}, {open: unavailable}, {open: unavailable}},
			asked:   "3-9 3-9 3-9 3-9", wantErr: unavailable, cached: ""},
		{name: "breaks without progress: the chunks before stay",
			steps:   []fillStep{{breakAfter: mid(1), bodyErr: reset}, {breakAfter: chunk / 2, bodyErr: reset}, {breakAfter: 0, bodyErr: reset}, {breakAfter: 100, bodyErr: reset}},
			asked:   "3-9 4-9 4-9 4-9", wantErr: reset, cached: "3"},
		{name: "progress renews the budget: five breaks, each a chunk on",
			steps: []fillStep{{breakAfter: mid(1), bodyErr: reset}, {breakAfter: mid(1), bodyErr: reset}, {breakAfter: mid(1), bodyErr: reset}, {breakAfter: mid(1), bodyErr: reset}, {breakAfter: mid(1), bodyErr: reset}},
			asked: "3-9 4-9 5-9 6-9 7-9 8-9", cached: "3-9"},
		{name: "changed object: no retry",
			steps:   []fillStep{{breakAfter: mid(3), bodyErr: fmt.Errorf("f: %w", origin.ErrChanged)}},
			asked:   "3-9", wantErr: origin.ErrChanged, cached: "3-5"},
		{name: "gone at the origin: no retry",
			steps:   []fillStep{{open: fmt.Errorf("f: %w", origin.ErrNotExist)}},
			asked:   "3-9", wantErr: origin.ErrNotExist, cached: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			want := randomFile(t, f.originDir, "f", 16*chunk, 21)
			so := &scriptedOrigin{Origin: f.origin, chunk: chunk, steps: tc.steps}
			c, err := Open(so, f.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.retryDelay = func(int) time.Duration { return 0 }
			h, err := c.Open(context.Background(), "f")
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			buf := make([]byte, 7*chunk)
			n, err := h.ReadAt(context.Background(), buf, 3*chunk)
			switch {
			case tc.wantErr == nil && (err != nil || !bytes.Equal(buf[:n], want[3*chunk:10*chunk])):
				t.Fatalf("read of chunks 3-9: %d bytes, %v; want the origin's %d", n, err, len(buf))
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("read of chunks 3-9: %v, want %v", err, tc.wantErr)
			}
			so.mu.Lock()
			asked := strings.Join(so.asked, " ")
			so.mu.Unlock()
			if asked != tc.asked {
				t.Errorf("requests %q, want %q", asked, tc.asked)
			}
			if got := cachedChunks(h); got != tc.cached {
				t.Errorf("cached chunks %q, want %q", got, tc.cached)
			}
		})
	}
}

// cachedChunks lists the runs of h's present chunks ("3-5 7").
func cachedChunks(h *Handle) string {
	o := h.o
	o.mu.Lock()
	defer o.mu.Unlock()
	var runs []string
	for i := 0; i < o.nchunks; i++ {
		if !o.side.has(i) {
			continue
		}
		j := i
		for j+1 < o.nchunks && o.side.has(j+1) {
			j++
		}
		if j == i {
			runs = append(runs, fmt.Sprint(i))
		} else {
			runs = append(runs, fmt.Sprintf("%d-%d", i, j))
		}
		i = j
	}
	return strings.Join(runs, " ")
}
