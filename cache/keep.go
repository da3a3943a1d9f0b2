package cache

import (
	"context"
	"fmt"
	"io"

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
	if m, ok := c.origin.(*meteredOrigin); ok {
		f, _ := m.Origin.(Forwarder)
		return f
	}
	return nil
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
	if m, ok := c.origin.(*meteredOrigin); ok {
		k, _ := m.Origin.(Keeper)
		return k
	}
	return nil
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
