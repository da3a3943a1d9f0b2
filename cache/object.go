package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
	"golang.org/x/sys/unix"
)

// object is one version of one origin object in the cache.
type object struct {
	c   *Cache
	key string
	objectInfo
	nchunks int

	// Guarded by c.mu.
	refs          int
	elem          *list.Element
	pinned        bool
	lastAccess    time.Time
	presentChunks int
	presentBytes  int64
	diskBytes     int64
	removed       bool // out of the index, files unlinked
	doomed        bool // superseded by a newer version: remove at last release

	// Guarded by mu; data and side are set while refs > 0 and, after that, while the
	// object sits in the cache's idle set (so a hot object costs no open or mmap).
	mu       sync.Mutex
	data     *os.File
	side     *sidecar
	mapping  []byte // read-only map of the whole data file, made on first use
	verified bool   // every present chunk's CRC checked by this process
	inflight map[int]*flight
	// timedOut remembers the last fetch of this object that ran out of
	// --origin-timeout, so that for timeoutMemory new fetches fail at once: the
	// kernel retries a failed readahead with a read of its own, often of another
	// chunk, and a blackholed origin otherwise cost a reader two timeouts or more.
	timedOut struct {
		at  time.Time
		err error
	}

	// writeMu serialises writes to the data file, spliced ones included. ext4 takes
	// the inode's rwsem for every buffered write and fallocate, so parallel fetches
	// of one object never wrote in parallel anyway; they spun on that lock in the
	// kernel instead (rwsem_spin_on_owner was 15% of CPU in a cold read, and 20% of
	// a fill's samples on 2026-12-02 while spliced writes went without this mutex).
	// A Go mutex makes the waiters sleep while their network reads carry on.
	writeMu sync.Mutex
}

// flight is one chunk being fetched; done closes when it is present or failed.
type flight struct {
	done chan struct{}
	err  error
}

func newObject(c *Cache, key string, info *objectInfo) *object {
	return &object{
		c: c, key: key, objectInfo: *info, nchunks: info.nchunks(),
		pinned: info.Pinned, lastAccess: info.LastAccess,
		inflight: map[int]*flight{},
	}
}

func (o *object) chunkLen(i int) int64 {
	return min(o.ChunkSize, o.Size-int64(i)*o.ChunkSize)
}

// complete reports whether every chunk is present. c.mu must be held.
func (o *object) completeLocked() bool { return o.presentChunks == o.nchunks }

// create writes a new object's files: the sparse data file first, then the sidecar
// by rename, so a sidecar never names a missing data file.
func (c *Cache) create(key string, info *objectInfo) (*object, error) {
	img, err := encodeHeader(info)
	if err != nil {
		return nil, err
	}
	if err := c.reserve(roundBlock(int64(len(img)))); err != nil {
		return nil, err
	}
	o := newObject(c, key, info)
	o.diskBytes = roundBlock(int64(len(img)))
	fail := func(err error) (*object, error) {
		c.unreserve(o.diskBytes)
		os.Remove(c.objectPath(key, ".data"))
		return nil, err
	}
	dataPath := c.objectPath(key, ".data")
	if err := os.MkdirAll(filepath.Dir(dataPath), 0o700); err != nil {
		return fail(err)
	}
	f, err := createFile(dataPath)
	if err != nil {
		return fail(err)
	}
	err = f.Truncate(info.Size)
	f.Close()
	if err != nil {
		return fail(err)
	}
	tmp := c.objectPath(key, ".meta.tmp")
	if f, err = createFile(tmp); err == nil {
		_, err = f.Write(img)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		os.Remove(tmp)
		return fail(err)
	}
	if err := os.Rename(tmp, c.objectPath(key, ".meta")); err != nil {
		os.Remove(tmp)
		return fail(err)
	}
	c.mu.Lock()
	c.reserved -= o.diskBytes
	c.used += o.diskBytes
	c.mu.Unlock()
	return o, nil
}

// openFiles maps the sidecar and opens the data file, verifying the chunks the first
// time this process opens the object (invariant 3). o.mu must be held.
func (o *object) openFiles() error { return o.openFilesVerify(true) }

