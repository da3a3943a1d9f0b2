package cache

import (
	"context"
	"io"
	"sync/atomic"
	"testing"

	"github.com/cachegate/cachegate/internal/origin"
)

// flakyOrigin fails the first fails reads with 503.
type flakyOrigin struct {
	origin.Origin
	fails atomic.Int64
}

func (o *flakyOrigin) ReadRange(ctx context.Context, p, v string, off, n int64) (io.ReadCloser, error) {
	if o.fails.Add(-1) >= 0 {
		return nil, &origin.StatusError{URL: "http://o/" + p, Status: 503}
	}
	return o.Origin.ReadRange(ctx, p, v, off, n)
}

// TestMetrics: origin requests and errors are counted by operation and kind, the
// cache's retries, evictions with their bytes, and each read that waited for the
// origin in the fill histogram (issue 20 point 13).
func TestMetrics(t *testing.T) {
	f := newFixture(t)
	randomFile(t, f.originDir, "a", 200<<10, 1)
	randomFile(t, f.originDir, "b", 200<<10, 2)
	fo := &flakyOrigin{Origin: f.origin}
	fo.fails.Store(2)
	f.opts.Limit = 256 << 10 // room for one file: reading b evicts a
	c, err := Open(fo, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	readWhole(t, c, "a")
	readWhole(t, c, "b")
	if _, err := c.Open(context.Background(), "nope"); err == nil {
		t.Fatal("open of a missing file succeeded")
	}
	m := c.Metrics()
	ops := map[string]OriginOpMetrics{}
	for _, o := range m.Origin {
		ops[o.Op] = o
	}
	if r := ops["read"]; r.Requests < 4 || r.Errors["status_5xx"] != 2 || r.Retries != 2 {
		t.Errorf("reads: %+v, want 2 failed with 503 and retried, 2 more at least", r)
	}
	if s := ops["stat"]; s.Requests != 3 || s.Errors["not_found"] != 1 {
		t.Errorf("stats: %+v, want 3, 1 not found", s)
	}
	if m.EvictedObjects != 1 || m.EvictedBytes < 200<<10 {
		t.Errorf("evicted %d objects, %d bytes; want 1 of 200 KiB", m.EvictedObjects, m.EvictedBytes)
	}
	var fills int64
	for _, n := range m.FillCounts {
		fills += n
	}
	if hits, misses, _, _ := c.Snapshot(); fills != misses || fills == 0 || m.FillSum <= 0 {
		t.Errorf("fill histogram holds %d reads (%v in all), the cache counted %d misses (%d hits)", fills, m.FillSum, misses, hits)
	}
	if c.Origin() != origin.Origin(fo) {
		t.Errorf("Origin() is %T, want the origin given to Open", c.Origin())
	}
}
