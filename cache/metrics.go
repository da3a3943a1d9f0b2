package cache

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"sync/atomic"
	"time"

	"github.com/cachegate/cachegate/internal/bwlimit"
	"github.com/cachegate/cachegate/internal/origin"
)

// Origin operations, as counted by Metrics.
const (
	opStat = iota
	opList
	opRead
	numOps
)

var opNames = [numOps]string{"stat", "list", "read"}

// ErrorKinds are the kinds Metrics sorts origin errors into.
var ErrorKinds = []string{"not_found", "changed", "timeout", "canceled", "status_4xx", "status_5xx", "network", "other"}

// errorKind sorts an origin error into one of ErrorKinds (its index).
func errorKind(err error) int {
	var se *origin.StatusError
	var ne net.Error
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0
	case errors.Is(err, origin.ErrChanged):
		return 1
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return 2
	case errors.Is(err, context.Canceled):
		return 3
	case errors.As(err, &se) && se.Status < 500:
		return 4
	case errors.As(err, &se):
		return 5
	case errors.As(err, &ne):
		return 6
	}
	return 7
}

// FillBuckets are the upper bounds of the fill-latency histogram: how long a read
// that missed waited for the origin to bring its chunks.
var FillBuckets = []time.Duration{
	time.Millisecond, 5 * time.Millisecond, 25 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, time.Second, 5 * time.Second, 30 * time.Second,
}

// cacheMetrics are counters for /-/metrics. They are atomics, so that the paths
// that count take no lock for them.
type cacheMetrics struct {
	requests       [numOps]atomic.Int64
	errors         [numOps][8]atomic.Int64 // by errorKind
	retries        [numOps]atomic.Int64
	evictedObjects atomic.Int64
	evictedBytes   atomic.Int64
	fill           [9]atomic.Int64 // per FillBuckets, then +Inf (not cumulative)
	fillSum        atomic.Int64    // nanoseconds
	// Prefetches (prefetch.go) done, and those a reader then opened.
	prefetchFiles, prefetchBytes        atomic.Int64
	prefetchUseful, prefetchUsefulBytes atomic.Int64
}

func (m *cacheMetrics) evicted(bytes int64) {
	m.evictedObjects.Add(1)
	m.evictedBytes.Add(bytes)
}

func (m *cacheMetrics) observeFill(d time.Duration) {
	i := 0
	for i < len(FillBuckets) && d > FillBuckets[i] {
		i++
	}
	m.fill[i].Add(1)
	m.fillSum.Add(int64(d))
}

func (m *cacheMetrics) done(op int, err error) {
	m.requests[op].Add(1)
	if err != nil {
		m.errors[op][errorKind(err)].Add(1)
	}
}

// meteredOrigin counts the requests the cache makes of its origin, and their errors
// (a body that fails while it is read is counted by the fetch's retries). The
// readers it returns are the origin's own, or paced ones that still splice
// (bwlimit.go), so that splicing still works.
type meteredOrigin struct {
	origin.Origin
	m     *cacheMetrics
	limit *bwlimit.Bucket // Options.BWLimit: paces every read's bytes (bwlimit.go); nil: none
}

func (o *meteredOrigin) Stat(ctx context.Context, p string) (origin.Entry, error) {
	e, err := o.Origin.Stat(ctx, p)
	o.m.done(opStat, err)
	return e, err
}

func (o *meteredOrigin) List(ctx context.Context, p string) ([]origin.Entry, error) {
	e, err := o.Origin.List(ctx, p)
	o.m.done(opList, err)
	return e, err
}

func (o *meteredOrigin) ReadRange(ctx context.Context, p, version string, off, n int64) (io.ReadCloser, error) {
	rc, err := o.Origin.ReadRange(ctx, p, version, off, n)
	o.m.done(opRead, err)
	if err != nil {
		return rc, err
	}
	return paced(ctx, rc, o.buckets(ctx)), nil
}

// GetWhole is the origin's WholeGetter, counted as a read and paced as one (max
// bytes paid before, what did not come given back); ok is false when the origin
// has none.
func (o *meteredOrigin) GetWhole(ctx context.Context, p string, max int64) (e origin.Entry, b []byte, ok bool, err error) {
	g, ok := o.Origin.(origin.WholeGetter)
	if !ok {
		return origin.Entry{}, nil, false, nil
	}
	bs := o.buckets(ctx)
	if err := (&pacedReader{ctx: ctx, bs: bs}).pay(max); err != nil {
		return origin.Entry{}, nil, true, err
	}
	e, b, err = g.GetWhole(ctx, p, max)
	o.m.done(opRead, err)
	for _, bk := range bs {
		bk.Return(max - int64(len(b)))
	}
	return e, b, true, err
}

// OriginOpMetrics are the counts of one kind of origin request.
type OriginOpMetrics struct {
	Op       string           // stat, list or read
	Requests int64            // requests made (an HTTP origin's own retries of a stat or listing included in one)
	Errors   map[string]int64 // failed requests by kind (see ErrorKinds)
	Retries  int64            // requests repeated by the cache after a transient failure
}

// Metrics are the cache's counters since it was opened, for /-/metrics.
type Metrics struct {
	Origin         []OriginOpMetrics
	EvictedObjects int64 // objects evicted to make room (or by gc)
	EvictedBytes   int64 // their bytes on disk
	// StaleStats and StaleLists count attributes and listings answered from what
	// was known before because the origin did not answer.
	StaleStats, StaleLists int64
	// FillCounts are the reads that waited for the origin per FillBuckets bucket
	// (not cumulative), then those slower than the last; FillSum their total wait.
	FillCounts []int64
	FillSum    time.Duration
	// PrefetchedFiles and PrefetchedBytes count the small files fetched ahead of a
	// reader (their origin requests are counted as reads too); PrefetchUseful and
	// PrefetchUsefulBytes those a reader opened afterwards or while they came.
	PrefetchedFiles, PrefetchedBytes    int64
	PrefetchUseful, PrefetchUsefulBytes int64
}

// Metrics returns the cache's counters.
func (c *Cache) Metrics() Metrics {
	m := &c.metrics
	out := Metrics{EvictedObjects: m.evictedObjects.Load(), EvictedBytes: m.evictedBytes.Load(),
		StaleStats: c.meta.stale[0].Load(), StaleLists: c.meta.stale[1].Load(), FillSum: time.Duration(m.fillSum.Load()),
		PrefetchedFiles: m.prefetchFiles.Load(), PrefetchedBytes: m.prefetchBytes.Load(),
		PrefetchUseful: m.prefetchUseful.Load(), PrefetchUsefulBytes: m.prefetchUsefulBytes.Load()}
	for op := 0; op < numOps; op++ {
		om := OriginOpMetrics{Op: opNames[op], Requests: m.requests[op].Load(), Retries: m.retries[op].Load(), Errors: map[string]int64{}}
		for k, name := range ErrorKinds {
			om.Errors[name] = m.errors[op][k].Load()
		}
		out.Origin = append(out.Origin, om)
	}
	for i := range m.fill {
		out.FillCounts = append(out.FillCounts, m.fill[i].Load())
	}
	return out
}
