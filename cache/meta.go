package cache

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
	"github.com/dgraph-io/ristretto/v2"
)

// Listing is a directory's entries as of one origin listing.
type Listing struct {
	Entries []origin.Entry // sorted by name
	byName  map[string]int
	// Gen changes whenever a new listing of the directory differs from the previous
	// one, so callers can keep kernel or client caches while it stays the same.
	Gen uint64
}

// Get returns the entry called name.
func (l *Listing) Get(name string) (origin.Entry, bool) {
	i, ok := l.byName[name]
	if !ok {
		return origin.Entry{}, false
	}
	return l.Entries[i], true
}

func newListing(entries []origin.Entry) *Listing {
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	l := &Listing{Entries: entries, byName: make(map[string]int, len(entries))}
	for i, e := range entries {
		l.byName[e.Name] = i
	}
	return l
}

func sameEntries(a, b []origin.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Name != y.Name || x.IsDir != y.IsDir || x.Size != y.Size || !x.ModTime.Equal(y.ModTime) || x.Version != y.Version {
			return false
		}
	}
	return true
}

// metaCache keeps origin attributes and listings for the TTL in ristretto, and makes
// concurrent misses for one path share one origin request (one fetch per directory),
// cancelled when no caller waits for it any more.
type metaCache struct {
	origin origin.Origin
	ttl    time.Duration
	// timeout bounds one origin answer, its retries included.
	timeout time.Duration
	stats   *ristretto.Cache[string, origin.Entry]
	lists   *ristretto.Cache[string, *Listing]
	group   flights
	// entryStats bounds the origin stats Lookup makes for listing entries whose
	// attributes are inexact: one directory read must not become a burst of HEADs.
	entryStats chan struct{}
	gen        atomic.Uint64
	// last remembers the previous listing per directory beyond its TTL, to tell a
	// changed directory from a merely expired one, and to serve while the origin is
	// down; lastStat does the same for attributes.
	last     *ristretto.Cache[string, *Listing]
	lastStat *ristretto.Cache[string, origin.Entry]
	// offline answers from what the cache holds when the origin is down and nothing
	// was remembered (after a restart).
	offline offlineSource
	// store keeps listings and attributes on disk with their fetch time, for a
	// restart (metastore.go); nil when it could not be opened.
	store *metaStore
	log   *slog.Logger
	// staleTTL is how long a stale answer is reused before the origin is tried again.
	staleTTL time.Duration
	stale    [2]atomic.Int64 // stale answers given: attributes, listings (Metrics)
}

// offlineSource describes paths from the cached objects themselves.
type offlineSource interface {
	offlineStat(p string) (origin.Entry, bool)
	offlineList(p string) ([]origin.Entry, bool)
}

// originDown reports errors that mean "the origin did not answer", as opposed to an
// answer (not found, changed): only those are covered by stale metadata.
func originDown(err error) bool { return origin.Retryable(err) }

func newMetaCache(o origin.Origin, ttl, timeout time.Duration, offline offlineSource, store *metaStore, log *slog.Logger) (*metaCache, error) {
	m := &metaCache{origin: o, ttl: ttl, timeout: timeout, offline: offline, store: store, log: log, staleTTL: min(ttl, 10*time.Second),
		entryStats: make(chan struct{}, maxEntryStats)}
	var err error
	if m.stats, err = ristretto.NewCache(&ristretto.Config[string, origin.Entry]{
		NumCounters: 1 << 20, MaxCost: 64 << 20, BufferItems: 64,
	}); err != nil {
		return nil, err
	}
	if m.lists, err = ristretto.NewCache(&ristretto.Config[string, *Listing]{
		NumCounters: 1 << 17, MaxCost: 256 << 20, BufferItems: 64,
	}); err != nil {
		return nil, err
	}
	if m.last, err = ristretto.NewCache(&ristretto.Config[string, *Listing]{
		NumCounters: 1 << 17, MaxCost: 256 << 20, BufferItems: 64,
	}); err != nil {
		return nil, err
	}
	if m.lastStat, err = ristretto.NewCache(&ristretto.Config[string, origin.Entry]{
		NumCounters: 1 << 20, MaxCost: 128 << 20, BufferItems: 64,
	}); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metaCache) close() {
	m.stats.Close()
	m.lists.Close()
	m.last.Close()
	m.lastStat.Close()
	m.store.close()
}

// stored returns the store's record of kind for p and the TTL it has left (<= 0:
// expired, usable only while the origin is down).
func (m *metaCache) stored(kind byte, p string) ([]origin.Entry, time.Duration, bool) {
	fetched, entries, ok := m.store.get(kind, p)
	if !ok || (kind == kindStat && len(entries) != 1) {
		return nil, 0, false
	}
	age := time.Since(fetched)
	if age < 0 {
		// Fetched "in the future": the clock was set back since. Trust it no
		// longer than the origin's next answer.
		return entries, 0, true
	}
	return entries, m.ttlOf(p) - age, true
}

