package cache

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A member keeps half of a 4 MiB file in a 3 MiB cache (--peer-copy owner): warm
// (and warm --pin, whose room check now counts only kept bytes) must succeed, filling
// the kept spans and reading the others through to their owners.
func TestWarmFileLargerThanCacheWhoseKeptPartFits(t *testing.T) {
	const span, size = 256 << 10, 4 << 20
	f, _, c := keepFixture(t, span, func(s int64) bool { return s%2 == 0 }, func(o *Options) { o.Limit = 3 << 20 })
	randomFile(t, f.originDir, "big", size, 5)
	for _, pin := range []bool{false, true} {
		st, err := c.Warm(context.Background(), []string{"big"}, 1, pin, nil)
		if err != nil || st.Failed != 0 {
			t.Errorf("pin %v: warm of a file whose kept half (2 MiB) fits a 3 MiB cache: err %v, failed %d (%s), bytes %d/%d not kept %d",
				pin, err, st.Failed, st.FirstError, st.BytesDone, st.Bytes, st.NotKept)
		}
	}
}

// Same member: a sequential reader of the not-kept spans of that file streams them,
// as for any file (it used to get no cache object, so Fill answered ErrNoSpace, not
// ErrNotKept, and every read was a request of its own).
func TestNotKeptReadOfFileLargerThanCacheStreams(t *testing.T) {
	const span, size = 1 << 20, 12 << 20
	f, _, c := keepFixture(t, span, func(s int64) bool { return s == 0 }, func(o *Options) { o.Limit = 8 << 20 })
	want := randomFile(t, f.originDir, "big", size, 6)
	h, err := c.Open(context.Background(), "big")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	before := f.origin.reads.Load()
	readSeq(t, h, want, span, 9*span, 128<<10)
	if got := f.origin.reads.Load() - before; got > 2 {
		t.Errorf("8 MiB not kept, 128 KiB reads, kept part (1 MiB) fits the cache: %d origin requests, want at most 2 (cached %v)", got, h.Cached())
	}
}

// flipKeeper is a keepingOrigin whose spans from 8 stop being kept right after
// warmOne asked KeepRun(8 MiB, size): as when the down owner of span 8 comes back
// up (a probe) between warmOne's KeepRun and Fill's.
type flipKeeper struct {
	*keepingOrigin
	size    int64
	flipped atomic.Bool
}

func (k *flipKeeper) KeepRun(p, v string, off, end int64) (bool, int64) {
	kept, until := k.keepingOrigin.KeepRun(p, v, off, end)
	if off == 8<<20 && end == k.size {
		k.flipped.Store(true)
	}
	return kept, until
}

// Membership changes while a file warms (an owner that was down comes back up:
// ownerOnly.KeepRun keeps a down owner's spans): the warm must go on, reading the
// spans no longer kept through, not fail the file with ErrNotKept.
func TestWarmSurvivesKeeperChange(t *testing.T) {
	const span, size = 1 << 20, 24 << 20
	f := newFixture(t)
	randomFile(t, f.originDir, "big", size, 8)
	fk := &flipKeeper{size: size}
	fk.keepingOrigin = &keepingOrigin{Origin: f.origin, span: span, kept: func(s int64) bool { return !fk.flipped.Load() || s < 8 }}
	c, err := Open(fk, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Warm(context.Background(), []string{"big"}, 1, false, nil)
	if err != nil || st.Failed != 0 {
		t.Errorf("warm while the group changed: err %v, failed %d (%s)", err, st.Failed, st.FirstError)
	}
}

// Kernel-like readahead: batches of reads issued concurrently in shuffled order,
// with seeks and stragglers, several handles, Close while reads are in flight.
// Every byte must be right; no reader may hang; no stream may leak.
func TestOutOfOrderNotKeptReadsStress(t *testing.T) {
	const span, size = 1 << 20, 24 << 20
	f, k, c := keepFixture(t, span, func(s int64) bool { return s%5 == 2 }, func(o *Options) { o.Readahead = 8 << 20 })
	want := randomFile(t, f.originDir, "big", size, 12)
	var bad atomic.Int64
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for iter := 0; iter < 6; iter++ {
				h, err := c.Open(context.Background(), "big")
				if err != nil {
					t.Error(err)
					return
				}
				off := int64(r.IntN(size/4096)) * 4096
				if iter%2 == 0 {
					off = 0
				}
				var inner sync.WaitGroup
				for b := 0; b < 10 && off < size; b++ {
					step := int64([]int{4096, 128 << 10, 512 << 10, 1 << 20}[r.IntN(4)])
					offs := []int64{}
					for i := 0; i < 8; i++ {
						offs = append(offs, off+int64(i)*step)
					}
					r.Shuffle(len(offs), func(i, j int) { offs[i], offs[j] = offs[j], offs[i] })
					for i, o := range offs {
						inner.Add(1)
						go func() {
							defer inner.Done()
							time.Sleep(time.Duration(i) * time.Duration(r2(i)) * time.Millisecond)
							ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
							defer cancel()
							buf := make([]byte, step)
							n, err := h.ReadAt(ctx, buf, o)
							if o >= size {
								return
							}
							exp := want[o:min(o+step, size)]
							if (err != nil && err != io.EOF) || n != len(exp) || !bytes.Equal(buf[:n], exp) {
								bad.Add(1)
								t.Errorf("read %d+%d: n %d err %v", o, step, n, err)
							}
						}()
					}
					if r.IntN(3) == 0 {
						inner.Wait()
					}
					off += 8 * step
					if r.IntN(5) == 0 {
						off += int64(r.IntN(4<<20)) &^ 4095
					}
				}
				if iter%3 == 2 {
					h.Close() // while reads may still be in flight
					inner.Wait()
				} else {
					inner.Wait()
					h.Close()
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("readers hang")
	}
	waitFor(t, "origin readers open after the handles closed", func() bool { return k.open.Load() == 0 })
}

func r2(i int) int { return (i * 7) % 5 }

// askedOrigin records the largest range asked of the origin.
type askedOrigin struct {
	*keepingOrigin
	max atomic.Int64
}

func (a *askedOrigin) ReadRange(ctx context.Context, p, v string, off, n int64) (io.ReadCloser, error) {
	for {
		m := a.max.Load()
		if n <= m || a.max.CompareAndSwap(m, n) {
			break
		}
	}
	return a.keepingOrigin.ReadRange(ctx, p, v, off, n)
}

// A handle's first read at offset 0 (file(1), a header sniffer) is a request of its
// own, as keep.go promises: it used to find thrNext == 0, take itself for a
// sequential reader and open a stream of the whole readahead window (64 MiB) to the
// owner for 4 KiB.
func TestFirstReadAtZeroAsksOnlyWhatItReads(t *testing.T) {
	const span, size = 1 << 20, 16 << 20
	f := newFixture(t)
	f.opts.Readahead = 64 << 20
	want := randomFile(t, f.originDir, "big", size, 3)
	a := &askedOrigin{keepingOrigin: &keepingOrigin{Origin: f.origin, span: span, kept: func(s int64) bool { return false }}}
	c, err := Open(a, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, err := c.Open(context.Background(), "big")
	if err != nil {
		t.Fatal(err)
	}
	readSeq(t, h, want, 0, 4096, 4096)
	h.Close()
	if m := a.max.Load(); m > 4096 {
		t.Errorf("a first read of 4 KiB at offset 0 asked the owner for %d bytes", m)
	}
}
