package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
)

// keepingOrigin is an origin that keeps (Keeper) only the spans of span bytes that
// kept says, as the peer tier with --peer-copy owner keeps its own spans. It counts
// the range readers it hands out that are not closed yet.
type keepingOrigin struct {
	origin.Origin
	span int64
	kept func(span int64) bool
	open atomic.Int64
}

func (k *keepingOrigin) KeepRun(p, v string, off, end int64) (bool, int64) {
	kept := k.kept(off / k.span)
	until := off
	for until < end && k.kept(until/k.span) == kept {
		until = (until/k.span + 1) * k.span
	}
	return kept, min(until, end)
}

func (k *keepingOrigin) ReadRange(ctx context.Context, p, v string, off, n int64) (io.ReadCloser, error) {
	rc, err := k.Origin.ReadRange(ctx, p, v, off, n)
	if err != nil {
		return nil, err
	}
	k.open.Add(1)
	return &closeCounted{ReadCloser: rc, open: &k.open}, nil
}

type closeCounted struct {
	io.ReadCloser
	open *atomic.Int64
	once sync.Once
}

func (c *closeCounted) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.ReadCloser.Close()
}

// keepFixture is a cache over f's origin that keeps only the spans kept says.
func keepFixture(t *testing.T, span int64, kept func(int64) bool, opts ...func(*Options)) (*fixture, *keepingOrigin, *Cache) {
	f := newFixture(t)
	f.opts.Readahead = 64 << 20 // the default: the window a read-through may ask
	for _, o := range opts {
		o(&f.opts)
	}
	k := &keepingOrigin{Origin: f.origin, span: span, kept: kept}
	c, err := Open(k, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return f, k, c
}

// readSeq reads [from, to) of h in reads of step bytes, in order, and checks them
// against want.
func readSeq(t *testing.T, h *Handle, want []byte, from, to, step int64) {
	t.Helper()
	buf := make([]byte, step)
	for off := from; off < to; off += step {
		n, err := h.ReadAt(context.Background(), buf[:min(step, to-off)], off)
		if err != nil && err != io.EOF {
			t.Fatalf("read at %d: %v", off, err)
		}
		if !bytes.Equal(buf[:n], want[off:off+int64(n)]) || int64(n) != min(step, to-off) {
			t.Fatalf("read at %d: %d bytes, wrong or short", off, n)
		}
	}
}

// A sequential reader of a range the cache does not keep (another member's spans,
// --peer-copy owner) gets one streamed read through, not one origin request per read:
// 8 MiB in 128 KiB reads cost the first read's request and one stream, not 64. A seek
// starts again (one request, then a stream); nothing of the range is stored; reads
// into a kept range fill the cache as before; Close closes the stream.
func TestSequentialNotKeptReadStreams(t *testing.T) {
	const span, size = 1 << 20, 10 << 20
	f, k, c := keepFixture(t, span, func(s int64) bool { return s == 0 || s == 9 })
	want := randomFile(t, f.originDir, "big", size, 7)
	h, err := c.Open(context.Background(), "big")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	before := f.origin.reads.Load()
	readSeq(t, h, want, span, 9*span, 128<<10)
	if got := f.origin.reads.Load() - before; got > 2 {
		t.Errorf("8 MiB not kept, read sequentially in 128 KiB reads: %d origin requests, want at most 2 (one read, then one stream)", got)
	}
	if _, any := h.Presence(span, 8*span); any {
		t.Error("the cache stored bytes of a range it does not keep")
	}

	// A seek back restarts: its first read is a request of its own, then one stream.
	before = f.origin.reads.Load()
	readSeq(t, h, want, 2*span+4096, 5*span, 128<<10)
	if got := f.origin.reads.Load() - before; got > 2 {
		t.Errorf("3 MiB after a seek: %d origin requests, want at most 2", got)
	}
	// A reader going on into the kept span fills it (and the stream, at its end, is gone).
	readSeq(t, h, want, 5*span, size, 128<<10)
	if all, _ := h.Presence(9*span, span); !all {
		t.Error("the kept span 9 was not filled")
	}
	if _, any := h.Presence(span, 8*span); any {
		t.Error("the cache stored bytes of a range it does not keep")
	}
	// A stream left open in the middle of a run is closed with the handle (the
	// cache's own fetches of the kept span end on their own time).
	readSeq(t, h, want, 3*span, 3*span+512<<10, 128<<10)
	h.Close()
	waitFor(t, "origin readers open after the handle closed", func() bool { return k.open.Load() == 0 })
}

// The kernel reads one file handle from several threads at once (FUSE async reads):
// concurrent reads of a not-kept range through one handle all get the right bytes.
func TestConcurrentNotKeptReadsOfOneHandle(t *testing.T) {
	const span, size, step = 1 << 20, 8 << 20, 128 << 10
	f, k, c := keepFixture(t, span, func(s int64) bool { return s == 3 })
	want := randomFile(t, f.originDir, "big", size, 9)
	h, err := c.Open(context.Background(), "big")
	if err != nil {
		t.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, step)
			for {
				off := (next.Add(1) - 1) * step
				if off >= size {
					return
				}
				n, err := h.ReadAt(context.Background(), buf, off)
				if (err != nil && err != io.EOF) || n != step || !bytes.Equal(buf[:n], want[off:off+step]) {
					errs <- "wrong bytes"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	t.Logf("%d origin requests", f.origin.reads.Load())
	h.Close()
	waitFor(t, "origin readers open after the handle closed", func() bool { return k.open.Load() == 0 })
}

// Warm on a member that keeps only some spans (--peer-copy owner) fills the spans it
// keeps and reads the others through (their owner caches them), storing none of them
// here; its progress counts every byte, those read through in NotKept. Pin pins what
// is kept, and needs room for that only: 4 MiB of files pin in a 3 MiB cache that
// keeps half of them.
func TestWarmKeepsOnlyKeptSpans(t *testing.T) {
	const span, size = 256 << 10, 2 << 20
	f, _, c := keepFixture(t, span, func(s int64) bool { return s%2 == 0 }, func(o *Options) { o.Limit = 3 << 20 })
	randomFile(t, f.originDir, "a", size, 3)
	randomFile(t, f.originDir, "b", size+100, 4)
	for _, pin := range []bool{false, true} {
		c.Clear()
		var last WarmProgress
		st, err := c.Warm(context.Background(), []string{""}, 2, pin, func(p WarmProgress) { last = p })
		if err != nil {
			t.Fatalf("warm (pin %v): %v", pin, err)
		}
		if st.BytesDone != st.Bytes || last.BytesDone != st.Bytes || st.Bytes != 2*size+100 {
			t.Errorf("pin %v: progress %d (last reported %d) of %d bytes, want all", pin, st.BytesDone, last.BytesDone, st.Bytes)
		}
		if st.NotKept != size { // the odd spans: half of each file
			t.Errorf("pin %v: %d bytes not kept, want %d", pin, st.NotKept, size)
		}
		for _, p := range []string{"a", "b"} {
			h, err := c.Open(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			for s := int64(0); s*span < h.Size(); s++ {
				all, any := h.Presence(s*span, span)
				if s%2 == 0 && !all || s%2 == 1 && any {
					t.Errorf("pin %v: %s span %d: present %v (any %v), kept %v", pin, p, s, all, any, s%2 == 0)
				}
			}
			h.Close()
			if o, err := c.Object(context.Background(), p); err != nil || o.Pinned != pin {
				t.Errorf("pin %v: %s pinned %v (%v)", pin, p, o.Pinned, err)
			}
		}
	}
}

// brokenStreams breaks every origin read longer than long: after half of it the body
// fails (stall false) or stops sending until its context ends (stall true).
type brokenStreams struct {
	origin.Origin
	long  int64
	stall bool
}

func (b *brokenStreams) ReadRange(ctx context.Context, p, v string, off, n int64) (io.ReadCloser, error) {
	rc, err := b.Origin.ReadRange(ctx, p, v, off, n)
	if err != nil || n <= b.long {
		return rc, err
	}
	return &brokenBody{ReadCloser: rc, left: n / 2, ctx: ctx, stall: b.stall}, nil
}

type brokenBody struct {
	io.ReadCloser
	left  int64
	ctx   context.Context
	stall bool
}

func (b *brokenBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		if b.stall {
			<-b.ctx.Done()
			return 0, b.ctx.Err()
		}
		return 0, errors.New("connection reset by peer")
	}
	k, err := b.ReadCloser.Read(p[:min(int64(len(p)), b.left)])
	b.left -= int64(k)
	return k, err
}

// A stream that fails or stalls midway costs no reader an error or a wrong byte:
// that read goes to the origin on its own (readOrigin, which retries), and the next
// opens a stream again. A stall is given up on after the origin timeout.
func TestNotKeptStreamFailureFallsBack(t *testing.T) {
	const span, size = 1 << 20, 4 << 20
	for _, stall := range []bool{false, true} {
		f := newFixture(t)
		f.opts.Readahead = 64 << 20
		f.opts.OriginTimeout = 300 * time.Millisecond
		want := randomFile(t, f.originDir, "big", size, 11)
		k := &keepingOrigin{Origin: &brokenStreams{Origin: f.origin, long: 512 << 10, stall: stall}, span: span, kept: func(s int64) bool { return s == 0 }}
		c, err := Open(k, f.opts)
		if err != nil {
			t.Fatal(err)
		}
		h, err := c.Open(context.Background(), "big")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		readSeq(t, h, want, 0, size, 128<<10)
		h.Close()
		waitFor(t, "origin readers open after the handle closed", func() bool { return k.open.Load() == 0 })
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("stall %v: the read took %v", stall, d)
		}
		c.Close()
	}
}
