package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cachegate/cachegate/internal/origin"
)

// Handle reads one version of one object. It keeps that version's files open, so
// eviction or a newer version never changes what it reads. A Handle without an object
// (the cache could not make room) reads the origin directly.
type Handle struct {
	c     *Cache
	o     *object
	path  string
	entry origin.Entry

	mu     sync.Mutex
	next   int64 // where a sequential reader's next read starts
	window int64 // current readahead window in bytes
	ahead  int64 // readahead has been started up to here
	closed bool
	// spans are the readahead fetches this handle started and holds: they run while
	// it is open (or a reader waits for them) and are cancelled when it closes.
	spans []*span
	// thr is the read-through of a sequential reader of bytes the cache does not
	// keep (readNotKept): open between reads, nil while a read uses it (thrBusy)
	// or while there is none. INVARIANT: thr != nil implies !thrBusy.
	thr     *through
	thrBusy bool
	// thrNext is, while thrBusy, where the stream stands when its read gives it
	// back; otherwise where the last read of bytes not kept ended (a read starting
	// there is sequential and opens a stream).
	thrNext int64
	// thrFree is closed (and replaced) whenever a read gives the stream back or
	// drops it: readers waiting their turn wake on it.
	thrFree chan struct{}
	// thrIdle is when the stream was last given back: a read ahead of it skips
	// to its offset only once it has stood idle for throughWait.
	thrIdle time.Time
}

// Entry returns the attributes of the version this handle reads.
func (h *Handle) Entry() origin.Entry { return h.entry }

// Size returns the object's size.
func (h *Handle) Size() int64 { return h.entry.Size }

// Cached reports whether the handle reads through the disk cache.
func (h *Handle) Cached() bool { return h.o != nil }

// Complete reports whether every byte is present on disk (and checked).
func (h *Handle) Complete() bool {
	if h.o == nil {
		return false
	}
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return h.o.completeLocked()
}

// Fd returns the data file's descriptor, valid until Close. Bytes may be read from it
// only in ranges Fill has made present.
func (h *Handle) Fd() uintptr {
	if h.o == nil {
		return ^uintptr(0)
	}
	return h.o.data.Fd()
}

// File returns the data file, valid until Close. Bytes may be read from it only in
// ranges Fill has made present.
func (h *Handle) File() *os.File {
	if h.o == nil {
		return nil
	}
	return h.o.data
}

// Attach returns what owner keeps with this version's open data file, made by mk
// from the file's descriptor when owner has nothing there yet (what another owner
// kept is closed first). It is closed when the object's files close: when the object
// leaves the idle set of open objects, or is evicted, cleared or replaced, and never
// while a handle holds it. The mount keeps its passthrough backing file so, instead
// of registering one with the kernel at every open. mk and Close run with the
// object's lock held: they must not call into the cache.
func (h *Handle) Attach(owner any, mk func(fd int) (io.Closer, error)) (io.Closer, error) {
	if h.o == nil {
		return nil, errors.New("no cache object: the handle reads the origin")
	}
	o := h.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.attached != nil && o.attachedOwner == owner {
		return o.attached, nil
	}
	if o.attached != nil {
		o.attached.Close()
		o.attached, o.attachedOwner = nil, nil
	}
	a, err := mk(int(o.data.Fd()))
	if err != nil {
		return nil, err
	}
	o.attached, o.attachedOwner = a, owner
	return a, nil
}

// Mapping returns a read-only mapping of the whole data file, made once per object and
// valid until Close. The file is as long as the object (holes read as zeros, never
// SIGBUS), but only ranges Fill has made present hold the object's bytes; hand slices
// of it to the kernel (write, writev), which reports faults as errors instead of
// signals.
func (h *Handle) Mapping() ([]byte, error) {
	if h.o == nil || h.entry.Size == 0 {
		return nil, nil
	}
	o := h.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.mapping == nil {
		m, err := unix.Mmap(int(o.data.Fd()), 0, int(o.Size), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("map %s: %w", o.Path, err)
		}
		o.mapping = m
	}
	return o.mapping, nil
}

// Presence reports whether all, and whether any, of the chunks under [off, off+n) are
// on disk.
func (h *Handle) Presence(off, n int64) (all, any bool) {
	if h.o == nil || n <= 0 || off >= h.entry.Size {
		return false, false
	}
	o := h.o
	n = min(n, h.entry.Size-off)
	first, last := int(off/o.ChunkSize), int((off+n-1)/o.ChunkSize)
	o.mu.Lock()
	defer o.mu.Unlock()
	all = true
	for i := first; i <= last; i++ {
		if o.side.has(i) {
			any = true
		} else {
			all = false
		}
	}
	return all, any
}

// ChunkSize returns the unit in which the object fills.
func (h *Handle) ChunkSize() int64 {
	if h.o == nil {
		return h.c.opts.ChunkSize
	}
	return h.o.ChunkSize
}

