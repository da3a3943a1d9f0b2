package cache

import (
	"context"
	"io"
	"os"
	"sync"
	"time"

	"github.com/cachegate/cachegate/internal/bwlimit"
	"github.com/cachegate/cachegate/internal/origin"
)

// Bandwidth limits (--bwlimit) pace the bytes of origin reads, not requests: every
// range reader the cache gets from its origin (meteredOrigin.ReadRange) pays its
// bytes to the process's bucket (Options.BWLimit, shared by every reader of the
// cache) and to the bucket of whoever started the fetch (WithBWLimit: one warm's
// own limit), before each read or splice. Listings and stats are not paced.

// maxLimitedRead is the most one paced Read asks of the origin's body: a body read
// returns what the socket holds (often 16-64 KiB), and the tokens it paid for but did
// not get are returned, so a smaller ask keeps the debt of a short read small.
const maxLimitedRead = 128 << 10

type bwlimitKey struct{}

// WithBWLimit returns ctx carrying b: the origin reads of fetches started under the
// returned context (cache warm --bwlimit) are paced by b, besides the cache's own
// limit. A nil b adds nothing.
func WithBWLimit(ctx context.Context, b *bwlimit.Bucket) context.Context {
	if b == nil {
		return ctx
	}
	return context.WithValue(ctx, bwlimitKey{}, b)
}

// carryBWLimit hands the bucket of from (if any) to ctx: a fetch runs under its own
// context, detached from the reader that started it, but keeps that reader's limit.
func carryBWLimit(ctx, from context.Context) context.Context {
	if from == nil {
		return ctx
	}
	if b, ok := from.Value(bwlimitKey{}).(*bwlimit.Bucket); ok {
		return context.WithValue(ctx, bwlimitKey{}, b)
	}
	return ctx
}

// buckets are the limits that apply to an origin read under ctx: the cache's, and
// the one ctx carries.
func (o *meteredOrigin) buckets(ctx context.Context) []*bwlimit.Bucket {
	var bs []*bwlimit.Bucket
	if o.limit != nil {
		bs = append(bs, o.limit)
	}
	if b, ok := ctx.Value(bwlimitKey{}).(*bwlimit.Bucket); ok && b != o.limit {
		bs = append(bs, b)
	}
	return bs
}

// paced wraps an origin reader so that its bytes pay the buckets before they are
// read. A reader that splices into files (origin.FileWriter) stays one: see
// pacedFileWriter.
func paced(ctx context.Context, rc io.ReadCloser, bs []*bwlimit.Bucket) io.ReadCloser {
	if len(bs) == 0 {
		return rc
	}
	p := &pacedReader{rc: rc, ctx: ctx, bs: bs, piece: maxLimitedRead}
	for _, b := range bs {
		p.piece = min(p.piece, int(b.Burst()))
	}
	if fw, ok := rc.(origin.FileWriter); ok {
		return &pacedFileWriter{p, fw}
	}
	return p
}

type pacedReader struct {
	rc    io.ReadCloser
	ctx   context.Context // the read's: its end stops a wait for tokens
	bs    []*bwlimit.Bucket
	piece int // the most one Read asks for: maxLimitedRead, at most a burst
}

func (p *pacedReader) Read(b []byte) (int, error) {
	n := min(len(b), p.piece)
	if err := p.pay(int64(n)); err != nil {
		return 0, err
	}
	m, err := p.rc.Read(b[:n])
	for _, bk := range p.bs {
		bk.Return(int64(n - m))
	}
	return m, err
}

// stallClock is a fetch's stall timer (see fetch), carried in the context of its
// origin reads: waiting for tokens is the limit at work, not the origin stalling, so
// the timer stops while a read waits and starts afresh once it is paid.
type stallClock struct {
	timer   *time.Timer
	timeout time.Duration
}

type stallClockKey struct{}

func withStallClock(ctx context.Context, t *time.Timer, timeout time.Duration) context.Context {
	return context.WithValue(ctx, stallClockKey{}, &stallClock{t, timeout})
}

// pay takes n tokens from every bucket; on failure what was taken is given back.
func (p *pacedReader) pay(n int64) error {
	if sc, ok := p.ctx.Value(stallClockKey{}).(*stallClock); ok {
		// A timer that already fired has cancelled the fetch: the wait below then
		// ends at once.
		if sc.timer.Stop() {
			defer sc.timer.Reset(sc.timeout)
		}
	}
	for i, b := range p.bs {
		if err := b.WaitN(p.ctx, n); err != nil {
			for _, paid := range p.bs[:i] {
				paid.Return(n)
			}
			return err
		}
	}
	return nil
}

func (p *pacedReader) Close() error { return p.rc.Close() }

// pacedFileWriter paces a splicing reader: the n bytes of a splice are paid before
// it runs (a chunk at a time, so a burst is at most a second's worth or one chunk).
type pacedFileWriter struct {
	*pacedReader
	fw origin.FileWriter
}

func (p *pacedFileWriter) WriteToFile(f *os.File, off, n int64, mu sync.Locker) error {
	if err := p.pay(n); err != nil {
		return err
	}
	return p.fw.WriteToFile(f, off, n, mu)
}
