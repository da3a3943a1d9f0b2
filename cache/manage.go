package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
	"github.com/cachegate/cachegate/internal/units"
	"golang.org/x/sys/unix"
)

// ObjectInfo describes one cached object version (`cache ls`, `cache stat`).
type ObjectInfo struct {
	Path          string    `json:"path"`
	Origin        string    `json:"origin"`
	Version       string    `json:"version"`
	Size          int64     `json:"size"`
	CachedBytes   int64     `json:"cached_bytes"`
	Complete      bool      `json:"complete"`
	Pinned        bool      `json:"pinned"`
	LastAccess    time.Time `json:"last_access"`
	ChunkSize     int64     `json:"chunk_size"`
	Chunks        int       `json:"chunks"`
	ChunksPresent int       `json:"chunks_present"`
	DataFile      string    `json:"data_file"`
	OpenHandles   int       `json:"open_handles"`
}

// infoLocked describes o. c.mu must be held.
func (c *Cache) infoLocked(o *object) ObjectInfo {
	return ObjectInfo{
		Path: o.Path, Origin: o.Origin, Version: o.Version, Size: o.Size,
		CachedBytes: o.presentBytes, Complete: o.completeLocked(), Pinned: o.pinned,
		LastAccess: o.lastAccess, ChunkSize: o.ChunkSize, Chunks: o.nchunks,
		ChunksPresent: o.presentChunks, DataFile: c.objectPath(o.key, ".data"), OpenHandles: o.refs,
	}
}

// under reports whether path p is prefix itself or inside it ("" is everything).
func under(p, prefix string) bool {
	return prefix == "" || p == prefix || strings.HasPrefix(p, prefix+"/")
}