// Fill makes [off, off+n) present on disk, fetching what is missing and growing the
// readahead window of a sequential reader. It returns how many bytes from off exist
// (n clamped to the end of the object). ErrNoSpace means the range could not be cached:
// ReadAt still serves it from the origin.
func (h *Handle) Fill(ctx context.Context, off, n int64) (int64, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	if off >= h.entry.Size || n <= 0 {
		return 0, nil
	}
	n = min(n, h.entry.Size-off)
	if h.o == nil {
		return n, ErrNoSpace
	}
	keep := h.c.keeper()
	if origin.NoForward(ctx) {
		keep = nil // a peer's read: this member owns the range
	}
	if keep != nil {
		if kept, until := keep.KeepRun(h.path, h.entry.Version, off, off+n); !kept || until < off+n {
			return n, ErrNotKept
		}
	}
	o := h.o
	cs := o.ChunkSize
	first, last := int(off/cs), int((off+n-1)/cs)

	// Readahead: a read near where the last one ended is sequential; the window
	// doubles from two chunks up to the readahead limit (a quarter of the cache at
	// most, so readahead never evicts what it is about to read). A seek resets it.
	h.mu.Lock()
	// A read of a kept range ends a read-through a sequential reader left open:
	// it has reached (or jumped to) bytes the cache fills.
	var drop *through
	if h.thr != nil {
		drop, h.thr = h.thr, nil
		h.wakeLocked()
	}
	if !h.thrBusy {
		h.thrNext = off + n // a reader going on into bytes not kept is sequential
	}
	if off >= h.next-2*cs && off <= h.next+2*cs && (off > 0 || h.next == 0) {
		limit := min(h.c.opts.Readahead, h.c.opts.Limit/4)
		h.window = max(2*cs, min(2*h.window, limit))
	} else {
		h.window, h.ahead = 0, 0
	}
	h.next = off + n
	// The window is topped up in large steps: topped up after every read, it
	// grew by a chunk at a time, so each read started a one-chunk request, and a
	// cold S3 read had 69 of them in flight at once.
	var from, to int64
	// A peer's request (origin.NoForward) names the range it wants, and what lies
	// beyond is another member's: reading ahead would fetch it from the origin twice.
	if h.window > 0 && !origin.NoForward(ctx) {
		from, to = max(h.ahead, off+n), min(off+n+h.window, h.entry.Size)
		if to-from >= min(spanChunks*cs, h.window/2) || to == h.entry.Size && to > from {
			h.ahead = to
		} else {
			to = from
		}
	}
	h.mu.Unlock()
	drop.close()
	if keep != nil && to > from {
		if kept, until := keep.KeepRun(h.path, h.entry.Version, from, to); kept {
			to = until
		} else {
			to = from
		}
	}
	if to > from {
		if started := o.prefetch(ctx, int(from/cs), int((to-1)/cs)); len(started) > 0 {
			h.hold(started)
		}
	}

	start := time.Now()
	hit, err := o.ensure(ctx, first, last)
	if errors.Is(err, ErrNoSpace) {
		return n, err
	}
	if err != nil {
		return 0, err
	}
	h.c.count(func(s *Stats) {
		if hit {
			s.Hits++
		} else {
			s.Misses++
			s.MissWait += time.Since(start)
			h.c.metrics.observeFill(time.Since(start))
		}
	})
	return n, nil
}

// ReadAt reads len(p) bytes at off, from the cache when it can and from the origin
// when the cache cannot make room. It returns io.EOF at the end of the object.
func (h *Handle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n, err := h.Fill(ctx, off, int64(len(p)))
	switch {
	case err == nil:
		if n == 0 {
			return 0, io.EOF
		}
		m, err := h.o.data.ReadAt(p[:n], off)
		if err == nil && m < len(p) {
			err = io.EOF
		}
		return m, err
	case errors.Is(err, ErrNoSpace):
		if n == 0 {
			return 0, io.EOF
		}
		read := h.readOrigin
		if errors.Is(err, ErrNotKept) {
			read = h.readNotKept // one stream for a sequential reader
		}
		m, err := read(ctx, p[:n], off)
		if err == nil && m < len(p) {
			err = io.EOF
		}
		return m, err
	}
	return 0, err
}

// readOrigin reads p at off straight from the origin, retrying transient failures.
func (h *Handle) readOrigin(ctx context.Context, p []byte, off int64) (int, error) {
	h.c.count(func(s *Stats) { s.Uncached++ })
	ctx, cancel := context.WithTimeout(origin.WithCallerRetries(ctx), h.c.opts.OriginTimeout)
	defer cancel()
	var err error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			if !origin.Retryable(err) || !sleepCtx(ctx, time.Duration(1<<(2*attempt))*25*time.Millisecond) {
				break
			}
			h.c.metrics.retries[opRead].Add(1)
		}
		var rc io.ReadCloser
		rc, err = h.c.origin.ReadRange(ctx, h.path, h.entry.Version, off, int64(len(p)))
		if err != nil {
			continue
		}
		_, err = io.ReadFull(rc, p)
		rc.Close()
		if err == nil {
			h.c.count(func(s *Stats) { s.BytesFetched += int64(len(p)) })
			return len(p), nil
		}
	}
	if errors.Is(err, origin.ErrChanged) {
		h.c.changed(h.path)
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		err = stalled(h.c.opts.OriginTimeout, nil)
	}
	return 0, err
}

// hold keeps readahead spans this handle started until it closes. The list is
// pruned of finished spans as it grows, so it stays within the readahead window.
func (h *Handle) hold(started []*span) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed { // closed while the readahead started: let it go at once
		h.o.letGo(started, nil)
		return
	}
	if len(h.spans) >= 16 {
		h.spans = h.o.letGo(nil, h.spans)
	}
	h.spans = append(h.spans, started...)
}

// Close releases the handle's hold on its object and cancels the readahead it
// started that no reader waits for.
func (h *Handle) Close() error {
	h.mu.Lock()
	closed := h.closed
	h.closed = true
	spans := h.spans
	h.spans = nil
	thr := h.thr // a stream in use is closed by its read, which sees h.closed
	h.thr = nil
	h.wakeLocked() // reads waiting for the stream read on their own
	h.mu.Unlock()
	thr.close()
	if !closed && h.o != nil {
		h.o.letGo(spans, nil)
		h.c.release(h.o)
	}
	return nil
}
