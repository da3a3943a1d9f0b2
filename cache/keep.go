package cache

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
)

// Keeper is an origin (a decorator: the peer tier with --peer-copy owner) that
// decides which bytes of an object version this cache keeps. Bytes it does not keep
// are read through uncached, as when the cache has no room: Fill answers
// ErrNotKept for them and starts no readahead into them.
type Keeper interface {
	// KeepRun reports whether the cache keeps the byte at off, and where the run
	// of bytes from off that it keeps (or does not keep) ends, at most end.
	KeepRun(path, version string, off, end int64) (kept bool, until int64)
}

// ErrNotKept reports a range the cache does not keep (Keeper): like ErrNoSpace,
// which it wraps so that every reader already reads it from the origin uncached.
var ErrNotKept = fmt.Errorf("not kept by this member (--peer-copy owner): %w", ErrNoSpace)

// Forwarder is an origin (a decorator: the peer tier) that reads some ranges from
// another gateway instead of the origin itself. The cache asks it, chunk by chunk,
// when a fetch starts, so that a peer's request (origin.NoForward) never waits on a
// chunk that is itself being asked of a peer: two members whose lists of the group
// briefly differ would each wait on the other until --peer-timeout.
//
// Waiting on a chunk read from the origin is safe, even behind chunks of its fetch
// asked of peers: a chain of such waits goes to ever lower offsets (a fetch reads
// its chunks in order), so it ends; only a wait on the same chunk can close a
// cycle. Refusing those too would cost the group an origin read for every chunk an
// owner's reader fetches behind another member's.
type Forwarder interface {
	// Forwards reports whether reading [off, off+n) of version of path, under a
	// context without origin.NoForward, would ask another gateway for some of it.
	Forwards(path, version string, off, n int64) bool
}

// errFetchForwarded answers a peer's request (origin.NoForward) for chunks whose
// fetch here goes through a peer: the request reads them from the origin itself,
// uncached, rather than wait on that fetch (see Forwarder). It wraps ErrNotKept,
// so readers read the range through, and only this range.
var errFetchForwarded = fmt.Errorf("being fetched here through a peer, read from the origin for a peer's request: %w", ErrNotKept)

// forwarder returns the origin's Forwarder, or nil when every read reaches the origin.
func (c *Cache) forwarder() Forwarder {
	f, _ := c.Origin().(Forwarder)
	return f
}

// KeepRun reports whether the cache keeps the byte at off for a reader under ctx,
// and where that run ends (at most end): serve sends a run it does not keep as one
// read through (ReadThrough). A peer's read (origin.NoForward) keeps everything.
func (h *Handle) KeepRun(ctx context.Context, off, end int64) (kept bool, until int64) {
	k := h.c.keeper()
	if k == nil || origin.NoForward(ctx) || h.o == nil {
		return true, end
	}
	return k.KeepRun(h.path, h.entry.Version, off, end)
}

// keeper returns the origin's Keeper, or nil when it keeps everything.
func (c *Cache) keeper() Keeper {
	k, _ := c.Origin().(Keeper)
	return k
}

// ReadThrough returns a reader of [off, off+n) from the origin, uncached, in one
// request: for a range the cache does not keep (ErrNotKept), where ReadAt asks the
// origin once per call. It does not retry: on an error the caller goes on with
// ReadAt, which does.
func (h *Handle) ReadThrough(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	h.c.count(func(s *Stats) { s.Uncached++ })
	rc, err := h.c.origin.ReadRange(ctx, h.path, h.entry.Version, off, n)
	if err != nil {
		return nil, err
	}
	cr := &countedReader{ReadCloser: rc, c: h.c}
	if cw, ok := rc.(origin.ConnWriter); ok {
		return &countedConnWriter{cr, cw}, nil // serve splices it to a client
	}
	return cr, nil
}

// countedConnWriter is a countedReader whose reader can splice to a socket.
type countedConnWriter struct {
	*countedReader
	cw origin.ConnWriter
}

func (r *countedConnWriter) WriteToConn(dst origin.ConnSink, n int64) (int64, error) {
	k, err := r.cw.WriteToConn(dst, n)
	if k > 0 {
		r.c.count(func(s *Stats) { s.BytesFetched += k })
	}
	return k, err
}

// countedReader counts the bytes read through it as fetched.
type countedReader struct {
	io.ReadCloser
	c *Cache
}

func (r *countedReader) Read(p []byte) (int, error) {
	k, err := r.ReadCloser.Read(p)
	if k > 0 {
		r.c.count(func(s *Stats) { s.BytesFetched += int64(k) })
	}
	return k, err
}

