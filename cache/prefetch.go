package cache

// Directory-aware prefetch of small files (issue 21, goal 2).
//
// A reader that opens the files of a directory in turn (cat *, tar, cp -r, a loop
// over a dataset's shards) waits one origin round trip per file. When a reader's
// Open follows its previous open of the same directory in the order of the
// directory's listing (sorted by name, byte-wise: the order of the mount's readdir,
// which tar and find follow, and the order in which ls and shell globs sort plain
// names), the prefetcher fetches the next small files of that listing ahead of it, a
// few at once, through the path an Open takes: fetchWhole's one GET, then the
// object's fetch. A reader that opens a file while it is being prefetched joins that
// GET (wholeFlights) or that fetch (the object's flights): one origin request in all.
//
// Bounds:
//   - Count: at most Options.Prefetch files ahead of a directory's last open, at most
//     PrefetchParallel requests at once, at most prefetchDirs directories followed.
//   - Size: only files the listing sizes exactly, of one chunk at most.
//   - Bytes: prefetches queued, in flight, or fetched and not read yet take at most
//     the budget (prefetchBudget, at most a sixteenth of the cache).
//   - Room: a prefetch starts only while the cache has room for it and for the budget
//     besides without evicting; its reservations never evict (they fail with
//     errPrefetchNoRoom instead); its objects enter the LRU at the back, the first to
//     go, and a prefetch's open does not move an object up.
//   - Time: a directory whose reader has not opened a file for prefetchIdle gets no
//     more: its queued prefetches are dropped. Files the reader passed over stop
//     counting against the budget. Close cancels what is queued, and the fetches
//     nobody else waits for.
//
// Lock order: prefetcher.mu, then Cache.mu. No other lock is held while taking
// prefetcher.mu.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
)

// DefaultPrefetch is --prefetch's default: the files fetched ahead of a reader (the
// mount's and server's flag, and the daemon, which has no such key).
const DefaultPrefetch = 32

// DefaultPrefetchParallel is how many prefetches run at once by default.
const DefaultPrefetchParallel = 8

const (
	// prefetchBudget bounds the bytes of prefetches queued, in flight, or fetched
	// and not read yet (and a sixteenth of the cache does).
	prefetchBudget = 32 << 20
	// prefetchIdle: a directory whose reader has not opened a file for this long
	// gets no more prefetches.
	prefetchIdle = 2 * time.Second
	// prefetchDirs bounds the directories followed at once (the least recently
	// read is dropped), prefetchFiles the files prefetched and not read yet.
	prefetchDirs  = 256
	prefetchFiles = 4096
)

// errPrefetchNoRoom ends a prefetch that found no room without evicting. It is an
// errAbandoned, so a reader that joined that fetch starts its own (which may evict).
var errPrefetchNoRoom = fmt.Errorf("%w: no room to prefetch without evicting", errAbandoned)

type prefetcher struct {
	c        *Cache
	ahead    int           // files ahead of a reader (Options.Prefetch)
	parallel int           // prefetches at once
	budget   int64         // bytes: see prefetchBudget
	idle     time.Duration // prefetchIdle (shorter in tests)
	// ctx ends at close: queued prefetches are dropped, and fetches nobody else
	// waits for are cancelled. It marks the prefetch's fetches (prefetching).
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the workers

	mu      sync.Mutex
	dirs    map[string]*dirStream    // by directory
	files   map[string]*prefetchFile // queued, in flight, or fetched and not read: by path
	queue   []*prefetchFile          // in order (entries no longer in files are skipped)
	bytes   int64                    // the sizes of files: the budget's use
	workers int
	closed  bool
	// downUntil: a prefetch failed as an unreachable or failing origin does, so
	// none starts or is queued before then (prefetchIdle later). Without it, a
	// reader going through a directory while the origin was down sent the
	// origin, with retries, a request for every file ahead of it besides its own.
	downUntil time.Time
}

