package cache

import (
	"cmp"
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachegate/cachegate/internal/bwlimit"
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
	// VerifyInterval is how often a background scrub re-hashes every idle object,
	// dropping bad chunks (0: never). ScrubRate bounds its reading, in
	// bytes per second (default DefaultScrubRate).
	VerifyInterval time.Duration
	ScrubRate      int64
	// BWLimit paces the bytes of every origin read of the cache (--bwlimit): one
	// bucket shared by all readers. Nil: no limit.
	BWLimit *bwlimit.Bucket
	// Prefetch is how many small files of a directory are fetched ahead of a
	// reader that opens its files in turn (--prefetch; 0: none), PrefetchParallel
	// how many of them at once (0: DefaultPrefetchParallel). See prefetch.go.
	Prefetch         int
	PrefetchParallel int
	Logger           *slog.Logger
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
	// DefaultScrubRate keeps the scrub to a small share of a disk's bandwidth.
	DefaultScrubRate = 32 << 20
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
	// recs is the object index in meta's store: the sidecars of small objects (nil
	// when there is no store).
	recs *objectRecords
	// retryDelay is the pause before a fill's attempt (1, 2, …) after a failed one:
	// fillBackoff, or none in tests that script an origin's failures.
	retryDelay func(attempt int) time.Duration
	// idle keeps the files of recently released objects open (like nginx's
	// open_file_cache), bounded in count; its evictions close them.
	idle *ristretto.Cache[string, *object]
	// idleMu makes Close's end of idle wait for releases using it: a fetch's
	// goroutine can release its object while Close runs (a warm's readahead).
	// idleClosed: Close has begun; releases then close the object's files
	// themselves. Read-locked per last release.
	idleMu     sync.RWMutex
	idleClosed bool
	// creating makes concurrent openers of a new object version share one creation.
	creating singleflight.Group
	// wholes makes concurrent openers of a small file share its one GET (fetchWhole).
	wholes wholeFlights
	// prefetch fetches small files ahead of readers (prefetch.go); nil when off.
	prefetch *prefetcher

	// mu guards idx, and the fields of every object marked "Guarded by c.mu".
	mu  sync.Mutex
	idx index

	// invalidators are told of every path whose cached version the cache dropped or
	// replaced (see OnInvalidate).
	invMu        sync.Mutex
	invalidators []func(path string)
	// stopScrub ends the scrub; scrubDone closes when it has.
	stopScrub chan struct{}
	scrubDone chan struct{}

	stats   Stats
	metrics cacheMetrics // for Metrics (metrics.go)
	// noSpaceLogged is when (unix ns) a full cache was last logged.
	noSpaceLogged atomic.Int64
}

