package origin

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// A listing is bounded by progress, not in total: a directory of a million entries
// may take minutes to arrive and parse, while an origin that stops sending must be
// given up after the origin timeout, as a read is.

// stallGuard cancels a context when no progress is reported for idle.
type stallGuard struct {
	idle    time.Duration
	timer   *time.Timer
	stalled atomic.Bool
}

// guardProgress returns a context that ends when idle passes without a call to
// progress, and the guard; stop releases it. An idle of 0 guards nothing.
func guardProgress(ctx context.Context, idle time.Duration) (context.Context, *stallGuard, func()) {
	ctx, cancel := context.WithCancel(ctx)
	g := &stallGuard{idle: idle}
	if idle <= 0 {
		return ctx, g, cancel
	}
	g.timer = time.AfterFunc(idle, func() {
		g.stalled.Store(true)
		cancel()
	})
	return ctx, g, func() { g.timer.Stop(); cancel() }
}

func (g *stallGuard) progress() {
	if g.timer != nil {
		g.timer.Reset(g.idle)
	}
}

// explain turns the error of work the guard cut short into one that says so; other
// errors are returned as they are. A stall is transient (Retryable), like a read
// that timed out: a listing cached earlier is served instead.
func (g *stallGuard) explain(what string, err error) error {
	if err != nil && g.stalled.Load() {
		return fmt.Errorf("%s: no progress for %v (raise --origin-timeout if the origin is just slow): %w", what, g.idle, errStalled)
	}
	return err
}

var errStalled = fmt.Errorf("origin stalled")

// progressReader reports every read that brings bytes to its guard.
type progressReader struct {
	r io.Reader
	g *stallGuard
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.g.progress()
	}
	return n, err
}
