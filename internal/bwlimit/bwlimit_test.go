package bwlimit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock whose time moves only by Advance. Sleepers wait on it; the
// test waits (on a condition, never by sleeping) until the expected sleepers are
// asleep before it advances.
type fakeClock struct {
	mu       sync.Mutex
	cond     *sync.Cond
	now      time.Time
	sleepers map[chan struct{}]time.Time // wake-up times
	slept    []time.Duration             // every sleep asked for
	asleep   chan struct{}               // a token per Sleep that blocks
}

func newFakeClock() *fakeClock {
	c := &fakeClock{now: time.Unix(1_000_000, 0), sleepers: map[chan struct{}]time.Time{}, asleep: make(chan struct{}, 1024)}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	ch := make(chan struct{})
	c.mu.Lock()
	c.slept = append(c.slept, d)
	if d <= 0 {
		c.mu.Unlock()
		return nil
	}
	c.sleepers[ch] = c.now.Add(d)
	c.cond.Broadcast()
	c.mu.Unlock()
	c.asleep <- struct{}{}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.sleepers, ch)
		c.mu.Unlock()
		return ctx.Err()
	}
}

// waitSleepers blocks until n goroutines sleep on the clock.
func (c *fakeClock) waitSleepers(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.sleepers) < n {
		c.cond.Wait()
	}
}

// advanceToNext moves time to the earliest wake-up and wakes its sleepers.
func (c *fakeClock) advanceToNext() {
	c.mu.Lock()
	var next time.Time
	for _, at := range c.sleepers {
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	d := next.Sub(c.now)
	c.mu.Unlock()
	if !next.IsZero() {
		c.Advance(d)
	}
}

// Advance moves time by d and wakes the sleepers whose time has come.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for ch, at := range c.sleepers {
		if !at.After(c.now) {
			close(ch)
			delete(c.sleepers, ch)
		}
	}
}

func TestNilBucketIsNoLimit(t *testing.T) {
	if b := New(0, 1<<20); b != nil {
		t.Fatalf("New(0) = %v, want nil (no limit)", b)
	}
	var b *Bucket
	if err := b.WaitN(context.Background(), 1<<40); err != nil {
		t.Fatal(err)
	}
}

// TestRateHolds: one reader taking 64 KiB pieces at 1 MiB/s. After the first second's
// burst, the clock must advance by the bytes' worth of time: 10 MiB take 9 s more.
func TestRateHolds(t *testing.T) {
	clk := newFakeClock()
	const rate = 1 << 20
	b := NewWithClock(rate, 0, clk)
	done := make(chan error)
	const total = 10 << 20
	go func() {
		for n := 0; n < total; n += 64 << 10 {
			if err := b.WaitN(context.Background(), 64<<10); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	start := clk.Now()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			el := clk.Now().Sub(start)
			// The first second's worth is the burst; the other 9 MiB take 9 s.
			if want := 9 * time.Second; el < want-10*time.Millisecond || el > want+10*time.Millisecond {
				t.Fatalf("10 MiB at 1 MiB/s with a 1 MiB burst took %v of clock time, want about %v", el, want)
			}
			return
		case <-clk.asleep:
			// The reader sleeps: wake it exactly when it asked to be woken.
			clk.advanceToNext()
		}
	}
}

// TestBurstBounded: after a long idle spell, no more than one burst passes without a
// wait.
func TestBurstBounded(t *testing.T) {
	clk := newFakeClock()
	b := NewWithClock(1000, 0, clk)
	clk.Advance(time.Hour)
	if err := b.WaitN(context.Background(), 1000); err != nil {
		t.Fatal(err)
	}
	if len(clk.slept) != 0 {
		t.Fatalf("the first burst slept %v", clk.slept)
	}
	errc := make(chan error, 1)
	go func() { errc <- b.WaitN(context.Background(), 500) }()
	clk.waitSleepers(1)
	if got := clk.slept[len(clk.slept)-1]; got != 500*time.Millisecond {
		t.Fatalf("500 bytes beyond an hour's idle burst wait %v, want 500ms: the burst must be one second's worth", got)
	}
	clk.Advance(500 * time.Millisecond)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestLargeRequestPaidInPieces: a piece larger than the burst (a chunk spliced in one
// call) is paid a burst at a time, and a minimum burst of one chunk keeps it whole.
func TestLargeRequestPaidInPieces(t *testing.T) {
	clk := newFakeClock()
	b := NewWithClock(1000, 0, clk)
	errc := make(chan error, 1)
	go func() { errc <- b.WaitN(context.Background(), 3500) }()
	for _, want := range []time.Duration{time.Second, time.Second, 500 * time.Millisecond} {
		clk.waitSleepers(1)
		if got := clk.slept[len(clk.slept)-1]; got != want {
			t.Fatalf("slept %v, want %v (all sleeps: %v)", got, want, clk.slept)
		}
		clk.Advance(want)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if b := NewWithClock(1000, 4096, clk); b.Burst() != 4096 {
		t.Fatalf("burst %d with a minimum of one 4096-byte chunk", b.Burst())
	}
}

// TestSharedByReaders: two readers share the rate; the second waits behind the first.
func TestSharedByReaders(t *testing.T) {
	clk := newFakeClock()
	b := NewWithClock(1000, 0, clk)
	if err := b.WaitN(context.Background(), 1000); err != nil { // drain the burst
		t.Fatal(err)
	}
	errc := make(chan error, 2)
	go func() { errc <- b.WaitN(context.Background(), 1000) }()
	clk.waitSleepers(1)
	go func() { errc <- b.WaitN(context.Background(), 1000) }()
	clk.waitSleepers(2)
	waits := append([]time.Duration(nil), clk.slept...)
	if len(waits) != 2 || min(waits[0], waits[1]) != time.Second || max(waits[0], waits[1]) != 2*time.Second {
		t.Fatalf("two readers of 1000 bytes at 1000 B/s waited %v, want 1s and 2s", waits)
	}
	clk.Advance(2 * time.Second)
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// TestCancelReturnsPromptly: a waiter whose context ends returns at once, without the
// clock moving, and gives its piece's tokens back.
func TestCancelReturnsPromptly(t *testing.T) {
	clk := newFakeClock()
	b := NewWithClock(1000, 0, clk)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- b.WaitN(ctx, 1<<20) }() // about 17 minutes' worth
	clk.waitSleepers(1)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second): // a bound on a failure, not a synchronisation
		t.Fatal("WaitN did not return after its context was cancelled")
	}
	// The cancelled piece was given back: the next reader finds the bucket as the
	// first one left it after its first (paid) piece, in debt by no more than 0.
	go func() { errc <- b.WaitN(context.Background(), 1000) }()
	clk.waitSleepers(1)
	if got := clk.slept[len(clk.slept)-1]; got != time.Second {
		t.Fatalf("after a cancelled wait the next 1000 bytes wait %v, want 1s", got)
	}
	clk.Advance(time.Second)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