// index is what Cache.mu guards: the objects, their order and the byte accounting.
// Every access goes through c.idx, so one made without c.mu shows in review.
type index struct {
	objects  map[string]*object // by key
	byPath   map[string]*object // current version of each path of this origin
	lru      *list.List         // of *object, front = most recent
	used     int64              // accounted bytes on disk (INVARIANT: used+reserved <= limit after reserve)
	reserved int64              // bytes reserved by fetches in flight
	free     freeSpace
	// pinnedObjects counts the pinned objects of objects, so that roomForOne (once per
	// new object) walks them only when there are some.
	pinnedObjects int
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
	if err := checkDir(opts.Dir, true); err != nil {
		return nil, err
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	c := &Cache{
		retryDelay: fillBackoff,
		opts:       opts,
		oname:      o.String(),
		log:        opts.Logger,
		lock:       lock,
		objDir:     filepath.Join(opts.Dir, "objects"),
		idx: index{
			objects: map[string]*object{},
			byPath:  map[string]*object{},
			lru:     list.New(),
		},
	}
	c.idx.free.dir = opts.Dir
	c.origin = &meteredOrigin{Origin: o, m: &c.metrics, limit: opts.BWLimit}
	store := openMetaStore(opts.Dir, c.oname, metaStoreCap(opts.Limit), opts.Logger)
	if c.meta, err = newMetaCache(c.origin, opts.TTL, opts.OriginTimeout, c, store, opts.Logger); err != nil {
		store.close()
		lock.Close()
		return nil, err
	}
	closeItem := func(it *ristretto.Item[*object]) { it.Value.closeIfIdle() }
	rejectItem := func(it *ristretto.Item[*object]) {
		// Two releases can both Set an object before ristretto stores the first;
		// it then rejects the second as a duplicate while the first stays parked.
		if o, ok := c.idle.Get(it.Value.key); ok && o == it.Value {
			return
		}
		it.Value.closeIfIdle()
	}
	idleMax := idleOpenLimit(noFileLimit())
	if c.idle, err = ristretto.NewCache(&ristretto.Config[string, *object]{
		NumCounters: 16 * idleMax, MaxCost: idleMax, BufferItems: 64,
		OnEvict: closeItem, OnReject: rejectItem, IgnoreInternalCost: true,
	}); err != nil {
		c.meta.close()
		lock.Close()
		return nil, err
	}
	if err := os.MkdirAll(c.objDir, 0o700); err != nil {
		c.meta.close()
		lock.Close()
		return nil, fmt.Errorf("create cache dir: %w", err)
	}
	if err := checkDir(c.objDir, false); err != nil {
		c.meta.close()
		lock.Close()
		return nil, err
	}
	c.wholes.m = map[string]*wholeFlight{}
	start := time.Now()
	c.recs = newObjectRecords(store)
	if err := c.load(); err != nil {
		c.recs.close()
		c.meta.close()
		lock.Close()
		return nil, err
	}
	if opts.VerifyInterval > 0 {
		if c.opts.ScrubRate <= 0 {
			c.opts.ScrubRate = DefaultScrubRate
		}
		c.stopScrub, c.scrubDone = make(chan struct{}), make(chan struct{})
		go c.scrub()
	}
	c.prefetch = newPrefetcher(c)
	c.log.Debug("cache opened", "dir", opts.Dir, "objects", len(c.idx.objects), "used", c.idx.used, "limit", opts.Limit, "took", time.Since(start).Round(time.Millisecond))
	return c, nil
}

// checkDir refuses a cache directory that another user could have prepared or can
// still change: one owned by another user, or writable by group or others. Such a
// directory could hold links or files that make this process (often root) write
// where it must not. With follow, dir may be a symlink to the directory (a user's
// choice of where the cache lives); without, it must be the directory itself.
func checkDir(dir string, follow bool) error {
	var st unix.Stat_t
	stat := unix.Lstat
	if follow {
		stat = unix.Stat
	}
	if err := stat(dir, &st); err != nil {
		return fmt.Errorf("cache dir %s: %w", dir, err)
	}
	uid := uint32(os.Geteuid())
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("cache dir %s is not a directory (a symlink or a file): remove it or pick another --cache-dir", dir)
	case st.Uid != uid:
		return fmt.Errorf("cache dir %s is owned by uid %d, not %d: chown it or pick another --cache-dir", dir, st.Uid, uid)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("cache dir %s is writable by group or others (mode %04o): chmod go-w %s or pick another --cache-dir", dir, st.Mode&0o7777, dir)
	}
	return nil
}

// openFile opens a file of the cache directory, never through a symlink and only if
// it is a regular file of this user: nothing planted there redirects a write.
// notOursError is openFile's refusal of a file that is not this user's regular
// file: a symlink, another owner's file, a device. An object whose file it is
// is dropped (its names unlinked, never followed) and fetched again.
type notOursError struct{ msg string }

func (e *notOursError) Error() string { return e.msg }

func openFile(p string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(p, flag|unix.O_NOFOLLOW, perm)
	if errors.Is(err, unix.ELOOP) {
		return nil, &notOursError{fmt.Sprintf("%s is a symlink, which cachegate never follows in its cache dir: remove it", p)}
	}
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if uid := uint32(os.Geteuid()); st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != uid {
		f.Close()
		return nil, &notOursError{fmt.Sprintf("%s is not a regular file of uid %d (mode %o, owner %d): remove it", p, uid, st.Mode, st.Uid)}
	}
	return f, nil
}

// createFile creates the file p of the cache directory afresh: a leftover there is
// removed (a symlink is removed, not followed) and the create tried again. Creating
// first, a new path costs one system call; removing first cost two more on every
// cold file (os.Remove tries rmdir after unlink).
func createFile(p string) (*os.File, error) {
	f, err := openFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if !errors.Is(err, fs.ErrExist) {
		return f, err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return openFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
}

// lockDir takes the cache directory's lock, naming the holder when it is taken.
func lockDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, "lock")
	f, err := openFile(p, os.O_RDWR|os.O_CREATE, 0o600)
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
	// The pid tells a second owner who holds the lock; without it that owner's
	// error would name pid 0.
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("write cache lock %s: %w", p, err)
	}
	return f, nil
}

