package cache

import "github.com/cachegate/cachegate/internal/origin"

// CachedIn returns what the cache holds of the files among entries, the listing of
// directory dir, by name (files with nothing cached, or only an older version,
// are absent). It looks up each
// entry rather than walking every cached object, so an index page costs the size of
// its directory.
func (c *Cache) CachedIn(dir string, entries []origin.Entry) map[string]ObjectInfo {
	out := map[string]ObjectInfo{}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range entries {
		if e.IsDir {
			continue
		}
		// A version other than the listing's is an old one, to be fetched again.
		if o := c.idx.byPath[origin.Join(dir, e.Name)]; o != nil && (e.Version == "" || o.Version == e.Version) {
			out[e.Name] = c.infoLocked(o)
		}
	}
	return out
}
