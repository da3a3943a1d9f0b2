package cache

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"
)

// Options configures a Cache.
type Options struct {
	Dir   string
	Limit int64 // bytes the cache may hold on disk
	// MinFree is the free space the cache leaves on its filesystem: bytes when
	// MinFreePct is zero, else ignored in favour of the percentage.
	MinFree    int64
	MinFreePct float64
	ChunkSize  int64
	Readahead  int64         // largest sequential readahead window
	TTL        time.Duration // how long origin attributes and listings are trusted
	// OriginTimeout bounds each origin operation made for a reader, retries
	// included: a stat or listing, an uncached read, and a fetch that brings no new
	// chunk for this long fail instead of waiting on.
	OriginTimeout time.Duration
	Logger        *slog.Logger
}

// Defaults for zero Options fields.
const (
	DefaultChunkSize     = 1 << 20
	DefaultReadahead     = 64 << 20
	DefaultTTL           = time.Minute
	DefaultOriginTimeout = 30 * time.Second
	// spanChunks is the most chunks one origin request fetches; a readahead window
	// is split into requests of this size that run in parallel.
	spanChunks = 8
	blockSize  = 4096
)

// ErrNoSpace reports that no room could be made for a chunk: everything else is open
// or pinned, or the disk is at its minimum free space. Reads fall back to the origin.
var ErrNoSpace = errors.New("cache full: every object is open or pinned, or the disk is at --min-free")

// LockedError reports a cache directory owned by another process.
type LockedError struct {
	Dir string
	Pid int
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("cache dir %s is in use by pid %d: stop that cachegate or pick another --cache-dir", e.Dir, e.Pid)
}

// Cache is an open cache directory bound to one origin.
type Cache struct {
	opts   Options
	origin origin.Origin
	oname  string
	log    *slog.Logger
	lock   *os.File
	objDir string
	meta   *metaCache
	// idle keeps the files of recently released objects open (like nginx's
	// open_file_cache), bounded in count; its evictions close them.
	idle *ristretto.Cache[string, *object]
	// creating makes concurrent openers of a new object version share one creation.
	creating singleflight.Group

	mu       sync.Mutex
	objects  map[string]*object // by key
	byPath   map[string]*object // current version of each path of this origin
	lru      *list.List         // of *object, front = most recent
	used     int64              // accounted bytes on disk
	reserved int64              // bytes reserved by fetches in flight
	free     freeSpace

	stats Stats
	// noSpaceLogged is when (unix ns) a full cache was last logged.
	noSpaceLogged atomic.Int64
}

// Stats are counters since the cache was opened.
type Stats struct {
	mu           sync.Mutex
	Hits         int64 // reads served entirely from chunks already present
	Misses       int64 // reads that waited for the origin
	BytesFetched int64 // object bytes read from the origin
	Uncached     int64 // reads served from the origin because no room could be made
	MissWait     time.Duration
}

