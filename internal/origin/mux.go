package origin

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mux joins several origins into one namespace, as rclone's "combine" backend does:
// the origin named NAME is the directory NAME/ of the mux, and the mux's root lists
// the names as directories. `cachegate daemon` puts one cache over a Mux, so that one
// cache directory, one size cap, one LRU and one set of pins serve every origin it
// is configured with. Routes are added, replaced and removed while it is in use
// (SIGHUP); a path whose first element names no route does not exist.
//
// The cache still names each object by the real origin and the path inside it
// (Route, Unroute): a cache directory filled by a single-origin mount or serve opens
// in the daemon with its objects, and the other way round.
type Mux struct {
	name  string
	since time.Time // when it was made: the root's time
	mu    sync.RWMutex
	// routes by name. Guarded by mu; a *muxRoute is never changed once made (a
	// replaced route is a new one), so readers use it after unlocking.
	routes map[string]*muxRoute
}

type muxRoute struct {
	name    string
	o       Origin
	oname   string        // o.String(), the name the cache keys its objects by
	ttl     time.Duration // metadata TTL of this route; 0: the cache's
	fetched *atomic.Int64 // bytes read from o (kept across a replacement of the route)
	since   time.Time     // when the route was set: its directory's time
}

var (
	_ Origin      = (*Mux)(nil)
	_ WholeGetter = (*Mux)(nil)
)

// NewMux returns an empty mux; name is what String returns (the cache's name for the
// namespace as a whole, e.g. its metadata store's bucket).
func NewMux(name string) *Mux {
	return &Mux{name: name, since: time.Now(), routes: map[string]*muxRoute{}}
}

// ValidRouteName reports whether name may name a route: [a-z0-9_-]+, so that it is
// one path element, a URL path segment and the NAME of NAME:PATH without escaping;
// not starting with '-', so that it is not the server's own /-/ (status, metrics)
// nor read as a flag by the cache verbs.
func ValidRouteName(name string) bool {
	if name == "" || len(name) > 64 || name[0] == '-' {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// Set adds the route name to o, or replaces the one of that name. ttl is the
// metadata TTL of its paths (0: the cache's own). Two routes to one origin (by
// String) are refused: the cache could not tell to which its objects belong.
func (m *Mux) Set(name string, o Origin, ttl time.Duration) error {
	if !ValidRouteName(name) {
		return fmt.Errorf("origin name %q: use lower-case letters, digits, _ and - (at most 64)", name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.routes {
		if r.name != name && r.oname == o.String() {
			return fmt.Errorf("origin %q has the same URL as origin %q: give each URL one name", name, r.name)
		}
	}
	fetched := new(atomic.Int64)
	if old := m.routes[name]; old != nil {
		fetched = old.fetched
	}
	m.routes[name] = &muxRoute{name: name, o: o, oname: o.String(), ttl: ttl, fetched: fetched, since: time.Now()}
	return nil
}

// Remove removes the route name, if there is one.
func (m *Mux) Remove(name string) {
	m.mu.Lock()
	delete(m.routes, name)
	m.mu.Unlock()
}

// Names returns the route names, sorted.
func (m *Mux) Names() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.routes))
	for n := range m.routes {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Get returns the origin of route name.
func (m *Mux) Get(name string) (Origin, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r, ok := m.routes[name]
	if !ok {
		return nil, false
	}
	return r.o, true
}

// BytesFetched returns the bytes read from route name's origin so far.
func (m *Mux) BytesFetched(name string) int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if r, ok := m.routes[name]; ok {
		return r.fetched.Load()
	}
	return 0
}

// split returns the route of p's first element and the rest of p.
func (m *Mux) split(p string) (*muxRoute, string, error) {
	name, sub, _ := strings.Cut(p, "/")
	m.mu.RLock()
	r := m.routes[name]
	m.mu.RUnlock()
	if r == nil {
		return nil, "", fmt.Errorf("%s: no origin named %q: %w", p, name, ErrNotExist)
	}
	return r, sub, nil
}

// Route returns the origin (by its String) and the path inside it of mux path p;
// ok is false for the root and for a name with no route.
func (m *Mux) Route(p string) (originName, sub string, ok bool) {
	if p == "" {
		return "", "", false
	}
	r, sub, err := m.split(p)
	if err != nil {
		return "", "", false
	}
	return r.oname, sub, true
}

// Unroute is Route backwards: the mux path of path sub of the origin named
// originName, when a route leads there.
func (m *Mux) Unroute(originName, sub string) (string, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, r := range m.routes {
		if r.oname == originName {
			return Join(r.name, sub), true
		}
	}
	return "", false
}

// TTL returns the metadata TTL of p's route, when that route sets one.
func (m *Mux) TTL(p string) (time.Duration, bool) {
	r, _, err := m.split(p)
	if err != nil || r.ttl <= 0 {
		return 0, false
	}
	return r.ttl, true
}

// Stat describes p. The root and each route's top are directories; the mux does
// not ask an origin about its own root, so that listing the mux's root costs nothing
// and works with an origin down.
func (m *Mux) Stat(ctx context.Context, p string) (Entry, error) {
	if p == "" {
		return Entry{IsDir: true, Exact: true, ModTime: m.since}, nil
	}
	r, sub, err := m.split(p)
	if err != nil {
		return Entry{}, err
	}
	if sub == "" {
		return Entry{Name: r.name, IsDir: true, Exact: true, ModTime: r.since}, nil
	}
	return r.o.Stat(ctx, sub)
}

// List lists directory p; the root's entries are the route names.
func (m *Mux) List(ctx context.Context, p string) ([]Entry, error) {
	if p == "" {
		m.mu.RLock()
		defer m.mu.RUnlock()
		out := make([]Entry, 0, len(m.routes))
		for _, r := range m.routes {
			out = append(out, Entry{Name: r.name, IsDir: true, Exact: true, ModTime: r.since})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out, nil
	}
	r, sub, err := m.split(p)
	if err != nil {
		return nil, err
	}
	return r.o.List(ctx, sub)
}

// ReadRange reads from p's route, counting the bytes for BytesFetched.
func (m *Mux) ReadRange(ctx context.Context, p, version string, off, n int64) (io.ReadCloser, error) {
	r, sub, err := m.split(p)
	if err != nil {
		return nil, err
	}
	rc, err := r.o.ReadRange(ctx, sub, version, off, n)
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, n: r.fetched}, nil
}

// GetWhole is p's route's, when its origin has one (else an error: the cache then
// asks as usual).
func (m *Mux) GetWhole(ctx context.Context, p string, max int64) (Entry, []byte, error) {
	r, sub, err := m.split(p)
	if err != nil {
		return Entry{}, nil, err
	}
	g, ok := r.o.(WholeGetter)
	if !ok {
		return Entry{}, nil, fmt.Errorf("origin %q reads no whole file in one request", r.name)
	}
	e, b, err := g.GetWhole(ctx, sub, max)
	r.fetched.Add(int64(len(b)))
	return e, b, err
}

// String names the mux as a whole.
func (m *Mux) String() string { return m.name }

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n.Add(int64(n))
	return n, err
}
