// Package bwlimit is a token bucket that paces bytes read from an origin, so that a
// pre-warm or a busy mount does not starve the origin's link or its other users
// (--bwlimit).
//
// Design choices:
//   - A waiter takes its tokens before it reads or splices, possibly into debt, and
//     then sleeps until the debt is paid: concurrent readers are served in the order
//     they asked, and the rate holds over any interval longer than one burst.
//   - The bucket holds at most one second's worth of tokens (or one piece, if larger),
//     so an idle link buys no more than that as a burst afterwards.
//   - Large requests (a 1 MiB chunk spliced in one call at 500 KiB/s) are paid in
//     pieces of at most one burst, so no single wait is unbounded by the burst.
//   - A nil *Bucket is "no limit": every method is a no-op on it.
package bwlimit

import (
	"context"
	"sync"
	"time"
)

// Clock is the time source of a Bucket; tests give a fake one.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx ends, and returns ctx's error in that case.
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Bucket paces bytes to a rate. It is safe for concurrent use.
type Bucket struct {
	rate  float64 // bytes per second; write once
	burst int64   // most tokens held, and the largest piece one wait pays; write once
	clock Clock   // write once

	mu     sync.Mutex
	tokens float64   // guarded by mu; negative when waiters are in debt
	last   time.Time // guarded by mu: when tokens was last topped up
}

// New returns a bucket of rate bytes per second, or nil (no limit) when rate <= 0.
// The burst is one second's worth, at least minBurst (e.g. one chunk, so a chunk
// spliced in one call is not split below its size).
func New(rate, minBurst int64) *Bucket {
	return NewWithClock(rate, minBurst, realClock{})
}

// NewWithClock is New with a given clock.
func NewWithClock(rate, minBurst int64, clock Clock) *Bucket {
	if rate <= 0 {
		return nil
	}
	b := &Bucket{rate: float64(rate), burst: max(rate, minBurst, 1), clock: clock}
	b.last = clock.Now()
	b.tokens = float64(b.burst)
	return b
}

// Rate is the bucket's rate in bytes per second (0 for nil: no limit).
func (b *Bucket) Rate() int64 {
	if b == nil {
		return 0
	}
	return int64(b.rate)
}

// Burst is the largest piece one call of WaitN pays at once (0 for nil).
func (b *Bucket) Burst() int64 {
	if b == nil {
		return 0
	}
	return b.burst
}

// WaitN takes n tokens, sleeping as long as the rate demands. It returns ctx's error
// (promptly) if ctx ends first; the tokens of the piece it was waiting for are then
// given back, those of the pieces already paid are not.
func (b *Bucket) WaitN(ctx context.Context, n int64) error {
	if b == nil || n <= 0 {
		return ctx.Err()
	}
	for n > 0 {
		piece := min(n, b.burst)
		if err := b.pay(ctx, piece); err != nil {
			return err
		}
		n -= piece
	}
	return nil
}

// pay takes piece tokens (piece <= burst) and sleeps until the debt it ran up is paid.
func (b *Bucket) pay(ctx context.Context, piece int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	now := b.clock.Now()
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(float64(b.burst), b.tokens+el.Seconds()*b.rate)
		b.last = now
	}
	b.tokens -= float64(piece)
	debt := -b.tokens
	b.mu.Unlock()
	if debt <= 0 {
		return nil
	}
	wait := time.Duration(debt / b.rate * float64(time.Second))
	if err := b.clock.Sleep(ctx, wait); err != nil {
		b.mu.Lock()
		b.tokens = min(float64(b.burst), b.tokens+float64(piece))
		b.mu.Unlock()
		return err
	}
	return nil
}

// Return gives back n tokens taken by WaitN but not used (a read that returned fewer
// bytes than it paid for), up to a full bucket.
func (b *Bucket) Return(n int64) {
	if b == nil || n <= 0 {
		return
	}
	b.mu.Lock()
	b.tokens = min(float64(b.burst), b.tokens+float64(n))
	b.mu.Unlock()
}