// Open opens (creating if needed) the cache directory and takes its lock.
func Open(o origin.Origin, opts Options) (*Cache, error) {
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.ChunkSize%blockSize != 0 {
		return nil, fmt.Errorf("chunk size %d is not a multiple of %d", opts.ChunkSize, blockSize)
	}
	if opts.Readahead <= 0 {
		opts.Readahead = DefaultReadahead
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.OriginTimeout <= 0 {
		opts.OriginTimeout = DefaultOriginTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Limit <= 0 {
		return nil, errors.New("cache size must be positive")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create cache dir: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	c := &Cache{
		opts:    opts,
		origin:  o,
		oname:   o.String(),
		log:     opts.Logger,
		lock:    lock,
		objDir:  filepath.Join(opts.Dir, "objects"),
		objects: map[string]*object{},
		byPath:  map[string]*object{},
		lru:     list.New(),
	}
	c.free.dir = opts.Dir
	if c.meta, err = newMetaCache(o, opts.TTL, opts.OriginTimeout, c, opts.Logger); err != nil {
		lock.Close()
		return nil, err
	}
	closeItem := func(it *ristretto.Item[*object]) { it.Value.closeIfIdle() }
	if c.idle, err = ristretto.NewCache(&ristretto.Config[string, *object]{
		NumCounters: 16 * maxIdleOpen, MaxCost: maxIdleOpen, BufferItems: 64,
		OnEvict: closeItem, OnReject: closeItem, IgnoreInternalCost: true,
	}); err != nil {
		lock.Close()
		return nil, err
	}
	if err := os.MkdirAll(c.objDir, 0o700); err != nil {
		lock.Close()
		return nil, fmt.Errorf("create cache dir: %w", err)
	}
	start := time.Now()
	if err := c.load(); err != nil {
		lock.Close()
		return nil, err
	}
	c.log.Debug("cache opened", "dir", opts.Dir, "objects", len(c.objects), "used", c.used, "limit", opts.Limit, "took", time.Since(start).Round(time.Millisecond))
	return c, nil
}

// lockDir takes the cache directory's lock, naming the holder when it is taken.
func lockDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, "lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open cache lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b[:n])))
		return nil, &LockedError{Dir: dir, Pid: pid}
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// maxIdleOpen bounds the objects whose files stay open with no handle (3 descriptors
// or mappings each: data file, sidecar map, data map).
const maxIdleOpen = 1024

// Close closes idle files and releases the lock. Handles must be closed first.
func (c *Cache) Close() error {
	c.meta.close()
	c.idle.Close()
	c.mu.Lock()
	all := make([]*object, 0, len(c.objects))
	for _, o := range c.objects {
		all = append(all, o)
	}
	c.mu.Unlock()
	for _, o := range all {
		o.closeIfIdle()
	}
	return c.lock.Close()
}

// Dir returns the cache directory.
func (c *Cache) Dir() string { return c.opts.Dir }

// Origin returns the origin this cache reads.
func (c *Cache) Origin() origin.Origin { return c.origin }

func objectKey(originName, path, version string) string {
	h := sha256.Sum256([]byte(originName + "\x00" + path + "\x00" + version))
	return hex.EncodeToString(h[:16])
}

func (c *Cache) objectPath(key, ext string) string {
	return filepath.Join(c.objDir, key[:2], key+ext)
}

// load rebuilds the index from the sidecars on disk. It reads headers and bitmaps
// only; chunk data is verified when the object is first opened (invariant 3).
func (c *Cache) load() error {
	var all []*object
	err := filepath.WalkDir(c.objDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		name := d.Name()
		switch {
		case strings.HasSuffix(name, ".tmp"):
			os.Remove(p)
		case strings.HasSuffix(name, ".data"):
			if _, err := os.Stat(strings.TrimSuffix(p, ".data") + ".meta"); errors.Is(err, fs.ErrNotExist) {
				os.Remove(p) // a data file whose sidecar never landed
			}
		case strings.HasSuffix(name, ".meta"):
			o, err := c.loadObject(strings.TrimSuffix(name, ".meta"), p)
			if err != nil {
				c.log.Warn("dropping unreadable cache object", "file", p, "err", err)
				os.Remove(p)
				os.Remove(strings.TrimSuffix(p, ".meta") + ".data")
				return nil
			}
			all = append(all, o)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan cache dir: %w", err)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].lastAccess.After(all[j].lastAccess) })
	for _, o := range all {
		if o.Origin == c.oname {
			if _, ok := c.byPath[o.Path]; ok {
				// Two versions of one path: keep the most recently used one.
				c.removeFiles(o)
				continue
			}
			c.byPath[o.Path] = o
		}
		c.objects[o.key] = o
		o.elem = c.lru.PushBack(o)
		c.used += o.diskBytes
	}
	return nil
}

func (c *Cache) loadObject(key, metaPath string) (*object, error) {
	b, err := os.ReadFile(metaPath)
	if err != nil {
		return nil, err
	}
	info, hl, err := decodeHeader(b)
	if err != nil {
		return nil, err
	}
	if objectKey(info.Origin, info.Path, info.Version) != key {
		return nil, fmt.Errorf("%w: name does not match contents", errBadSidecar)
	}
	var st unix.Stat_t
	dataPath := strings.TrimSuffix(metaPath, ".meta") + ".data"
	if err := unix.Stat(dataPath, &st); err != nil {
		return nil, err
	}
	if st.Size != info.Size {
		return nil, fmt.Errorf("data file is %d bytes, object %d", st.Size, info.Size)
	}
	o := newObject(c, key, info)
	n := info.nchunks()
	var presentDisk int64
	present := func(i int) bool { return b[hl+i/8]&(1<<(i%8)) != 0 } // little-endian words: bit i is in byte i/8
	for i := 0; i < n; i++ {
		if present(i) {
			o.presentChunks++
			o.presentBytes += o.chunkLen(i)
			presentDisk += roundBlock(o.chunkLen(i))
		}
	}
	if st.Blocks*512 > presentDisk {
		// A crash during a fetch leaves blocks allocated (fallocate) for chunks whose
		// bits never got set: give them back, so the disk holds what is counted.
		if f, err := os.OpenFile(dataPath, os.O_RDWR, 0); err == nil {
			for i := 0; i < n; i++ {
				if !present(i) {
					unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(i)*o.ChunkSize, roundBlock(o.chunkLen(i)))
				}
			}
			unix.Fstat(int(f.Fd()), &st)
			f.Close()
		}
	}
	// Count what the disk really holds (more than the present chunks only if the
	// punching above failed).
	o.diskBytes = roundBlock(int64(len(b))) + max(st.Blocks*512, presentDisk)
	return o, nil
}

func roundBlock(n int64) int64 { return (n + blockSize - 1) &^ (blockSize - 1) }

// removeFiles deletes an object's files. Open descriptors and mappings keep working.
func (c *Cache) removeFiles(o *object) {
	os.Remove(c.objectPath(o.key, ".meta"))
	os.Remove(c.objectPath(o.key, ".data"))
}

// removeLocked takes o out of the index and deletes its files. c.mu must be held and
// o must have no references.
func (c *Cache) removeLocked(o *object) {
	if o.removed {
		return
	}
	o.removed = true
	delete(c.objects, o.key)
	if c.byPath[o.Path] == o {
		delete(c.byPath, o.Path)
	}
	if o.elem != nil {
		c.lru.Remove(o.elem)
		o.elem = nil
	}
	c.used -= o.diskBytes
	c.removeFiles(o)
}

// reserve makes room for n more bytes, evicting the least recently used objects
// that are neither open nor pinned.
func (c *Cache) reserve(n int64) error {
	var victims []*object
	defer func() {
		for _, o := range victims { // their files may still be open in the idle set
			o.closeIfIdle()
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	need := c.used + c.reserved + n - c.opts.Limit
	short := c.free.shortfall(c.minFree(), c.reserved+n)
	if short > need {
		need = short
	}
	victims, need = c.evictLocked(need)
	if need > 0 {
		return ErrNoSpace
	}
	c.reserved += n
	return nil
}

// evictLocked removes least recently used objects that are neither open nor pinned
// until need bytes are freed; it returns them (their files may still be open in the
// idle set: call closeIfIdle after unlocking) and what is still needed. c.mu is held.
func (c *Cache) evictLocked(need int64) ([]*object, int64) {
	var victims []*object
	for e := c.lru.Back(); need > 0 && e != nil; {
		o := e.Value.(*object)
		e = e.Prev()
		if o.refs > 0 || o.pinned {
			continue
		}
		need -= o.diskBytes
		c.log.Debug("evict", "path", o.Path, "bytes", o.diskBytes)
		c.removeLocked(o)
		victims = append(victims, o)
		c.free.invalidate()
	}
	return victims, need
}

func (c *Cache) unreserve(n int64) {
	c.mu.Lock()
	c.reserved -= n
	c.mu.Unlock()
}

// commit turns reserved bytes into used bytes of o, whose chunk of n bytes landed.
func (c *Cache) commit(o *object, reserved, used, n int64) {
	c.mu.Lock()
	c.reserved -= reserved
	if !o.removed {
		c.used += used
		o.diskBytes += used
	}
	o.presentChunks++
	o.presentBytes += n
	c.mu.Unlock()
}

func (c *Cache) minFree() int64 {
	if c.opts.MinFreePct > 0 {
		return int64(c.opts.MinFreePct / 100 * float64(c.free.total()))
	}
	return c.opts.MinFree
}

// freeSpace caches statfs of the cache filesystem for a short time: reserve runs once
// per fetch and must not cost a syscall each time.
type freeSpace struct {
	dir    string
	at     time.Time
	avail  int64
	totalB int64
}

func (f *freeSpace) refresh() {
	if time.Since(f.at) < 100*time.Millisecond {
		return
	}
	var st unix.Statfs_t
	if err := unix.Statfs(f.dir, &st); err != nil {
		return
	}
	f.avail = int64(st.Bavail) * st.Bsize
	f.totalB = int64(st.Blocks) * st.Bsize
	f.at = time.Now()
}

func (f *freeSpace) invalidate() { f.at = time.Time{} }

func (f *freeSpace) total() int64 { f.refresh(); return f.totalB }

// shortfall is how many bytes must be freed so that writing pending bytes leaves min.
func (f *freeSpace) shortfall(min, pending int64) int64 {
	f.refresh()
	if f.at.IsZero() {
		return 0
	}
	return min - (f.avail - pending)
}

// Used returns the accounted bytes on disk and the limit.
func (c *Cache) Used() (used, limit int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used, c.opts.Limit
}

func (c *Cache) count(f func(*Stats)) {
	c.stats.mu.Lock()
	f(&c.stats)
	c.stats.mu.Unlock()
}

// Status is a summary of the cache for status pages and metrics.
type Status struct {
	UsedBytes    int64 `json:"used_bytes"`
	LimitBytes   int64 `json:"limit_bytes"`
	Objects      int   `json:"objects"`
	Hits         int64 `json:"hits"`
	Misses       int64 `json:"misses"`
	BytesFetched int64 `json:"-"`
	Uncached     int64 `json:"uncached_reads"`
}

// Status returns the cache's current figures.
func (c *Cache) Status() Status {
	c.mu.Lock()
	st := Status{UsedBytes: c.used, LimitBytes: c.opts.Limit, Objects: len(c.objects)}
	c.mu.Unlock()
	st.Hits, st.Misses, st.BytesFetched, st.Uncached = c.Snapshot()
	return st
}

// Snapshot returns a copy of the counters.
func (c *Cache) Snapshot() (hits, misses, fetched, uncached int64) {
	c.stats.mu.Lock()
	defer c.stats.mu.Unlock()
	return c.stats.Hits, c.stats.Misses, c.stats.BytesFetched, c.stats.Uncached
}

// Invalidate forgets cached attributes and listings of p and its parent, so the next
// lookup asks the origin.
func (c *Cache) Invalidate(p string) { c.meta.invalidate(p) }

// Stat returns the attributes of p, from the origin at most once per TTL.
func (c *Cache) Stat(ctx context.Context, p string) (origin.Entry, error) {
	return c.meta.stat(ctx, p)
}

// List returns the entries of directory p, from the origin at most once per TTL.
func (c *Cache) List(ctx context.Context, p string) (*Listing, error) {
	return c.meta.list(ctx, p)
}

// Lookup returns the entry name in directory dir: from the directory's listing when
// that is exact, else by a Stat of the child (at most a few of those ask the origin
// at a time).
func (c *Cache) Lookup(ctx context.Context, dir, name string) (origin.Entry, error) {
	e, exact, err := c.listed(ctx, dir, name)
	if err != nil || exact {
		return e, err
	}
	return c.meta.entryStat(ctx, origin.Join(dir, name))
}

// LookupListed is Lookup without asking the origin about the entry itself: ok is
// false when the directory's listing lacks its exact attributes (an HTML index
// rounds sizes) and no Stat of it is cached. Readers of a whole directory (FUSE's
// readdirplus) use it, so that a listing never costs an origin request per entry.
func (c *Cache) LookupListed(ctx context.Context, dir, name string) (e origin.Entry, ok bool, err error) {
	e, exact, err := c.listed(ctx, dir, name)
	if err != nil || exact {
		return e, err == nil, err
	}
	if e, ok := c.meta.stats.Get(origin.Join(dir, name)); ok {
		return e, true, nil
	}
	return origin.Entry{}, false, nil
}

// listed returns the entry name of dir's listing, and whether its attributes are
// exact there (always so for a directory).
func (c *Cache) listed(ctx context.Context, dir, name string) (origin.Entry, bool, error) {
	l, err := c.meta.list(ctx, dir)
	if err != nil {
		return origin.Entry{}, false, err
	}
	e, ok := l.Get(name)
	if !ok {
		return origin.Entry{}, false, fmt.Errorf("%s: %w", origin.Join(dir, name), fs.ErrNotExist)
	}
	return e, e.IsDir || e.Exact, nil
}

// noteNoSpace says in the log, at most every 30 seconds, that reads go to the origin
// uncached because the cache has no room.
func (c *Cache) noteNoSpace(p string, err error) {
	now, last := time.Now().UnixNano(), c.noSpaceLogged.Load()
	if now-last < int64(30*time.Second) || !c.noSpaceLogged.CompareAndSwap(last, now) {
		return
	}
	c.log.Warn("no room in the cache: reading from the origin uncached until space returns (free disk space, or raise --cache-size, or unpin files)", "path", "/"+p, "err", err)
}