// Objects lists the cached objects of this cache's origin under prefix, by path.
func (c *Cache) Objects(prefix string) []ObjectInfo {
	c.mu.Lock()
	var out []ObjectInfo
	for p, o := range c.idx.byPath {
		if under(p, prefix) {
			out = append(out, c.infoLocked(o))
		}
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// AllObjects lists the cached objects of every origin this cache directory holds
// under prefix (those another origin left, e.g. by `cache warm --origin`, too), by
// origin and path.
func (c *Cache) AllObjects(prefix string) []ObjectInfo {
	c.mu.Lock()
	var out []ObjectInfo
	for _, o := range c.idx.objects {
		if under(o.Path, prefix) {
			out = append(out, c.infoLocked(o))
		}
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Origin != out[j].Origin {
			return out[i].Origin < out[j].Origin
		}
		return out[i].Path < out[j].Path
	})
	return out
}

// ObjectsByOrigin counts the cached objects by origin.
func (c *Cache) ObjectsByOrigin() map[string]int {
	out := map[string]int{}
	c.mu.Lock()
	for _, o := range c.idx.objects {
		out[o.Origin]++
	}
	c.mu.Unlock()
	return out
}

// ObjectsInOrigin lists every file of the origin at or under p with what the cache
// holds of it (0% for files not cached), plus cached objects under p that the origin no
// longer lists.
func (c *Cache) ObjectsInOrigin(ctx context.Context, p string) ([]ObjectInfo, error) {
	entries, paths, err := c.Walk(ctx, p)
	if err != nil {
		return nil, err
	}
	cached := map[string]ObjectInfo{}
	for _, o := range c.Objects(p) {
		cached[o.Path] = o
	}
	out := make([]ObjectInfo, 0, len(paths))
	for i, fp := range paths {
		if o, ok := cached[fp]; ok {
			out = append(out, o)
			delete(cached, fp)
			continue
		}
		out = append(out, ObjectInfo{Path: fp, Origin: c.oname, Version: entries[i].Version, Size: entries[i].Size, ChunkSize: c.opts.ChunkSize})
	}
	for _, o := range cached {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// ErrNotCached reports a path that exists at the origin (or was not asked there) but
// has nothing in the cache.
var ErrNotCached = errors.New("not cached")

// Object describes the cached version of p. For a path with nothing cached it tells
// "not in the origin" (fs.ErrNotExist) from "not cached" (ErrNotCached).
func (c *Cache) Object(ctx context.Context, p string) (ObjectInfo, error) {
	c.mu.Lock()
	o := c.idx.byPath[p]
	var info ObjectInfo
	if o != nil {
		info = c.infoLocked(o)
	}
	c.mu.Unlock()
	if o != nil {
		return info, nil
	}
	if _, err := c.meta.stat(ctx, p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ObjectInfo{}, fmt.Errorf("%s: not in the origin: %w", p, fs.ErrNotExist)
		}
		return ObjectInfo{}, fmt.Errorf("%s: %w (and the origin could not be asked: %v)", p, ErrNotCached, err)
	}
	return ObjectInfo{}, fmt.Errorf("%s: %w", p, ErrNotCached)
}

// ErrPinned reports an evict of a pinned object without force.
var ErrPinned = errors.New("pinned")

// missing says why nothing is cached at or under p: the origin does not have it
// (fs.ErrNotExist), or it does, or could not be asked (ErrNotCached).
func (c *Cache) missing(ctx context.Context, p string) error {
	if _, err := c.meta.stat(ctx, p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return &pathError{fmt.Sprintf("/%s: not in the origin (check the path)", p), fs.ErrNotExist}
		}
		return &pathError{fmt.Sprintf("/%s: not cached (and the origin could not be asked: %v)", p, err), ErrNotCached}
	}
	return &pathError{fmt.Sprintf("/%s: not cached", p), ErrNotCached}
}

// pathError is a message that is whole as it is, and the sentinel it stands for.
type pathError struct {
	msg  string
	kind error
}

func (e *pathError) Error() string { return e.msg }
func (e *pathError) Unwrap() error { return e.kind }

// mineUnderLocked returns this origin's objects (every version) at or under p.
// c.mu must be held.
func (c *Cache) mineUnderLocked(p string) []*object {
	var out []*object
	for _, o := range c.idx.objects {
		if o.Origin == c.oname && under(o.Path, p) {
			out = append(out, o)
		}
	}
	return out
}

// checkCached returns the error of the first of paths with nothing of this origin
// cached at or under it.
func (c *Cache) checkCached(ctx context.Context, paths []string) error {
	var none []string
	c.mu.Lock()
	for _, p := range paths {
		if len(c.mineUnderLocked(p)) == 0 {
			none = append(none, p)
		}
	}
	c.mu.Unlock()
	if len(none) > 0 {
		return c.missing(ctx, none[0])
	}
	return nil
}

// Evict removes the cached versions of paths and of everything under them, and
// forgets their attributes. Open handles keep reading the bytes they have; new opens
// fetch again. Invalidators (the mount's kernel caches) are told before it returns.
// Without force, a pinned object refuses the whole request (ErrPinned), as does a
// path with nothing cached (fs.ErrNotExist or ErrNotCached): nothing goes. It returns
// how many objects went.
func (c *Cache) Evict(ctx context.Context, paths []string, force bool) (int, error) {
	if err := c.checkCached(ctx, paths); err != nil {
		return 0, err
	}
	c.mu.Lock()
	var gone []*object
	seen := map[*object]bool{} // paths may overlap
	for _, p := range paths {
		for _, o := range c.mineUnderLocked(p) {
			if !force && o.pinned {
				c.mu.Unlock()
				return 0, fmt.Errorf("/%s: %w: unpin it first, or --force", o.Path, ErrPinned)
			}
			if !seen[o] {
				seen[o] = true
				gone = append(gone, o)
			}
		}
	}
	for _, o := range gone {
		c.removeLocked(o)
	}
	c.mu.Unlock()
	c.forget(gone, paths...)
	return len(gone), nil
}

// forget closes the files of removed objects and drops what the cache and its
// invalidators know of their paths (and of extra paths).
func (c *Cache) forget(gone []*object, extra ...string) {
	paths := extra
	for _, o := range gone {
		o.closeIfIdle()
		if o.Origin == c.oname {
			paths = append(paths, o.Path)
		}
	}
	for _, p := range paths {
		c.meta.invalidate(p)
	}
	c.notifyInvalidate(paths...)
}

// GC evicts least recently used objects (never pinned or open ones) until at most to
// bytes are used; to 0 empties the cache of them, 0-byte objects included. It returns
// the bytes freed and the objects evicted.
func (c *Cache) GC(to int64) (int64, int) {
	c.mu.Lock()
	before := c.idx.used
	need := c.idx.used - to
	if to <= 0 {
		need = math.MaxInt64 // every victim, whatever its size
	}
	victims, _ := c.evictLocked(need)
	freed := before - c.idx.used
	c.mu.Unlock()
	for _, o := range victims {
		o.closeIfIdle()
	}
	return freed, len(victims)
}

// Clear removes every object, pinned ones included. It returns how many went.
func (c *Cache) Clear() int {
	c.mu.Lock()
	var gone []*object
	for _, o := range c.idx.objects {
		c.removeLocked(o)
		gone = append(gone, o)
	}
	c.mu.Unlock()
	c.forget(gone)
	c.meta.store.clear()
	return len(gone)
}

// setPinned records the pin in the object's sidecar (so it survives restarts) and in
// the index. The caller holds a reference.
func (c *Cache) setPinned(o *object, pinned bool) {
	o.mu.Lock()
	if o.side != nil {
		o.side.setPinned(pinned)
	}
	o.mu.Unlock()
	c.mu.Lock()
	if o.pinned != pinned && !o.removed {
		if pinned {
			c.idx.pinnedObjects++
		} else {
			c.idx.pinnedObjects--
		}
	}
	o.pinned = pinned
	c.mu.Unlock()
}

// Unpin clears the pins of paths and of everything under them. A path with nothing
// cached refuses the whole request (fs.ErrNotExist or ErrNotCached). It returns how
// many objects were pinned.
func (c *Cache) Unpin(ctx context.Context, paths []string) (int, error) {
	if err := c.checkCached(ctx, paths); err != nil {
		return 0, err
	}
	c.mu.Lock()
	var pinned []*object
	for path, o := range c.idx.byPath {
		for _, p := range paths {
			if under(path, p) && o.pinned {
				pinned = append(pinned, o)
				break
			}
		}
	}
	c.mu.Unlock()
	for _, o := range pinned {
		if err := c.acquire(o); err != nil {
			return 0, err
		}
		c.setPinned(o, false)
		c.release(o)
	}
	return len(pinned), nil
}

// maxWalkDepth bounds how deep Walk descends: origins without symlinks have no
// loops, but a hostile one can still serve an endless chain of directories.
const maxWalkDepth = 256

// Walk lists the files at or under p in the origin, with their attributes. It never
// follows symlinks (a link to "." would make the walk endless; the files a link points
// at inside the origin are reached by their own paths), and refuses to go more than
// maxWalkDepth directories deep.
func (c *Cache) Walk(ctx context.Context, p string) ([]origin.Entry, []string, error) {
	e, err := c.meta.stat(ctx, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, &pathError{fmt.Sprintf("/%s: not in the origin (check the path)", p), fs.ErrNotExist}
	}
	if err != nil {
		return nil, nil, err
	}
	if !e.IsDir {
		return []origin.Entry{e}, []string{p}, nil
	}
	var entries []origin.Entry
	var paths []string
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		if depth > maxWalkDepth {
			return fmt.Errorf("the tree under /%s is more than %d directories deep: name a deeper directory instead", p, maxWalkDepth)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		l, err := c.meta.list(ctx, dir)
		if err != nil {
			return err
		}
		for _, e := range l.Entries {
			cp := origin.Join(dir, e.Name)
			if e.Symlink != "" {
				continue
			}
			if e.IsDir {
				if err := walk(cp, depth+1); err != nil {
					return err
				}
				continue
			}
			if !e.Exact {
				if e, err = c.meta.stat(ctx, cp); err != nil {
					return err
				}
			}
			entries = append(entries, e)
			paths = append(paths, cp)
		}
		return nil
	}
	return entries, paths, walk(p, 0)
}

// WarmProgress is reported while warming: bytes done of the total so far.
type WarmProgress struct {
	Files     int   `json:"files"`
	FilesDone int   `json:"files_done"`
	Bytes     int64 `json:"bytes"`
	BytesDone int64 `json:"bytes_done"`
	Fetched   int64 `json:"bytes_fetched"` // from the origin (the rest was cached)
	// NotKept are the bytes of BytesDone this cache does not keep (Keeper: another
	// member's spans, with --peer-copy owner): read through, so that their owners
	// fetch and keep them, and not stored here.
	NotKept    int64  `json:"bytes_not_kept,omitempty"`
	Failed     int    `json:"files_failed"`
	FirstError string `json:"first_error,omitempty"`
	// Missing are the paths asked for that the origin does not have; the others are
	// warmed all the same. MissingCount is how many: a client summing many requests
	// may keep only the first of their paths.
	Missing      []string `json:"missing,omitempty"`
	MissingCount int      `json:"missing_count,omitempty"`
}

// Warm fetches every file at or under each of paths into the cache, parallel files at
// a time, calling progress (from one goroutine at a time) as bytes land. With pin, the
// files are pinned first (so warming cannot evict them), and the request is refused
// when the pins would not fit in the cache.
//
// A cache that keeps only some bytes (Keeper: a peer member with --peer-copy owner)
// fills what it keeps and reads the rest through without storing it, which makes
// their owners fetch and keep them: the group ends up warm, each span on its owner
// (WarmProgress.NotKept counts those bytes). A pin then pins what this cache keeps,
// and needs room for that only: the other spans are their owners' to keep.
func (c *Cache) Warm(ctx context.Context, paths []string, parallel int, pin bool, progress func(WarmProgress)) (WarmProgress, error) {
	var entries []origin.Entry
	var files []string
	var missing []string
	for _, p := range paths {
		e, f, err := c.Walk(ctx, p)
		if errors.Is(err, fs.ErrNotExist) && ctx.Err() == nil {
			missing = append(missing, p) // reported, and the rest warmed
			continue
		}
		if err != nil {
			return WarmProgress{}, err
		}
		entries, files = append(entries, e...), append(files, f...)
	}
	var st WarmProgress
	st.Files = len(files)
	st.Missing, st.MissingCount = missing, len(missing)
	for _, e := range entries {
		st.Bytes += e.Size
	}
	if pin {
		if err := c.checkPinRoom(files, entries); err != nil {
			return st, err
		}
	}
	_, _, fetched0, _ := c.Snapshot()
	var mu sync.Mutex
	report := func(f func(*WarmProgress)) {
		mu.Lock()
		f(&st)
		_, _, fetched, _ := c.Snapshot()
		st.Fetched = fetched - fetched0
		if progress != nil {
			progress(st)
		}
		mu.Unlock()
	}
	if parallel <= 0 {
		parallel = 4
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(files) || ctx.Err() != nil {
					return
				}
				err := c.warmOne(ctx, files[i], pin, func(n int64, kept bool) {
					report(func(s *WarmProgress) {
						s.BytesDone += n
						if !kept {
							s.NotKept += n
						}
					})
				})
				report(func(s *WarmProgress) {
					s.FilesDone++
					if err != nil {
						s.Failed++
						if s.FirstError == "" {
							s.FirstError = err.Error()
						}
					}
				})
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return st, ctx.Err()
	}
	if st.Failed > 0 {
		return st, fmt.Errorf("%d of %d files could not be warmed; first: %s", st.Failed, st.Files, st.FirstError)
	}
	if len(missing) > 0 {
		return st, &pathError{missingText(missing), fs.ErrNotExist}
	}
	return st, nil
}

// missingText says which paths of a warm the origin lacks (the first few by name;
// WarmProgress.Missing has them all).
func missingText(missing []string) string {
	const named = 3
	if len(missing) == 1 {
		return fmt.Sprintf("/%s: not in the origin (check the path)", missing[0])
	}
	names := make([]string, 0, named)
	for _, p := range missing[:min(named, len(missing))] {
		names = append(names, "/"+p)
	}
	more := ""
	if len(missing) > named {
		more = fmt.Sprintf(" and %d more", len(missing)-named)
	}
	return fmt.Sprintf("%d paths not in the origin (%s%s; check them); the others were warmed", len(missing), strings.Join(names, ", "), more)
}

// checkPinRoom refuses pins that would not fit in the cache with what is pinned.
func (c *Cache) checkPinRoom(files []string, entries []origin.Entry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var pinned int64
	for _, o := range c.idx.byPath {
		if o.pinned {
			// What it holds, which may be more than it keeps now (spans of an owner
			// that was down when it filled).
			pinned += max(o.presentBytes, c.keptSize(o.Path, o.Version, o.Size))
		}
	}
	var add int64
	for i, p := range files {
		if o := c.idx.byPath[p]; o != nil && o.pinned {
			continue
		}
		add += c.keptSize(p, entries[i].Version, entries[i].Size)
	}
	if pinned+add > c.opts.Limit {
		return fmt.Errorf("cannot pin %s: with the %s already pinned it exceeds --cache-size %s; unpin something or raise --cache-size",
			units.FormatSize(add), units.FormatSize(pinned), units.FormatSize(c.opts.Limit))
	}
	return nil
}

// keptSize is how many of the size bytes of path's version the cache keeps (all
// of them but with a Keeper). It calls no cache lock: c.mu may be held.
func (c *Cache) keptSize(path, version string, size int64) int64 {
	k := c.keeper()
	if k == nil {
		return size
	}
	var n int64
	for off := int64(0); off < size; {
		kept, until := k.KeepRun(path, version, off, size)
		if until <= off || until > size {
			return n + size - off // a Keeper that says nothing sensible keeps it all
		}
		if kept {
			n += until - off
		}
		off = until
	}
	return n
}

// warmOne fills one file, reporting bytes as segments land: kept, or (kept false)
// read through to their owner and not stored here (Keeper).
func (c *Cache) warmOne(ctx context.Context, p string, pin bool, done func(n int64, kept bool)) error {
	h, err := c.open(ctx, p, openWarm)
	if err != nil {
		return err
	}
	defer h.Close()
	if !h.Cached() {
		return fmt.Errorf("%s: %w", p, ErrNoSpace)
	}
	if pin {
		c.setPinned(h.o, true)
	}
	const step = 8 << 20
	flips := 0 // times in a row what this member keeps changed under the warm
	for off := int64(0); off < h.Size(); {
		kept, until := h.KeepRun(ctx, off, h.Size())
		if !kept {
			if err := h.warmThrough(ctx, off, until-off, func(n int64) { done(n, false) }); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			off = until
			continue
		}
		n, err := h.Fill(ctx, off, min(until, off+step)-off)
		if errors.Is(err, ErrNotKept) && flips < 3 {
			flips++ // an owner came back (or went) since KeepRun: ask again
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		flips = 0
		done(n, true)
		off += n
	}
	return nil
}

// warmThrough reads [off, off+n) through, uncached, and drops it: bytes this cache
// does not keep, whose owner keeps them as it serves them. done is called as bytes
// arrive. A failed stream is opened again where it stopped, up to maxAttempts times
// for errors worth retrying, as a fetch would be.
func (h *Handle) warmThrough(ctx context.Context, off, n int64, done func(int64)) error {
	buf := getBuf(h.ChunkSize())
	defer putBuf(buf)
	var err error
	end := off + n
	for attempt := 0; off < end && attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			if !origin.Retryable(err) || !sleepCtx(ctx, time.Duration(1<<(2*attempt))*25*time.Millisecond) {
				break
			}
			h.c.metrics.retries[opRead].Add(1)
		}
		var t *through
		if t, err = h.newThrough(ctx, off, end-off); err != nil {
			continue
		}
		for off < end && err == nil {
			var k int
			k, err = t.read(ctx, (*buf)[:min(int64(len(*buf)), end-off)], off, h.c.opts.OriginTimeout)
			off += int64(k)
			if k > 0 {
				attempt = 0 // progress: a new stall may retry as often again
				done(int64(k))
			}
		}
		t.close()
	}
	if off < end {
		if errors.Is(err, origin.ErrChanged) {
			h.c.changed(h.path)
		}
		if err == nil {
			err = ctx.Err()
		}
		return err
	}
	return nil
}