// Read-through streams. Through a mount, every read of a range the cache does not
// keep was a request of its own (ReadAt, readOrigin): 128 KiB reads of a 64 MiB
// span cost 512 requests to its owner. A sequential reader gets one stream instead,
// as the server's sendThrough sends a whole run with one ReadThrough:
//
//   - A read that starts where the handle's last read ended opens a stream from
//     there to the end of the run the cache does not keep, at most the readahead
//     window (Options.Readahead) ahead. A first read, or a read after a seek, is a
//     request of its own (readOrigin, as before), so a random reader asks for no
//     more than it reads.
//   - The stream stays on the handle between reads and serves the next read that
//     starts where it stands. It is dropped on a seek, on an error (that read, and
//     what the stream does not cover, go to readOrigin, which retries), at the end
//     of its run, when a read reaches a kept range (Fill), and on Close.
//   - The kernel sends one handle's reads from several threads (FUSE async reads):
//     its readahead asks for 4 MiB at once, in 512 KiB or 1 MiB reads that arrive
//     in any order. A read up to throughAhead ahead of the stream waits its turn:
//     while a read has the stream, as long as that read lasts (bounded by its
//     stall timeout), then the next; while none has it, throughWait for the read
//     before it to come (rclone's --vfs-read-wait does the same), then it skips
//     the bytes between (at most throughSkip; they are read twice). Reads that
//     went to the origin on their own instead cost about as many requests as
//     before (31 for 20 MiB through a mount, against 35 for 16 MiB; now 6-11 for
//     24 MiB). A read behind the stream (a straggler whose bytes the stream
//     passed) is read on its own.
//   - A read takes the stream out of the handle (thrBusy) and reads it with no
//     lock held: h.mu guards only the hand-over. Each body read is bounded by the
//     origin timeout (a stall) and by the reader's context, whose cancellation
//     cancels the stream; the stream itself runs on a context of its own, since a
//     FUSE read's context ends with that read.
const (
	throughWait = 20 * time.Millisecond
	// throughAhead is how far ahead of the stream a read waits its turn: the
	// kernel asks for its next 4 MiB of readahead while the reads of the last are
	// still queued (at 4 MiB, a third of the reads went round the queue).
	throughAhead = 16 << 20
	// throughSkip is the most a read whose predecessors never came may skip:
	// the bytes of the reads in flight before it (a mount's kernel readahead
	// keeps 4 MiB in flight), read and dropped.
	throughSkip = 4 << 20
)

// through is an open read through of [pos, end) (ReadThrough).
type through struct {
	rc       io.ReadCloser
	cancel   context.CancelFunc
	pos, end int64 // the next byte rc yields, and where it ends
}

// close cancels and closes t; a nil t is nothing to close.
func (t *through) close() {
	if t != nil {
		t.cancel()
		t.rc.Close()
	}
}

// read reads len(p) bytes at off (off >= t.pos: the bytes before off are read and
// dropped, into p). Every body read must bring bytes within timeout, and ctx's end
// cancels the stream. It returns how many bytes of p it read.
func (t *through) read(ctx context.Context, p []byte, off int64, timeout time.Duration) (int, error) {
	stop := context.AfterFunc(ctx, t.cancel)
	defer stop()
	stall := time.AfterFunc(timeout, t.cancel)
	var n int
	var err error
	for off > t.pos && err == nil {
		_, err = t.readFull(p[:min(int64(len(p)), off-t.pos)], stall, timeout)
	}
	if err == nil {
		n, err = t.readFull(p, stall, timeout)
	}
	if !stall.Stop() && err != nil && ctx.Err() == nil {
		err = stalled(timeout, nil) // not the "context canceled" of the cancel
	}
	return n, err
}