// maxIdleOpen bounds the objects whose files stay open with no handle (2 descriptors,
// the sidecar's copy in memory, the data file's mapping and the mount's passthrough
// backing file each); idleOpenLimit lowers it to fit the descriptor limit. Below the
// working set every open of a tree read in turn missed: 5,000 small files read with
// one cat cost two opens, two fstats, a pread of the sidecar and eight fcntls each.
const maxIdleOpen = 8192

// Close closes idle files and releases the lock. Handles must be closed first.
func (c *Cache) Close() error {
	c.prefetch.close() // first: its fetches hold objects
	if c.stopScrub != nil {
		close(c.stopScrub)
		<-c.scrubDone
	}
	c.idleMu.Lock()
	c.idleClosed = true
	c.idleMu.Unlock()
	c.idle.Close()
	c.mu.Lock()
	all := make([]*object, 0, len(c.idx.objects))
	for _, o := range c.idx.objects {
		all = append(all, o)
	}
	c.mu.Unlock()
	for _, o := range all {
		o.closeIfIdle()
	}
	// The objects' last write-backs (their last access) go to the index, which
	// commits them before the store closes.
	c.recs.close()
	c.meta.close()
	return c.lock.Close()
}

// Dir returns the cache directory.
func (c *Cache) Dir() string { return c.opts.Dir }

// ChunkSize is the chunk size of new objects (the unit of fetching).
func (c *Cache) ChunkSize() int64 { return c.opts.ChunkSize }

// OriginTimeout is how long a fetch may go without a chunk arriving.
func (c *Cache) OriginTimeout() time.Duration { return c.opts.OriginTimeout }

// Origin returns the origin this cache reads.
func (c *Cache) Origin() origin.Origin { return c.origin.(*meteredOrigin).Origin }

func objectKey(originName, path, version string) string {
	h := sha256.Sum256([]byte(originName + "\x00" + path + "\x00" + version))
	return hex.EncodeToString(h[:16])
}

// isObjectFile reports whether key, in the objects/ subdirectory dir, is the name
// objectPath gives an object: 32 lower-case hex digits, under its first two.
func isObjectFile(dir, key string) bool {
	if len(key) != 32 || !strings.HasPrefix(key, dir) || len(dir) != 2 {
		return false
	}
	for i := 0; i < len(key); i++ {
		if b := key[i]; (b < '0' || b > '9') && (b < 'a' || b > 'f') {
			return false
		}
	}
	return true
}

func (c *Cache) objectPath(key, ext string) string {
	return filepath.Join(c.objDir, key[:2], key+ext)
}