func listCost(entries []origin.Entry) int64 {
	var cost int64 = 64
	for _, e := range entries {
		cost += entryCost(e)
	}
	return cost
}

func entryCost(e origin.Entry) int64 { return int64(96 + len(e.Name) + len(e.Version)) }

func (m *metaCache) stat(ctx context.Context, p string) (origin.Entry, error) {
	if e, ok := m.stats.Get(p); ok {
		return e, nil
	}
	v, err := m.group.do(ctx, "s\x00"+p, m.timeout, func(ctx context.Context) (any, error) {
		// Fetched before a restart and still within the TTL: the TTL left is kept.
		kept, left, stored := m.stored(kindStat, p)
		if stored && left > 0 {
			e := kept[0]
			m.stats.SetWithTTL(p, e, entryCost(e), left)
			m.lastStat.Set(p, e, entryCost(e))
			m.stats.Wait()
			return e, nil
		}
		fetched := time.Now()
		e, err := m.origin.Stat(ctx, p)
		if err != nil {
			if !originDown(err) {
				return origin.Entry{}, err
			}
			return m.staleStat(p, kept, stored, err)
		}
		m.stats.SetWithTTL(p, e, entryCost(e), m.ttlOf(p))
		m.lastStat.Set(p, e, entryCost(e))
		m.store.put(kindStat, p, fetched, []origin.Entry{e})
		m.stats.Wait()
		return e, nil
	})
	if err != nil {
		return origin.Entry{}, err
	}
	return v.(origin.Entry), nil
}

// staleStat answers stat of p when the origin is down (err): with the attributes
// last seen, those stored before a restart (kept, when stored), or those of the
// cached object, served stale for a short while; else err.
func (m *metaCache) staleStat(p string, kept []origin.Entry, stored bool, err error) (origin.Entry, error) {
	stale, ok := m.lastStat.Get(p)
	if !ok && stored {
		stale, ok = kept[0], true
	}
	if !ok {
		stale, ok = m.offline.offlineStat(p)
	}
	if !ok {
		return origin.Entry{}, err
	}
	m.log.Warn("origin unreachable; serving stale attributes", "path", "/"+p, "err", err)
	m.stale[0].Add(1)
	m.stats.SetWithTTL(p, stale, entryCost(stale), m.staleTTL)
	m.stats.Wait()
	return stale, nil
}

// statUnanswered is stat of p just after a request for it went unanswered for the
// whole origin timeout (err): the stale answer, or err, without waiting a second
// timeout for a HEAD.
func (m *metaCache) statUnanswered(p string, err error) (origin.Entry, error) {
	kept, _, stored := m.stored(kindStat, p)
	return m.staleStat(p, kept, stored, err)
}

// remember records e as what the origin said of file p just now (as stat does).
func (m *metaCache) remember(p string, e origin.Entry) {
	m.stats.SetWithTTL(p, e, entryCost(e), m.ttlOf(p))
	m.lastStat.Set(p, e, entryCost(e))
	m.store.put(kindStat, p, time.Now(), []origin.Entry{e})
	m.stats.Wait()
}

// listingTimeouts is how many origin timeouts one listing may take in all, as long
// as it makes progress.
const listingTimeouts = 10