// dirStream is a reader's progress through the listing of one directory.
type dirStream struct {
	dir   string
	last  time.Time       // the reader's last open there
	prev  int             // the listing index of that open
	ahead int             // entries up to this index were considered for prefetch
	files []*prefetchFile // what it prefetched, in listing order (some released)
}

type prefetchState int8

const (
	prefetchQueued prefetchState = iota
	prefetchRunning
	prefetchDone
)

type prefetchFile struct {
	path  string
	idx   int // in its directory's listing
	size  int64
	st    *dirStream
	state prefetchState
	// released: no longer counted once its fetch ends (read, passed over, dropped).
	released bool
}

func newPrefetcher(c *Cache) *prefetcher {
	if c.opts.Prefetch <= 0 {
		return nil
	}
	par := c.opts.PrefetchParallel
	if par <= 0 {
		par = DefaultPrefetchParallel
	}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), prefetchKey{}, true))
	return &prefetcher{
		c: c, ahead: c.opts.Prefetch, parallel: min(par, c.opts.Prefetch),
		budget: min(prefetchBudget, c.opts.Limit/16), idle: prefetchIdle,
		ctx: ctx, cancel: cancel,
		dirs: map[string]*dirStream{}, files: map[string]*prefetchFile{},
	}
}

type prefetchKey struct{}

// prefetching reports whether ctx is a prefetch's (or a fetch it started).
func prefetching(ctx context.Context) bool {
	b, _ := ctx.Value(prefetchKey{}).(bool)
	return b
}

// carryPrefetch marks ctx as a prefetch's when from is one.
func carryPrefetch(ctx, from context.Context) context.Context {
	if from != nil && prefetching(from) {
		return context.WithValue(ctx, prefetchKey{}, true)
	}
	return ctx
}