// openFilesVerify opens the files; with check, the first open in this process
// re-hashes the present chunks and drops bad ones. `cache verify` opens without it, to
// report before it repairs.
func (o *object) openFilesVerify(check bool) error {
	if o.data != nil {
		return nil
	}
	c := o.c
	mf, err := openFile(c.objectPath(o.key, ".meta"), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	side, info, err := loadSidecar(mf)
	if err == nil && (info.Path != o.Path || info.Version != o.Version || info.Size != o.Size) {
		err = fmt.Errorf("%w: it names another object", errBadSidecar)
	}
	if err != nil {
		mf.Close()
		if errors.Is(err, errBadSidecar) {
			c.log.Warn("dropping a cache object whose sidecar is damaged; it will be fetched again", "path", o.Path, "file", mf.Name(), "err", err)
		}
		return err
	}
	data, err := openFile(c.objectPath(o.key, ".data"), os.O_RDWR, 0)
	if err != nil {
		side.close()
		return err
	}
	o.data, o.side = data, side
	if check && !o.verified {
		o.verify(true, nil)
		o.verified = true
	}
	return nil
}

// closeFiles closes the files and releases the data mapping. o.mu must be held, refs zero.
func (o *object) closeFiles() {
	if o.data == nil {
		return
	}
	o.c.mu.Lock()
	la := o.lastAccess
	o.c.mu.Unlock()
	o.side.setLastAccess(la)
	o.side.close()
	if o.mapping != nil {
		unix.Munmap(o.mapping)
		o.mapping = nil
	}
	o.data.Close()
	o.data, o.side = nil, nil
}

// closeIfIdle closes the files of an object nobody holds.
func (o *object) closeIfIdle() {
	o.mu.Lock()
	o.c.mu.Lock()
	idle := o.refs == 0
	o.c.mu.Unlock()
	if idle {
		o.closeFiles()
	}
	o.mu.Unlock()
}

// errRemoved reports an object evicted between its lookup and its acquisition.
var errRemoved = errors.New("cache object was evicted")

// BadChunk is a chunk whose bytes did not match their CRC.
type BadChunk struct {
	Path  string `json:"path"`
	Chunk int    `json:"chunk"`
}

// verify re-hashes every present chunk and, when repair is set, drops the ones that do
// not match, punching their blocks out so they are refetched. o.mu must be held and
// the files open. It reports each bad chunk to report when that is not nil.
func (o *object) verify(repair bool, report func(BadChunk)) int {
	buf := getBuf(o.ChunkSize)
	defer putBuf(buf)
	bad := 0
	for i := 0; i < o.nchunks; i++ {
		if !o.side.has(i) {
			continue
		}
		n := o.chunkLen(i)
		b := (*buf)[:n]
		if _, err := o.data.ReadAt(b, int64(i)*o.ChunkSize); err == nil && checksum(b) == o.side.crc(i) {
			continue
		}
		bad++
		if repair {
			o.dropChunk(i)
			o.c.log.Warn("dropped corrupt cache chunk; it will be refetched", "path", o.Path, "chunk", i)
		}
		if report != nil {
			report(BadChunk{Path: o.Path, Chunk: i})
		}
	}
	return bad
}

func (o *object) dropChunk(i int) {
	o.side.clear(i)
	n := roundBlock(o.chunkLen(i))
	unix.Fallocate(int(o.data.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(i)*o.ChunkSize, n)
	o.c.mu.Lock()
	o.presentChunks--
	o.presentBytes -= o.chunkLen(i)
	if !o.removed {
		o.diskBytes -= n
		o.c.used -= n
	}
	o.c.mu.Unlock()
}

// acquire takes a reference and opens the files.
func (c *Cache) acquire(o *object) error {
	c.mu.Lock()
	if o.removed {
		c.mu.Unlock()
		return errRemoved
	}
	o.refs++
	o.lastAccess = time.Now()
	if o.elem != nil {
		c.lru.MoveToFront(o.elem)
	}
	c.mu.Unlock()
	o.mu.Lock()
	err := o.openFiles()
	o.mu.Unlock()
	if err != nil {
		c.release(o)
	}
	return err
}

// release drops a reference. The last one parks the object in the idle set with its
// files open, or removes it when a newer version superseded it.
func (c *Cache) release(o *object) {
	c.mu.Lock()
	o.refs--
	last := o.refs == 0
	if last && o.doomed {
		c.removeLocked(o)
	}
	gone := o.removed
	c.mu.Unlock()
	if !last {
		return
	}
	if gone || !c.idle.Set(o.key, o, 1) {
		o.closeIfIdle()
	}
}

// ensure makes chunks first..last present, joining fetches in flight and starting
// the missing ones. The caller holds a reference.
func (o *object) ensure(ctx context.Context, first, last int) (hit bool, err error) {
	hit = true
	for {
		var wait []*flight
		o.mu.Lock()
		if o.side == nil {
			o.mu.Unlock()
			return false, errors.New("cache object closed")
		}
		for i := first; i <= last; i++ {
			if o.side.has(i) {
				continue
			}
			if f := o.inflight[i]; f != nil {
				wait = append(wait, f)
				continue
			}
			if err := o.recentTimeout(); err != nil {
				o.mu.Unlock()
				return false, err
			}
			end := i
			for end < last && end-i+1 < spanChunks && !o.side.has(end+1) && o.inflight[end+1] == nil {
				end++
			}
			wait = append(wait, o.startFetchLocked(i, end)...)
			i = end
		}
		o.mu.Unlock()
		if len(wait) == 0 {
			return hit, nil
		}
		hit = false
		for _, f := range wait {
			select {
			case <-f.done:
			case <-ctx.Done():
				return false, ctx.Err()
			}
			if f.err != nil {
				return false, f.err
			}
		}
	}
}

// prefetch starts fetches for the missing chunks of first..last without waiting,
// in spans that run in parallel.
func (o *object) prefetch(first, last int) {
	last = min(last, o.nchunks-1)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.side == nil || o.recentTimeout() != nil {
		return
	}
	for i := first; i <= last; i++ {
		if o.side.has(i) || o.inflight[i] != nil {
			continue
		}
		end := i
		for end < last && end-i+1 < spanChunks && !o.side.has(end+1) && o.inflight[end+1] == nil {
			end++
		}
		o.startFetchLocked(i, end)
		i = end
	}
}

// startFetchLocked registers flights for chunks first..last and starts one origin
// request for them. o.mu must be held.
func (o *object) startFetchLocked(first, last int) []*flight {
	fl := make([]*flight, last-first+1)
	for i := range fl {
		fl[i] = &flight{done: make(chan struct{})}
		o.inflight[first+i] = fl[i]
	}
	o.c.mu.Lock()
	o.refs++ // the fetch keeps the files open and the object unevictable
	o.c.mu.Unlock()
	go o.fetch(first, last, fl)
	return fl
}

const maxAttempts = 4

// fetch reads chunks first..last from the origin into the data file, completing each
// chunk's flight as soon as it lands. Transient errors are retried from the first chunk
// not yet written.
func (o *object) fetch(first, last int, fl []*flight) {
	c := o.c
	defer c.release(o)
	var reserved int64
	for i := first; i <= last; i++ {
		reserved += roundBlock(o.chunkLen(i))
	}
	i := first
	finish := func(err error) {
		if errors.Is(err, ErrNoSpace) {
			c.noteNoSpace(o.Path, err)
		}
		for ; i <= last; i++ {
			o.mu.Lock()
			delete(o.inflight, i)
			o.mu.Unlock()
			fl[i-first].err = err
			close(fl[i-first].done)
		}
	}
	if err := c.reserve(reserved); err != nil {
		finish(err)
		return
	}
	defer func() { c.unreserve(reserved) }()
	// Allocate the span's blocks before writing: ext4 writes into allocated
	// (unwritten) extents about five times faster than into holes, where every page
	// takes a delayed-allocation reservation (dd of 1 GiB here: 0.14 s vs 0.71 s).
	// The bytes are already reserved, so du never shows more than accounted.
	spanOff := int64(first) * o.ChunkSize
	spanLen := min(o.Size, int64(last+1)*o.ChunkSize) - spanOff
	o.writeMu.Lock()
	err := unix.Fallocate(int(o.data.Fd()), 0, spanOff, spanLen)
	o.writeMu.Unlock()
	if errors.Is(err, syscall.ENOSPC) {
		c.free.invalidate()
		finish(fmt.Errorf("%w (%v)", ErrNoSpace, err))
		return
	}
	buf := getBuf(o.ChunkSize)
	defer putBuf(buf)
	// The fetch gives up when no chunk has arrived for OriginTimeout, retries
	// included: the stall timer cancels ctx, which interrupts a request or body
	// read in progress, and progress winds the timer back.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stall := time.AfterFunc(c.opts.OriginTimeout, cancel)
	defer stall.Stop()
	for attempt := 0; i <= last; attempt++ {
		if attempt > 0 {
			if attempt >= maxAttempts || !origin.Retryable(err) || ctx.Err() != nil {
				break
			}
			c.log.Warn("origin read failed, retrying", "path", o.Path, "offset", int64(i)*o.ChunkSize, "attempt", attempt, "err", err)
			c.metrics.retries[opRead].Add(1)
			if !sleepCtx(ctx, time.Duration(1<<(2*attempt))*25*time.Millisecond) {
				break
			}
		}
		off := int64(i) * o.ChunkSize
		end := min(o.Size, int64(last+1)*o.ChunkSize)
		var rc io.ReadCloser
		rc, err = c.origin.ReadRange(ctx, o.Path, o.Version, off, end-off)
		if err != nil {
			continue
		}
		fw, _ := rc.(origin.FileWriter)
		for ; i <= last; i++ {
			n := o.chunkLen(i)
			if fw != nil {
				err = o.spliceChunk(fw, i, (*buf)[:n])
			} else {
				b := (*buf)[:n]
				if _, err = io.ReadFull(rc, b); err == nil {
					err = o.writeChunk(i, b)
				}
			}
			if err != nil {
				break
			}
			c.count(func(s *Stats) { s.BytesFetched += n })
			rb := roundBlock(n)
			reserved -= rb
			c.commit(o, rb, rb, n)
			o.mu.Lock()
			delete(o.inflight, i)
			o.mu.Unlock()
			close(fl[i-first].done)
			attempt = 0 // progress renews the retry budget and the stall timer
			stall.Reset(c.opts.OriginTimeout)
		}
		rc.Close()
		if errors.Is(err, syscall.ENOSPC) {
			c.free.invalidate()
			err = fmt.Errorf("%w (%v)", ErrNoSpace, err)
			break
		}
	}
	if i <= last {
		if ctx.Err() != nil {
			err = stalled(c.opts.OriginTimeout, err)
			o.mu.Lock()
			o.timedOut.at, o.timedOut.err = time.Now(), err
			o.mu.Unlock()
		}
		// Give back the blocks allocated for chunks that never arrived.
		off := int64(i) * o.ChunkSize
		unix.Fallocate(int(o.data.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, spanOff+spanLen-off)
		if errors.Is(err, origin.ErrChanged) {
			c.meta.invalidate(o.Path)
		}
		if err != nil && !errors.Is(err, ErrNoSpace) {
			c.log.Error("origin read failed", "path", o.Path, "offset", int64(i)*o.ChunkSize, "err", err)
		}
		finish(err)
	}
}

// timeoutMemory is how long new fetches of an object fail at once after one timed out.
const timeoutMemory = time.Second

// recentTimeout returns the error of a fetch of o that timed out less than
// timeoutMemory ago, or nil. o.mu must be held.
func (o *object) recentTimeout() error {
	if t := o.timedOut; t.err != nil && time.Since(t.at) < timeoutMemory {
		return t.err
	}
	return nil
}

// ErrOriginTimeout reports an origin that sent nothing useful for --origin-timeout.
var ErrOriginTimeout = errors.New("origin timeout")

// stalled describes a fetch abandoned after timeout without progress; last is the
// error of the last attempt, which says why.
func stalled(timeout time.Duration, last error) error {
	if last == nil || errors.Is(last, context.Canceled) {
		return fmt.Errorf("%w: no data for %v (raise --origin-timeout if the origin is just slow)", ErrOriginTimeout, timeout)
	}
	return fmt.Errorf("%w: no data for %v, last error: %v", ErrOriginTimeout, timeout, last)
}

// sleepCtx sleeps for d unless ctx ends first; it reports whether it slept.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (o *object) writeChunk(i int, b []byte) error {
	crc := checksum(b)
	// The files stay open while the fetch holds its reference.
	o.writeMu.Lock()
	_, err := o.data.WriteAt(b, int64(i)*o.ChunkSize)
	o.writeMu.Unlock()
	if err != nil {
		return err
	}
	o.side.set(i, crc)
	return nil
}

// spliceChunk moves chunk i (len(b) bytes) from the origin into the data file inside
// the kernel, then computes its CRC from the page cache, read back into b.
func (o *object) spliceChunk(fw origin.FileWriter, i int, b []byte) error {
	off := int64(i) * o.ChunkSize
	if err := fw.WriteToFile(o.data, off, int64(len(b)), &o.writeMu); err != nil {
		return err
	}
	// Read the chunk back from the page cache for its CRC: copying 1 MiB costs less
	// than mapping it (mmap with MAP_POPULATE, then munmap's TLB shootdown took about
	// 7% more CPU over a cold 512 MiB S3 read here).
	if _, err := o.data.ReadAt(b, off); err != nil {
		return fmt.Errorf("read chunk back for its checksum: %w", err)
	}
	o.side.set(i, checksum(b))
	return nil
}

var bufPools sync.Map // chunk size -> *sync.Pool of *[]byte

func getBuf(size int64) *[]byte {
	p, _ := bufPools.LoadOrStore(size, &sync.Pool{New: func() any {
		b := make([]byte, size)
		return &b
	}})
	return p.(*sync.Pool).Get().(*[]byte)
}

func putBuf(b *[]byte) {
	p, _ := bufPools.Load(int64(cap(*b)))
	if p != nil {
		p.(*sync.Pool).Put(b)
	}
}

// Open returns a handle on the current version of file p, creating its cache object
// when needed. When the cache cannot hold it, the handle reads the origin directly.
func (c *Cache) Open(ctx context.Context, p string) (*Handle, error) {
	e, err := c.meta.stat(ctx, p)
	if err != nil {
		return nil, err
	}
	if e.IsDir {
		return nil, fmt.Errorf("%s: %w", p, syscall.EISDIR)
	}
	key := objectKey(c.oname, p, e.Version)
	c.mu.Lock()
	o := c.objects[key]
	c.mu.Unlock()
	if o == nil {
		// One creator per key: concurrent openers of a new version wait for it.
		v, err, _ := c.creating.Do(key, func() (any, error) {
			c.mu.Lock()
			if o := c.objects[key]; o != nil {
				c.mu.Unlock()
				return o, nil
			}
			c.mu.Unlock()
			info := &objectInfo{Origin: c.oname, Path: p, Version: e.Version, Size: e.Size, ModTime: e.ModTime, ChunkSize: c.opts.ChunkSize, LastAccess: time.Now()}
			o, err := c.create(key, info)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			c.objects[key] = o
			o.elem = c.lru.PushFront(o)
			if old := c.byPath[p]; old != nil {
				if old.refs == 0 {
					c.removeLocked(old)
				} else {
					old.doomed = true
				}
			}
			c.byPath[p] = o
			c.mu.Unlock()
			return o, nil
		})
		if err != nil {
			if errors.Is(err, ErrNoSpace) || errors.Is(err, syscall.ENOSPC) {
				c.noteNoSpace(p, err)
			} else {
				c.log.Warn("cannot cache object; reading it from the origin", "path", p, "err", err)
			}
			return &Handle{c: c, path: p, entry: e}, nil
		}
		o = v.(*object)
	}
	if err := c.acquire(o); err != nil {
		if errors.Is(err, errRemoved) {
			return c.Open(ctx, p)
		}
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errBadSidecar) {
			// Evicted between lookup and open, or damaged: start over once.
			c.mu.Lock()
			if o.refs == 0 {
				c.removeLocked(o)
			}
			c.mu.Unlock()
			return c.Open(ctx, p)
		}
		return nil, err
	}
	return &Handle{c: c, o: o, path: p, entry: e}, nil
}