// VerifyResult is what `cache verify` reports.
type VerifyResult struct {
	Objects  int        `json:"objects"`
	Chunks   int        `json:"chunks_checked"`
	Bad      []BadChunk `json:"bad"`
	Repaired bool       `json:"repaired"`
	// Refetched counts bad chunks fetched again at once (with repair); the others
	// are fetched by the next read that needs them.
	Refetched int `json:"refetched"`
	// Unreadable lists the objects whose files could not be opened (a damaged
	// sidecar, a missing or replaced data file); they were dropped, so the next read
	// fetches them again.
	Unreadable []UnreadableObject `json:"unreadable,omitempty"`
}

// UnreadableObject is an object `cache verify` could not check, and why.
type UnreadableObject struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// Verify re-hashes every present chunk of every object. Bad chunks always leave the
// bitmap, so they are refetched and never served again; with repair they are
// refetched at once. An object is marked verified only with its bad chunks gone. An
// object whose files cannot be opened is reported, dropped as Open drops it, and
// the others are checked all the same.
func (c *Cache) Verify(ctx context.Context, repair bool) (VerifyResult, error) {
	res := VerifyResult{Repaired: repair}
	c.mu.Lock()
	all := make([]*object, 0, len(c.idx.objects))
	for _, o := range c.idx.objects {
		all = append(all, o)
	}
	c.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].Path < all[j].Path })
	for _, o := range all {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		bad, chunks, err := c.verifyObject(ctx, o, repair, &res.Refetched)
		switch {
		case errors.Is(err, errRemoved):
			continue // evicted meanwhile: nothing left to check
		case ctx.Err() != nil:
			return res, ctx.Err()
		case err != nil:
			c.log.Warn("cache verify: cannot open a cache object; dropping it", "path", o.Path, "err", err)
			res.Unreadable = append(res.Unreadable, UnreadableObject{Path: o.Path, Error: err.Error()})
			c.mu.Lock()
			c.removeLocked(o)
			c.mu.Unlock()
			o.closeIfIdle()
			continue
		}
		res.Objects++
		res.Chunks += chunks
		for _, i := range bad {
			res.Bad = append(res.Bad, BadChunk{Path: o.Path, Chunk: i})
		}
	}
	return res, nil
}