// opened is told of every reader's Open of path, before it fetches anything: a
// prefetched file stops counting against the budget, and an open in turn
// prefetches the next files.
func (p *prefetcher) opened(path string) {
	if p == nil {
		return
	}
	dir := parentDir(path)
	l, ok := p.c.meta.lists.Get(dir)
	if !ok {
		return
	}
	i, ok := l.byName[path[strings.LastIndexByte(path, '/')+1:]]
	if !ok {
		return
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if f := p.files[path]; f != nil { // read now (counted useful by acquireAs)
		p.releaseLocked(f)
	}
	st := p.dirs[dir]
	var inTurn bool
	if st == nil || now.Sub(st.last) > p.idle {
		if st != nil {
			p.dropLocked(st)
		}
		st = p.followLocked(dir, i)
		inTurn = firstFile(l, i)
	} else {
		// After the previous open, and no further than the prefetched files.
		inTurn = i > st.prev && i <= max(st.ahead, st.prev)+1
	}
	st.last, st.prev = now, i
	// Files at or before this open were read or passed over: they stop counting.
	for len(st.files) > 0 && st.files[0].idx <= i {
		p.releaseLocked(st.files[0])
		st.files = st.files[1:]
	}
	if inTurn && !now.Before(p.downUntil) {
		p.scheduleLocked(st, l, i, now)
	}
}

// firstFile reports whether entry i is the listing's first file (directories may
// come before it); looking at the first few entries only.
func firstFile(l *Listing, i int) bool {
	if i > 64 {
		return false
	}
	for _, e := range l.Entries[:i] {
		if !e.IsDir {
			return false
		}
	}
	return true
}

// followLocked starts following dir, dropping the least recently read directory
// when prefetchDirs are followed already.
func (p *prefetcher) followLocked(dir string, i int) *dirStream {
	if len(p.dirs) >= prefetchDirs {
		var oldest *dirStream
		for _, st := range p.dirs {
			if oldest == nil || st.last.Before(oldest.last) {
				oldest = st
			}
		}
		p.dropLocked(oldest)
	}
	st := &dirStream{dir: dir, prev: i, ahead: i}
	p.dirs[dir] = st
	return st
}

// dropLocked stops following st: its queued files are dropped, the others stop
// counting.
func (p *prefetcher) dropLocked(st *dirStream) {
	for _, f := range st.files {
		p.releaseLocked(f)
	}
	st.files = nil
	if p.dirs[st.dir] == st {
		delete(p.dirs, st.dir)
	}
}

// releaseLocked stops counting f against the budget: at once, or when its fetch
// ends. A queued f is dropped from the queue.
func (p *prefetcher) releaseLocked(f *prefetchFile) {
	if f.state == prefetchRunning {
		f.released = true
		return
	}
	if p.files[f.path] == f {
		delete(p.files, f.path)
		p.bytes -= f.size
	}
}

// scheduleLocked queues the small files among the next entries after index i of
// st's listing l, up to p.ahead of them, that are not cached, queued or in flight,
// within the budget; and starts workers for them.
func (p *prefetcher) scheduleLocked(st *dirStream, l *Listing, i int, now time.Time) {
	c := p.c
	swept := false
	n := 0
	for j := i + 1; j < len(l.Entries) && n < p.ahead && j-i <= 4*p.ahead; j++ {
		e := l.Entries[j]
		if e.IsDir || e.Symlink != "" || !e.Exact || e.Size <= 0 || e.Size > c.opts.ChunkSize {
			if j > st.ahead {
				st.ahead = j
			}
			continue
		}
		n++
		if j <= st.ahead {
			continue // considered at an earlier open
		}
		path := origin.Join(st.dir, e.Name)
		if p.files[path] == nil {
			if (p.bytes+e.Size > p.budget || len(p.files) >= prefetchFiles) && !swept {
				p.sweepLocked(now)
				swept = true
			}
			if p.bytes+e.Size > p.budget || len(p.files) >= prefetchFiles {
				break // the next open tries again
			}
			c.mu.Lock()
			cached := c.idx.byPath[path] != nil
			c.mu.Unlock()
			if !cached {
				f := &prefetchFile{path: path, idx: j, size: e.Size, st: st}
				p.files[path] = f
				p.bytes += e.Size
				st.files = append(st.files, f)
				p.queue = append(p.queue, f)
			}
		}
		st.ahead = j
	}
	for p.workers < p.parallel && p.workers < len(p.queue) {
		p.workers++
		p.wg.Add(1)
		go p.work()
	}
}

// sweepLocked drops the directories whose reader went away.
func (p *prefetcher) sweepLocked(now time.Time) {
	for _, st := range p.dirs {
		if now.Sub(st.last) > p.idle {
			p.dropLocked(st)
		}
	}
	if len(p.queue) > 2*len(p.files)+64 { // dropped entries: compact
		q := p.queue[:0]
		for _, f := range p.queue {
			if p.files[f.path] == f && f.state == prefetchQueued {
				q = append(q, f)
			}
		}
		clear(p.queue[len(q):])
		p.queue = q
	}
}

// work runs queued prefetches until none is left.
func (p *prefetcher) work() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		f := p.nextLocked()
		if f == nil {
			p.workers--
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		err := p.fetch(f)
		p.mu.Lock()
		f.state = prefetchDone
		if err != nil || f.released {
			p.releaseLocked(f)
		}
		if prefetchOriginDown(err) {
			p.downUntil = time.Now().Add(p.idle)
		}
		p.mu.Unlock()
		switch {
		case err == nil:
			p.c.metrics.prefetchFiles.Add(1)
			p.c.metrics.prefetchBytes.Add(f.size)
		case !errors.Is(err, errPrefetchNoRoom) && !errors.Is(err, context.Canceled):
			p.c.log.Debug("prefetch failed", "path", "/"+f.path, "err", err)
		}
	}
}