func (m *metaCache) list(ctx context.Context, p string) (*Listing, error) {
	if l, ok := m.lists.Get(p); ok {
		return l, nil
	}
	// The origin gives up a listing that stops making progress for the timeout; a
	// listing that keeps coming (a million entries over a slow link) may take up to
	// listingTimeouts of them in all.
	v, err := m.group.do(ctx, "l\x00"+p, listingTimeouts*m.timeout, func(ctx context.Context) (any, error) {
		// Fetched before a restart and still within the TTL: the TTL left is kept.
		kept, left, stored := m.stored(kindList, p)
		if stored && left > 0 {
			l := newListing(kept)
			l.Gen = m.gen.Add(1)
			m.lists.SetWithTTL(p, l, listCost(kept), left)
			m.last.Set(p, l, listCost(kept))
			m.lists.Wait()
			return l, nil
		}
		fetched := time.Now()
		entries, err := m.origin.List(ctx, p)
		if errors.Is(err, origin.ErrTooManyEntries) {
			m.log.Error("directory not listed: it has more entries than --max-dir-entries allows (raise it to list this directory)", "path", "/"+p, "err", err)
		}
		if err != nil {
			if !originDown(err) {
				return nil, err
			}
			stale, ok := m.last.Get(p)
			if !ok && stored {
				stale, ok = newListing(kept), true
				stale.Gen = m.gen.Add(1)
			}
			if !ok {
				var ents []origin.Entry
				if ents, ok = m.offline.offlineList(p); ok {
					stale = newListing(ents)
					stale.Gen = m.gen.Add(1)
				}
			}
			if !ok {
				return nil, err
			}
			m.log.Warn("origin unreachable; serving a stale listing", "path", "/"+p, "err", err)
			m.stale[1].Add(1)
			m.lists.SetWithTTL(p, stale, 64+int64(len(stale.Entries))*96, m.staleTTL)
			m.lists.Wait()
			return stale, nil
		}
		l := newListing(entries)
		if prev, ok := m.last.Get(p); ok && sameEntries(prev.Entries, l.Entries) {
			l.Gen = prev.Gen
		} else {
			l.Gen = m.gen.Add(1)
		}
		cost := listCost(entries)
		m.lists.SetWithTTL(p, l, cost, m.ttlOf(p))
		m.last.Set(p, l, cost)
		m.store.put(kindList, p, fetched, l.Entries)
		m.lists.Wait()
		return l, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*Listing), nil
}

// maxEntryStats is how many origin stats for inexact listing entries run at once.
const maxEntryStats = 8

// entryStat is stat for an entry of a listing that lacks its exact attributes: at
// most maxEntryStats of them ask the origin at a time.
func (m *metaCache) entryStat(ctx context.Context, p string) (origin.Entry, error) {
	if e, ok := m.stats.Get(p); ok {
		return e, nil
	}
	select {
	case m.entryStats <- struct{}{}:
	case <-ctx.Done():
		return origin.Entry{}, ctx.Err()
	}
	defer func() { <-m.entryStats }()
	return m.stat(ctx, p)
}

// flights makes concurrent callers for one key share one origin request, which runs
// while anyone waits for it: when the last waiter leaves, it is cancelled, so work
// nobody waits for stops (a flight with waiters left is never cancelled by one of
// them leaving).
type flights struct {
	mu sync.Mutex
	m  map[string]*metaFlight // guarded by mu
}

type metaFlight struct {
	done    chan struct{} // closed when val and err are set
	val     any
	err     error
	cancel  context.CancelFunc
	waiters int // guarded by flights.mu
}

// do returns the result of fn for key, run once for all concurrent callers under a
// context that carries ctx's values, ends after timeout, and is cancelled when
// every caller has returned early. A caller whose ctx ends returns ctx.Err().
func (g *flights) do(ctx context.Context, key string, timeout time.Duration, fn func(context.Context) (any, error)) (any, error) {
	g.mu.Lock()
	f, ok := g.m[key]
	if !ok {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		f = &metaFlight{done: make(chan struct{}), cancel: cancel}
		if g.m == nil {
			g.m = make(map[string]*metaFlight)
		}
		g.m[key] = f
		go func() {
			defer cancel()
			f.val, f.err = fn(fctx)
			g.mu.Lock()
			if g.m[key] == f {
				delete(g.m, key)
			}
			g.mu.Unlock()
			close(f.done)
		}()
	}
	f.waiters++
	g.mu.Unlock()
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
	}
	g.mu.Lock()
	if f.waiters--; f.waiters == 0 {
		f.cancel()
		// A caller arriving now starts a new flight instead of joining one
		// that is being cancelled.
		if g.m[key] == f {
			delete(g.m, key)
		}
	}
	g.mu.Unlock()
	return nil, ctx.Err()
}

// invalidate forgets the attributes and listing of p and its parent's listing, on
// disk too: a restart must not bring them back.
func (m *metaCache) invalidate(p string) {
	m.stats.Del(p)
	m.lists.Del(p)
	m.lists.Del(parentDir(p))
	m.store.del(kindStat, p)
	m.store.del(kindList, p)
	m.store.del(kindList, parentDir(p))
}

// invalidateTree forgets p and everything below it, here and in the store: a route
// of the daemon now leads to another origin. The in-memory caches cannot be walked,
// so they are emptied whole; within the TTL the store answers for the rest again.
func (m *metaCache) invalidateTree(p string) {
	m.store.delTree(p)
	m.lists.Del(parentDir(p))
	m.store.del(kindList, parentDir(p))
	for _, c := range []interface{ Clear() }{m.stats, m.lists, m.last, m.lastStat} {
		c.Clear()
	}
}

func parentDir(p string) string {
	d := path.Dir(p)
	if d == "." || d == "/" {
		return ""
	}
	return d
}
