package cache

import (
	"fmt"
)

// Keeper is an origin (a decorator: the peer tier with --peer-copy owner) that
// decides which bytes of an object version this cache keeps. Bytes it does not keep
// are read through uncached, as when the cache has no room: Fill answers
// ErrNotKept for them and starts no readahead into them.
type Keeper interface {
	// KeptUntil returns the end of the run of bytes [off, e) that the cache keeps,
	// from off up to at most end: off when it keeps none of them.
	KeptUntil(path, version string, off, end int64) int64
}

// ErrNotKept reports a range the cache does not keep (Keeper): like ErrNoSpace,
// which it wraps so that every reader already reads it from the origin uncached.
var ErrNotKept = fmt.Errorf("not kept by this member (--peer-copy owner): %w", ErrNoSpace)

// keeper returns the origin's Keeper, or nil when it keeps everything.
func (c *Cache) keeper() Keeper {
	if m, ok := c.origin.(*meteredOrigin); ok {
		k, _ := m.Origin.(Keeper)
		return k
	}
	return nil
}