// load rebuilds the index from the sidecars on disk: KEY.meta files, and the object
// index's records for data files without one. It reads headers and bitmaps only;
// chunk data is verified when the object is first opened (invariant 3). A data file
// with neither is a leftover of a crash between its creation and its sidecar's (or
// record's) and goes; so does a record whose data file is gone (a crash between the
// unlink and the record's deletion).
func (c *Cache) load() error {
	var all []*object
	// bare are the keys of data files with no KEY.meta right after them: a
	// directory is walked in lexical order, so KEY.meta follows KEY.data (no stat
	// per object). The walk visits keys in order, as the index stores them, so the
	// two are merged without a map (at a million objects, hashing was a third of
	// a start).
	var bare []string
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
		case (strings.HasSuffix(name, ".data") || strings.HasSuffix(name, ".meta")) &&
			!isObjectFile(filepath.Base(filepath.Dir(p)), name[:len(name)-len(".data")]):
			// Not a name cachegate makes (objectPath): a short one made the
			// merge below slice out of range and crash the start, and a key in
			// the wrong directory made its object's data file an orphan.
			c.log.Warn("removing a file of the cache dir that is not a cache object's", "file", p)
			os.Remove(p)
		case strings.HasSuffix(name, ".data"):
			bare = append(bare, strings.TrimSuffix(name, ".data"))
		case strings.HasSuffix(name, ".meta"):
			key := strings.TrimSuffix(name, ".meta")
			if n := len(bare); n > 0 && bare[n-1] == key {
				bare = bare[:n-1]
			}
			o, err := c.loadObject(key, p)
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
	slices.Sort(bare) // sorted already, unless a stray name broke the order
	// orphan removes a data file that has neither a record nor (checked now, as
	// this is rare) a KEY.meta: a data file whose sidecar never landed.
	orphan := func(key string) {
		if _, err := os.Stat(c.objectPath(key, ".meta")); errors.Is(err, fs.ErrNotExist) {
			os.Remove(c.objectPath(key, ".data"))
		}
	}
	i := 0
	if c.recs != nil {
		var stale []string
		err := c.recs.forEach(func(key string, img []byte) {
			for ; i < len(bare) && bare[i] < key; i++ {
				orphan(bare[i])
			}
			if i == len(bare) || bare[i] != key {
				stale = append(stale, key) // its data file is gone
				return
			}
			i++
			dataPath := c.objectPath(key, ".data")
			o, err := c.objectFromImage(key, img, dataPath, 0)
			if err != nil {
				c.log.Warn("dropping unreadable cache object", "file", dataPath, "record", key, "err", err)
				os.Remove(dataPath)
				stale = append(stale, key)
				return
			}
			o.indexed = true
			all = append(all, o)
		})
		if err != nil {
			c.log.Warn("cannot read the object index of index.db; small objects cached before are fetched again", "err", err)
		}
		for _, key := range stale {
			c.recs.del(key)
		}
	}
	for ; i < len(bare); i++ {
		orphan(bare[i])
	}
	// Most recently used first, sorted by value: comparing through a million
	// object pointers cost seconds in cache misses.
	order := make([]struct {
		at int64
		o  *object
	}, len(all))
	for i, o := range all {
		order[i].at, order[i].o = o.lastAccess.UnixNano(), o
	}
	slices.SortFunc(order, func(a, b struct {
		at int64
		o  *object
	}) int {
		return cmp.Compare(b.at, a.at)
	})
	c.idx.objects = make(map[string]*object, len(all))
	c.idx.byPath = make(map[string]*object, len(all))
	for _, e := range order {
		o := e.o
		if o.Origin == c.oname {
			if _, ok := c.idx.byPath[o.Path]; ok {
				// Two versions of one path: keep the most recently used one.
				c.removeFiles(o)
				continue
			}
			c.idx.byPath[o.Path] = o
		}
		c.idx.objects[o.key] = o
		o.elem = c.idx.lru.PushBack(o)
		c.idx.used += o.diskBytes
		if o.pinned {
			c.idx.pinnedObjects++
		}
	}
	return nil
}

func (c *Cache) loadObject(key, metaPath string) (*object, error) {
	mf, err := openFile(metaPath, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(mf, maxSidecarSize+1))
	mf.Close()
	if err != nil {
		return nil, err
	}
	return c.objectFromImage(key, b, strings.TrimSuffix(metaPath, ".meta")+".data", roundBlock(int64(len(b))))
}