// verifyObject re-hashes o's present chunks and drops the bad ones, taking o.mu one
// chunk at a time so that readers of a big object wait one chunk at most. It returns
// the bad chunks and how many were present; with repair it refetches the bad ones,
// counting them in refetched.
func (c *Cache) verifyObject(ctx context.Context, o *object, repair bool, refetched *int) (bad []int, chunks int, err error) {
	c.mu.Lock()
	if o.removed {
		c.mu.Unlock()
		return nil, 0, errRemoved
	}
	o.refs++
	c.mu.Unlock()
	defer c.release(o)
	o.mu.Lock()
	if err := o.openFilesVerify(false); err != nil {
		o.mu.Unlock()
		return nil, 0, err
	}
	if !o.verified {
		// Nobody reads an unverified object before re-hashing it whole, so the
		// data file as of now is what this pass checks. A verified object keeps
		// its stamp: a change before this pass must still show at the next open.
		o.writeMu.Lock()
		o.noteWriteLocked()
		o.writeMu.Unlock()
	}
	o.mu.Unlock()
	c.mu.Lock()
	chunks = o.presentChunks
	c.mu.Unlock()
	buf := getBuf(o.ChunkSize)
	defer putBuf(buf)
	for i := 0; i < o.nchunks; i++ {
		if i > 0 && testHookBetweenChunks != nil {
			testHookBetweenChunks(o)
		}
		if err := ctx.Err(); err != nil {
			return bad, chunks, err
		}
		o.mu.Lock()
		if o.checkChunk(i, (*buf)[:o.chunkLen(i)]) {
			bad = append(bad, i)
		}
		o.mu.Unlock()
	}
	// Every chunk present now was checked by this pass or written by this process
	// since. Unless the data file changed otherwise meanwhile (then the next open
	// sees the stamp differ and re-hashes), the object is verified.
	o.mu.Lock()
	o.writeMu.Lock()
	var st unix.Stat_t
	if unix.Fstat(int(o.data.Fd()), &st) == nil && stampOf(&st) == o.stamp {
		o.verified = true
	}
	o.writeMu.Unlock()
	o.mu.Unlock()
	for _, i := range bad {
		if !repair {
			continue
		}
		if _, ferr := o.ensure(ctx, i, i); ferr != nil {
			c.log.Warn("cannot refetch a bad chunk now; the next read of it will", "path", o.Path, "chunk", i, "err", ferr)
		} else {
			*refetched++
		}
	}
	return bad, chunks, nil
}

