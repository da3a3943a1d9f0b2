package cache

import (
	"time"

	"github.com/cachegate/cachegate/internal/origin"
)

// Router is an origin that joins several (origin.Mux, under `cachegate daemon`). The
// cache asks it in three places, so that one Cache serves many origins:
//
//   - naming an object (key and sidecar) by the real origin and the path inside it,
//     not by the joined namespace: a cache dir of a single-origin mount or serve
//     opens under the daemon with its objects, and the other way round;
//   - at load, mapping an object back into the joined namespace (Unroute); an object
//     of an origin no route leads to stays foreign, as one of another origin does
//     (cache ls --all), until Reroute finds a route to it;
//   - the metadata TTL of a path (TTL), per route.
//
// In memory an object's Origin and Path are always the cache's own (the joined
// namespace); only its files carry the real names.
type Router interface {
	Route(p string) (originName, sub string, ok bool)
	Unroute(originName, sub string) (p string, ok bool)
	TTL(p string) (time.Duration, bool)
}

var _ Router = (*origin.Mux)(nil)

func (c *Cache) router() Router {
	// Through decorators (the peer tier) to the origin that routes, if any.
	o := c.Origin()
	for range 8 {
		if r, ok := o.(Router); ok {
			return r
		}
		u, ok := o.(interface{ Unwrap() origin.Origin })
		if !ok {
			return nil
		}
		o = u.Unwrap()
	}
	return nil
}

// keyOf is the key of version of path p.
func (c *Cache) keyOf(p, version string) string {
	if r := c.router(); r != nil {
		if on, sub, ok := r.Route(p); ok {
			return objectKey(on, sub, version)
		}
	}
	return objectKey(c.oname, p, version)
}

// onDisk is info as the sidecar records it: by the real origin and its path.
func (c *Cache) onDisk(info *objectInfo) *objectInfo {
	r := c.router()
	if r == nil || info.Origin != c.oname {
		return info
	}
	on, sub, ok := r.Route(info.Path)
	if !ok {
		return info
	}
	d := *info
	d.Origin, d.Path = on, sub
	return &d
}

// inMemory maps info, as a sidecar records it, into the cache's namespace when a
// route leads to its origin.
func (c *Cache) inMemory(info *objectInfo) {
	if r := c.router(); r != nil {
		if p, ok := r.Unroute(info.Origin, info.Path); ok {
			info.Origin, info.Path = c.oname, p
		}
	}
}

// Reroute brings the foreign objects of origins a route now leads to (added since
// the cache was opened) into the cache's namespace, so that they are found by path
// and not made anew under the same key. An object in use stays as it is.
func (c *Cache) Reroute() int {
	r := c.router()
	if r == nil {
		return 0
	}
	n := 0
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.idx.objects {
		if o.Origin == c.oname || o.refs > 0 || o.removed {
			continue
		}
		p, ok := r.Unroute(o.Origin, o.Path)
		if !ok {
			continue
		}
		o.Origin, o.Path = c.oname, p
		if cur := c.idx.byPath[p]; cur == nil || cur.lastAccess.Before(o.lastAccess) {
			c.idx.byPath[p] = o
		}
		n++
	}
	return n
}

// ttlOf is the metadata TTL of p.
func (m *metaCache) ttlOf(p string) time.Duration {
	o := m.origin
	if mo, ok := o.(*meteredOrigin); ok {
		o = mo.Origin
	}
	if r, ok := o.(Router); ok {
		if d, ok := r.TTL(p); ok {
			return d
		}
	}
	return m.ttl
}