// objectFromImage makes the object of a sidecar image b found on disk, whose data
// file is dataPath; the sidecar itself takes sideBytes on disk (none for a record of
// the object index).
func (c *Cache) objectFromImage(key string, b []byte, dataPath string, sideBytes int64) (*object, error) {
	if len(b) > maxSidecarSize {
		return nil, fmt.Errorf("%w: %d bytes", errBadSidecar, len(b))
	}
	info, hl, err := decodeHeader(b)
	if err != nil {
		return nil, err
	}
	if objectKey(info.Origin, info.Path, info.Version) != key {
		return nil, fmt.Errorf("%w: name does not match contents", errBadSidecar)
	}
	c.inMemory(info)
	if info.Origin == c.oname {
		info.Origin = c.oname // one copy of the name for all of this origin's objects
	}
	if sideBytes == 0 && info.nchunks() == 1 && info.Size <= 1<<20 && b[hl]&1 != 0 {
		// A complete indexed object: its data file was walked, was made by us at
		// the object's size and holds its chunk's blocks (fallocated and written
		// before the bit was set; up to 1 MiB, its extents fit in the inode), so
		// no lstat is needed to count it. At a million objects that lstat was
		// most of a cold start (an inode read each). A crash after a dropped
		// chunk's punch but before its record's commit over-counts it until the
		// first open drops it again (safe for the cap). The first open checks the
		// file (openFile, its size, the re-hash of invariant 3) as for every object.
		o := newObject(c, key, info)
		o.presentChunks, o.presentBytes = 1, info.Size
		o.diskBytes = roundBlock(info.Size)
		return o, nil
	}
	// Lstat, not an open: a restart looks at every object, and the data file is
	// opened (by openFile, with the same checks) only when the object is read.
	var st unix.Stat_t
	if err := unix.Lstat(dataPath, &st); err != nil {
		return nil, err
	}
	if uid := uint32(os.Geteuid()); st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != uid {
		return nil, fmt.Errorf("%s is not a regular file of uid %d (mode %o, owner %d)", dataPath, uid, st.Mode, st.Uid)
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
		if f, err := openFile(dataPath, os.O_RDWR, 0); err == nil {
			for i := 0; i < n; i++ {
				if !present(i) {
					if err := punchHole(f, int64(i)*o.ChunkSize, roundBlock(o.chunkLen(i))); err != nil {
						c.log.Warn("cannot give back blocks of chunks a crash left behind; they stay counted", "file", dataPath, "err", err)
						break
					}
				}
			}
			unix.Fstat(int(f.Fd()), &st)
			f.Close()
		}
	}
	// Count what the disk really holds (more than the present chunks only if the
	// punching above failed).
	o.diskBytes = sideBytes + max(st.Blocks*512, presentDisk)
	return o, nil
}

func roundBlock(n int64) int64 { return (n + blockSize - 1) &^ (blockSize - 1) }

// removeFiles deletes an object's files. Open descriptors and mappings keep working.
// The index record goes after the files, so the index never misses a file on disk.
func (c *Cache) removeFiles(o *object) {
	o.gone.Store(true)
	os.Remove(c.objectPath(o.key, ".meta"))
	os.Remove(c.objectPath(o.key, ".data"))
	if o.indexed {
		c.recs.del(o.key)
	}
}

// removeLocked takes o out of the index and deletes its files. c.mu must be held.
// Handles that still hold o keep their descriptors and mappings (invariant 5).
func (c *Cache) removeLocked(o *object) {
	if o.removed {
		return
	}
	o.removed = true
	if o.pinned {
		c.idx.pinnedObjects--
	}
	delete(c.idx.objects, o.key)
	if c.idx.byPath[o.Path] == o {
		delete(c.idx.byPath, o.Path)
	}
	if o.elem != nil {
		c.idx.lru.Remove(o.elem)
		o.elem = nil
	}
	c.idx.used -= o.diskBytes
	c.removeFiles(o)
}

// reserve makes room for n more bytes, evicting the least recently used objects
// that are neither open nor pinned.
func (c *Cache) reserve(n int64) error { return c.reserveFor(n, true) }