// offlineStat describes p from the cached objects: a cached file, or a directory that
// holds one. It serves while the origin is down and nothing fresher is known.
func (c *Cache) offlineStat(p string) (origin.Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	name := p[strings.LastIndexByte(p, '/')+1:]
	if o := c.idx.byPath[p]; o != nil {
		return origin.Entry{Name: name, Size: o.Size, ModTime: o.ModTime, Version: o.Version, Exact: true}, true
	}
	for q := range c.idx.byPath {
		if q != p && under(q, p) {
			return origin.Entry{Name: name, IsDir: true, Exact: true}, true
		}
	}
	return origin.Entry{}, false
}

// offlineList lists directory p from the cached objects under it.
func (c *Cache) offlineList(p string) ([]origin.Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	var out []origin.Entry
	for q, o := range c.idx.byPath {
		if q == p || !under(q, p) {
			continue
		}
		rest := q
		if p != "" {
			rest = q[len(p)+1:]
		}
		name, _, isDir := strings.Cut(rest, "/")
		if seen[name] {
			continue
		}
		seen[name] = true
		if isDir {
			out = append(out, origin.Entry{Name: name, IsDir: true, Exact: true})
		} else {
			out = append(out, origin.Entry{Name: name, Size: o.Size, ModTime: o.ModTime, Version: o.Version, Exact: true})
		}
	}
	return out, len(out) > 0 || p == ""
}