// prefetchOriginDown reports whether a prefetch's err says the origin is failing
// or out of reach (what its retries did not get through), not that this file is
// gone, changed, or found no room.
func prefetchOriginDown(err error) bool {
	return err != nil && !errors.Is(err, errAbandoned) && !errors.Is(err, context.Canceled) && originDown(err)
}

// nextLocked takes the next queued file whose reader is still there.
func (p *prefetcher) nextLocked() *prefetchFile {
	now := time.Now()
	for !p.closed && len(p.queue) > 0 {
		f := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		if p.files[f.path] != f || f.state != prefetchQueued {
			continue // read, passed over or dropped meanwhile
		}
		if now.Sub(f.st.last) > p.idle {
			p.dropLocked(f.st) // the reader went away
			continue
		}
		if now.Before(p.downUntil) {
			p.releaseLocked(f) // the origin is failing: not now
			continue
		}
		f.state = prefetchRunning
		return f
	}
	return nil
}

// fetch brings f into the cache as a reader's open and read would, without
// evicting anything for it.
func (p *prefetcher) fetch(f *prefetchFile) error {
	if !p.roomFor(f.size) {
		return errPrefetchNoRoom
	}
	h, err := p.c.open(p.ctx, f.path, openPrefetch)
	if err != nil {
		return err
	}
	defer h.Close()
	if h.entry.Size <= 0 || h.entry.Size > h.o.ChunkSize {
		return nil // not the small file the listing said (any more)
	}
	if _, err = h.o.ensure(p.ctx, 0, h.o.nchunks-1); err != nil {
		p.c.mu.Lock()
		h.o.prefetched = false // nothing came: a reader's open is no use of it
		p.c.mu.Unlock()
	}
	return err
}

// roomFor reports whether the cache has room for a file of size and the budget
// besides, under its limit and above --min-free, without evicting.
func (p *prefetcher) roomFor(size int64) bool {
	c := p.c
	need := roundBlock(size) + 2*blockSize // its data and (about) its sidecar
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opts.Limit-c.idx.used-c.idx.reserved < need+p.budget {
		return false
	}
	return c.idx.free.shortfall(c.minFree(), c.idx.reserved+need+p.budget) <= 0
}

// close drops what is queued, cancels fetches nobody else waits for, and waits for
// the workers.
func (p *prefetcher) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	clear(p.queue)
	p.queue = nil
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}

// wholeFlights are the one-request GETs of small files in progress (fetchWhole), by
// path, so that concurrent openers of a file share one.
type wholeFlights struct {
	mu sync.Mutex
	m  map[string]*wholeFlight
}

// wholeFlight is one GET of a whole small file. Its fields are written before done
// closes and read after.
type wholeFlight struct {
	done       chan struct{}
	e          origin.Entry
	whole      []byte
	ok         bool
	unanswered error // the GET timed out (fetchWhole)
}

func (w *wholeFlights) get(p string) *wholeFlight {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.m[p]
}

// start returns p's flight, and whether it is new (the caller's to run and finish).
func (w *wholeFlights) start(p string) (*wholeFlight, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if f := w.m[p]; f != nil {
		return f, false
	}
	f := &wholeFlight{done: make(chan struct{})}
	w.m[p] = f
	return f, true
}

// finish remembers the attributes the GET brought and lets the waiters go.
func (w *wholeFlights) finish(c *Cache, p string, f *wholeFlight) {
	if f.ok {
		c.meta.remember(p, f.e)
	}
	w.mu.Lock()
	delete(w.m, p)
	w.mu.Unlock()
	close(f.done)
}

// wait waits for the flight's answer (not ok when ctx ends first).
func (f *wholeFlight) wait(ctx context.Context) (origin.Entry, []byte, *wholeFlight, bool, error) {
	select {
	case <-f.done:
		return f.e, f.whole, nil, f.ok, f.unanswered
	case <-ctx.Done():
		return origin.Entry{}, nil, nil, false, nil
	}
}