// reserveFor is reserve; without evict it evicts nothing and fails with
// errPrefetchNoRoom when the room is not there (a prefetch never evicts).
func (c *Cache) reserveFor(n int64, evict bool) error {
	var victims []*object
	defer func() {
		for _, o := range victims { // their files may still be open in the idle set
			o.closeIfIdle()
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	need := c.idx.used + c.idx.reserved + n - c.opts.Limit
	short := c.idx.free.shortfall(c.minFree(), c.idx.reserved+n)
	if short > need {
		need = short
	}
	if need > 0 && !evict {
		return errPrefetchNoRoom
	}
	victims, need = c.evictLocked(need)
	if need > 0 {
		return ErrNoSpace
	}
	c.idx.reserved += n
	checkAccountingLocked(c)
	return nil
}

// evictLocked removes least recently used objects that are neither open nor pinned
// until need bytes are freed; it returns them (their files may still be open in the
// idle set: call closeIfIdle after unlocking) and what is still needed. c.mu is held.
func (c *Cache) evictLocked(need int64) ([]*object, int64) {
	var victims []*object
	for e := c.idx.lru.Back(); need > 0 && e != nil; {
		o := e.Value.(*object)
		e = e.Prev()
		if o.refs > 0 || o.pinned {
			continue
		}
		need -= o.diskBytes
		c.log.Debug("evict", "path", o.Path, "bytes", o.diskBytes)
		c.metrics.evicted(o.diskBytes)
		c.removeLocked(o)
		victims = append(victims, o)
		c.idx.free.invalidate() // c.mu is held
	}
	return victims, need
}

func (c *Cache) unreserve(n int64) {
	c.mu.Lock()
	c.idx.reserved -= n
	c.mu.Unlock()
}

// commit turns reserved bytes into used bytes of o, whose chunk of n bytes landed.
func (c *Cache) commit(o *object, reserved, used, n int64) {
	c.mu.Lock()
	c.idx.reserved -= reserved
	if !o.removed {
		c.idx.used += used
		o.diskBytes += used
	}
	o.presentChunks++
	o.presentBytes += n
	checkAccountingLocked(c)
	c.mu.Unlock()
}

// invalidateFree makes the next reserve ask the filesystem for its free space.
func (c *Cache) invalidateFree() {
	c.mu.Lock()
	c.idx.free.invalidate()
	c.mu.Unlock()
}

// roomForOne is the most one object may occupy: the limit less what pinned objects
// hold. A larger object is read through uncached, with no files made for it.
func (c *Cache) roomForOne() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.opts.Limit
	if c.idx.pinnedObjects == 0 {
		return room
	}
	for _, o := range c.idx.objects {
		if o.pinned {
			room -= o.diskBytes
		}
	}
	return room
}

func (c *Cache) minFree() int64 {
	if c.opts.MinFreePct > 0 {
		return int64(c.opts.MinFreePct / 100 * float64(c.idx.free.total()))
	}
	return c.opts.MinFree
}

// freeSpace caches statfs of the cache filesystem for a short time: reserve runs once
// per fetch and must not cost a syscall each time. Guarded by Cache.mu.
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
	return c.idx.used, c.opts.Limit
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
	st := Status{UsedBytes: c.idx.used, LimitBytes: c.opts.Limit, Objects: len(c.idx.objects)}
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

// OnInvalidate registers f to be told the path of every object version the cache
// drops or replaces: by evict or clear (before those return), and by a new version it
// detects (asynchronously, as it may be found while serving a read of that path).
// The mount uses it to drop the kernel's entry, attributes and pages of the path.
// f must not call back into the cache's management methods.
func (c *Cache) OnInvalidate(f func(path string)) {
	c.invMu.Lock()
	c.invalidators = append(c.invalidators, f)
	c.invMu.Unlock()
}

func (c *Cache) notifyInvalidate(paths ...string) {
	c.invMu.Lock()
	fs := c.invalidators
	c.invMu.Unlock()
	for _, p := range paths {
		for _, f := range fs {
			f(p)
		}
	}
}

// changed handles an origin object found changed under a read: its attributes are
// forgotten, and kernels and clients told, so the next open sees the new version.
func (c *Cache) changed(p string) {
	c.meta.invalidate(p)
	go c.notifyInvalidate(p)
}

// Invalidate forgets cached attributes and listings of p and its parent, so the next
// lookup asks the origin.
func (c *Cache) Invalidate(p string) { c.meta.invalidate(p) }

// InvalidateTree forgets the listings and attributes of p and of everything below it,
// in memory and in index.db: the daemon calls it when a route now leads to another
// origin, whose tree the old records do not describe. Cached bytes stay (they are
// keyed by the real origin) and every read stays conditional on the version.
func (c *Cache) InvalidateTree(p string) { c.meta.invalidateTree(p) }

// HasMetadata reports whether the metadata store holds the root's listing from an
// earlier run (of any age): with the origin down, the tree listed then is browsable.
func (c *Cache) HasMetadata() bool {
	_, _, ok := c.meta.store.get(kindList, "")
	return ok
}

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

// LookupListed is Lookup in a listing the caller holds (of directory dir), without
// asking the origin anything: ok is false when the listing has no entry name or
// lacks its exact attributes (an HTML index rounds sizes) and no Stat of it is
// cached. Readers of a whole directory (FUSE's readdirplus, the server's JSON
// listing) use it, so that a listing never costs an origin request, nor a lookup of
// the listing itself, per entry.
func (c *Cache) LookupListed(l *Listing, dir, name string) (e origin.Entry, ok bool) {
	e, ok = l.Get(name)
	if !ok || e.IsDir || e.Exact {
		return e, ok
	}
	return c.meta.stats.Get(origin.Join(dir, name))
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