// readFull reads p from the stream, resetting stall at each body read that brings
// bytes.
func (t *through) readFull(p []byte, stall *time.Timer, timeout time.Duration) (int, error) {
	n := 0
	for n < len(p) {
		k, err := t.rc.Read(p[n:])
		n += k
		t.pos += int64(k)
		if k > 0 {
			stall.Reset(timeout)
		}
		if n == len(p) {
			break
		}
		if err == io.EOF {
			return n, io.ErrUnexpectedEOF // the origin sent less than the range
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// newThrough opens a read through of [off, off+n) on a context of its own that
// keeps ctx's hints and bandwidth limit. Opening is bounded by the origin timeout
// and by ctx. The origin makes one attempt (origin.WithCallerRetries): its callers
// retry, where the stream stopped (warmThrough, readOrigin after a failed stream).
func (h *Handle) newThrough(ctx context.Context, off, n int64) (*through, error) {
	sctx, cancel := context.WithCancel(origin.WithCallerRetries(origin.CarryHints(carryBWLimit(context.Background(), ctx), ctx)))
	stop := context.AfterFunc(ctx, cancel)
	stall := time.AfterFunc(h.c.opts.OriginTimeout, cancel)
	rc, err := h.ReadThrough(sctx, off, n)
	timedOut := !stall.Stop()
	stop()
	if err == nil && sctx.Err() != nil {
		rc.Close()
		err = sctx.Err()
	}
	if err != nil {
		cancel()
		if timedOut {
			err = stalled(h.c.opts.OriginTimeout, err)
		}
		return nil, err
	}
	return &through{rc: rc, cancel: cancel, pos: off, end: off + n}, nil
}

// readNotKept reads p at off, a range the cache does not keep (ErrNotKept): from
// the handle's stream when it has one there, or opens one for a sequential reader,
// else from the origin on its own (readOrigin). See the design above.
func (h *Handle) readNotKept(ctx context.Context, p []byte, off int64) (int, error) {
	t := h.takeThrough(ctx, off, int64(len(p)))
	if t == nil {
		return h.readOrigin(ctx, p, off)
	}
	m, err := t.read(ctx, p[:min(int64(len(p)), t.end-off)], off, h.c.opts.OriginTimeout)
	h.giveBack(t, err == nil)
	if m < len(p) {
		// Past the stream's run (into a kept range), or what a failed stream did
		// not bring: readOrigin retries.
		k, err := h.readOrigin(ctx, p[m:], off+int64(m))
		return m + k, err
	}
	return m, nil
}

// takeThrough returns the stream for a read of n bytes at off, out of the handle
// (thrBusy), or nil when the read goes to the origin on its own.
func (h *Handle) takeThrough(ctx context.Context, off, n int64) *through {
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return nil
		}
		t := h.thr
		// ahead: the stream stands (or its read in flight leaves it) before off,
		// within throughAhead. waited: how long it has stood idle (no read has it).
		var ahead bool
		var waited time.Duration
		switch {
		case h.thrBusy:
			ahead = off >= h.thrNext && off-h.thrNext <= throughAhead
		case t != nil && off == t.pos:
			h.takeLocked(off + n)
			h.mu.Unlock()
			return t
		case t != nil:
			ahead = off > t.pos && off-t.pos <= throughAhead && off < t.end
			waited = time.Since(h.thrIdle)
			if ahead && waited >= throughWait && off-t.pos > throughSkip {
				ahead = false // too far to skip to: a seek
			}
		}
		switch {
		case ahead && !h.thrBusy && waited >= throughWait:
			h.takeLocked(off + n) // skip to off: the reads before it went round
			h.mu.Unlock()
			return t
		case ahead:
			if h.thrFree == nil {
				h.thrFree = make(chan struct{})
			}
			free, busy := h.thrFree, h.thrBusy
			h.mu.Unlock()
			// Behind a read in flight, wait for it (bounded by its stall timeout)
			// and those queued before this one: one stream, in order. Behind a
			// stream no read has, throughWait for the read before this one.
			// (A read that takes the stream wakes no one: a waiter woken by
			// its timer while the stream is busy waits again.)
			var idle <-chan time.Time
			var timer *time.Timer
			if !busy {
				timer = time.NewTimer(throughWait - waited)
				idle = timer.C
			}
			select {
			case <-free:
			case <-idle:
			case <-ctx.Done():
			}
			if timer != nil {
				timer.Stop()
			}
			if ctx.Err() != nil {
				return nil
			}
			continue
		case h.thrBusy || t != nil && off < t.pos && t.pos-off <= throughSkip:
			// Another read has the stream, elsewhere; or a straggler behind it.
			h.mu.Unlock()
			return nil
		}
		// A seek, or no stream: a read where the last one ended opens one.
		h.thr = nil
		// A read at 0 is a handle's first (or a seek back): a request of its own,
		// so a reader of a file's head asks for no more than it reads.
		seq := off == h.thrNext && off > 0
		if !seq {
			h.thrNext = off + n
			h.wakeLocked()
			h.mu.Unlock()
			t.close()
			return nil
		}
		h.takeLocked(off + n)
		h.mu.Unlock()
		t.close()
		if kept, until := h.KeepRun(ctx, off, min(h.entry.Size, off+max(h.c.opts.Readahead, n))); !kept && until > off {
			if nt, err := h.newThrough(ctx, off, until-off); err == nil {
				return nt
			}
		}
		h.giveBack(nil, false)
		return nil
	}
}

// takeLocked marks the stream as taken by a read that ends at next. h.mu must be
// held.
func (h *Handle) takeLocked(next int64) {
	h.thr, h.thrBusy, h.thrNext = nil, true, next
}

// giveBack returns a taken stream to the handle (ok: it read what it was asked and
// has bytes left) or drops it, and wakes the reads waiting their turn.
func (h *Handle) giveBack(t *through, ok bool) {
	h.mu.Lock()
	h.thrBusy = false
	keep := t != nil && ok && !h.closed && t.pos < t.end && h.thr == nil
	if keep {
		h.thr, h.thrIdle = t, time.Now()
	}
	h.wakeLocked()
	h.mu.Unlock()
	if !keep {
		t.close()
	}
}

// wakeLocked wakes the reads waiting for the stream. h.mu must be held.
func (h *Handle) wakeLocked() {
	if h.thrFree != nil {
		close(h.thrFree)
		h.thrFree = nil
	}
}
