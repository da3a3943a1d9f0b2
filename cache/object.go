package cache

// Lock order: Handle.mu, then object.mu, then Cache.mu; object.mu, then object.writeMu.
// Cache.mu is never held while taking an object's mu (closeIfIdle takes o.mu first),
// and no lock is held while waiting for the origin or for a flight.
//
// A reference (refs, under Cache.mu) keeps an object from eviction but not from
// removal (evict, clear, a replaced data file), which may come between taking the
// reference and opening the files under object.mu; the same version may then be made
// anew at the same file names. So openFilesVerify checks o.removed under Cache.mu
// after opening the files and gives them up if o is gone (invariant 6): only the
// object in the index ever opens an object's files by name.

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
	// indexed: the sidecar is a record of the object index (objindex.go), not a
	// KEY.meta file. Set at creation or load, never changed.
	indexed bool
	// gone is set with removed (under c.mu), before the index record is deleted, and
	// read without c.mu by the sidecar's write-backs (objectRecords.put).
	gone atomic.Bool

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
	prefetched    bool // made by a prefetch, not opened by anyone else since

	// Guarded by mu; data and side are set while refs > 0 and, after that, while the
	// object sits in the cache's idle set (so a hot object costs no open or mmap).
	mu      sync.Mutex
	data    *os.File
	side    *sidecar
	mapping []byte // read-only map of the whole data file, made on first use
	// attached is what a reader keeps with the open files (the mount's passthrough
	// backing file), for owner; closed with the files (Handle.Attach).
	attached      io.Closer
	attachedOwner any
	// whole is the object's bytes as an Open got them in one request (fetchWhole),
	// for the first fetch to write instead of asking the origin again.
	whole []byte
	// verified: every chunk in the bitmap had its CRC checked by this process, and
	// bad ones left the bitmap. Never true while a known bad chunk is in place, nor
	// after a failed write-back of the sidecar once its files close (the file on
	// disk may then disagree with what was checked).
	verified bool
	inflight map[int]*flight // made by the first fetch: most objects at rest have none
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
	// stamp is the data file's identity and timestamps as of the last check or
	// write of ours (guarded by writeMu): an open that finds the file otherwise
	// re-hashes it, since someone else wrote it (issue 19, point 4).
	stamp fileStamp
}

// flight is one chunk being fetched; done closes when it is present or failed.
type flight struct {
	done chan struct{}
	err  error
	span *span
	// forwarded: the fetch asks a peer for this chunk (Forwarder), so a peer's
	// request must not wait on this flight. Set at start, never changed.
	forwarded bool
}

// span is one origin request for a run of chunks, shared by their flights. It is
// cancelled when nobody wants it any more: no reader waits for one of its chunks and
// no open handle holds it as readahead. Readahead nobody waits for is bounded by the
// handle's window and ends when that handle closes.
type span struct {
	cancel context.CancelCauseFunc
	// Guarded by the object's mu.
	waiters int  // ensure calls waiting for one of its chunks
	holders int  // handles whose readahead started it, until they close
	done    bool // the fetch returned
}

// errAbandoned ends a fetch that no reader waits for any more. A reader that joined it
// just then starts a new one.
var errAbandoned = errors.New("origin read abandoned: no reader waits for it")

// errStalled ends a fetch that brought no chunk for --origin-timeout.
var errStalled = errors.New("origin read stalled")

// fileStamp identifies a data file's contents as far as stat can tell.
type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime unix.Timespec
}

func stampOf(st *unix.Stat_t) fileStamp {
	return fileStamp{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// noteWriteLocked records the data file's stamp after a write of ours. o.writeMu must
// be held, so no write lands between the write and the record.
func (o *object) noteWriteLocked() {
	var st unix.Stat_t
	if unix.Fstat(int(o.data.Fd()), &st) == nil {
		o.stamp = stampOf(&st)
	}
}

// punchHole gives back the blocks of [off, off+n) of f. A variable so that tests can
// make it fail as it does on filesystems without hole punching.
var punchHole = defaultPunchHole

func defaultPunchHole(f *os.File, off, n int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

func newObject(c *Cache, key string, info *objectInfo) *object {
	return &object{
		c: c, key: key, objectInfo: *info, nchunks: info.nchunks(),
		pinned: info.Pinned, lastAccess: info.LastAccess,
	}
}

func (o *object) chunkLen(i int) int64 {
	return min(o.ChunkSize, o.Size-int64(i)*o.ChunkSize)
}

// complete reports whether every chunk is present. c.mu must be held.
func (o *object) completeLocked() bool { return o.presentChunks == o.nchunks }

// create writes a new object's files: the sparse data file first, then the sidecar
// (by rename, or as its index record for an object of at most one chunk), so a
// sidecar never names a missing data file. Without evict, it fails
// (errPrefetchNoRoom) rather than evict to make room.
func (c *Cache) create(key string, info *objectInfo, evict bool) (*object, error) {
	img, err := encodeHeader(c.onDisk(info))
	if err != nil {
		return nil, err
	}
	// An empty object keeps its sidecar file: the block it takes bounds how many
	// of them the cache (and the index) can hold.
	indexed := info.nchunks() == 1 && c.recs.usable()
	sideBytes := roundBlock(int64(len(img)))
	if indexed {
		// The record lives in index.db, not counted in --cache-size (as the
		// metadata); there is one per object, whose data block the cap counts.
		sideBytes = 0
	}
	// roomForOne walks the objects when some are pinned. One that fits in what
	// is not used fits in what is not pinned: no walk (it was 17% of the CPU of a
	// cold read of 5,000 small files, the walk growing with every object made).
	// With a Keeper (--peer-copy owner), what this member keeps of it: a file
	// larger than the cache whose own spans fit is cached, the rest read through.
	need := roundBlock(c.keptSize(info.Path, info.Version, info.Size)) + sideBytes
	c.mu.Lock()
	fits := need <= c.opts.Limit-c.idx.used
	c.mu.Unlock()
	if !fits {
		if room := c.roomForOne(); need > room {
			return nil, fmt.Errorf("%w: the object (%d bytes) is larger than the cache can hold (%d bytes, pinned objects excluded)", ErrNoSpace, info.Size, room)
		}
	}
	if err := c.reserveFor(sideBytes, evict); err != nil {
		return nil, err
	}
	o := newObject(c, key, info)
	o.indexed = indexed
	o.diskBytes = sideBytes
	fail := func(err error) (*object, error) {
		c.unreserve(o.diskBytes)
		os.Remove(c.objectPath(key, ".data"))
		return nil, err
	}
	if indexed {
		c.recs.forget(key) // no record of an earlier object of key outlives a crash with this file
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
	if indexed {
		c.recs.put(key, img, &o.gone)
		c.mu.Lock()
		c.idx.reserved -= o.diskBytes
		c.idx.used += o.diskBytes
		c.mu.Unlock()
		return o, nil
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
	c.idx.reserved -= o.diskBytes
	c.idx.used += o.diskBytes
	c.mu.Unlock()
	return o, nil
}

// openFiles maps the sidecar and opens the data file. The first open in this process
// re-hashes the present chunks (invariant 3), and so does any later open that finds
// the data file written by someone else since. o.mu must be held.
func (o *object) openFiles() error { return o.openFilesVerify(true) }

// errReplaced reports a data file that is not the one this process checked: another
// inode, another size, or gone. The object is dropped and made anew.
var errReplaced = errors.New("cache data file replaced on disk")

// openFilesVerify opens the files; with check, they are re-hashed when this process
// has not checked them yet or they changed on disk since. `cache verify` opens without
// it, to report what it finds.
func (o *object) openFilesVerify(check bool) error {
	if o.data != nil {
		if check {
			return o.recheckLocked()
		}
		return nil
	}
	c := o.c
	side, where, err := o.loadSidecar()
	// By key, not by path: under a Router the sidecar names the real origin's path.
	if err == nil && (objectKey(side.info.Origin, side.info.Path, side.info.Version) != o.key || side.info.Size != o.Size) {
		side.close()
		err = fmt.Errorf("%w: it names another object", errBadSidecar)
	}
	if err != nil {
		if errors.Is(err, errBadSidecar) {
			c.log.Warn("dropping a cache object whose sidecar is damaged; it will be fetched again", "path", o.Path, "sidecar", where, "err", err)
		}
		return err
	}
	data, err := openFile(c.objectPath(o.key, ".data"), os.O_RDWR, 0)
	if err != nil {
		side.close()
		if no := (*notOursError)(nil); errors.As(err, &no) {
			// An indexed object's data file is not looked at when the cache
			// starts (load's fast path): without this, every open of it failed
			// until someone removed the file.
			err = fmt.Errorf("%w: %v", errReplaced, err)
		}
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(data.Fd()), &st); err != nil || st.Size != o.Size {
		data.Close()
		side.close()
		return fmt.Errorf("%w: %s is %d bytes, object %d", errReplaced, o.Path, st.Size, o.Size)
	}
	// o may have been removed since its reference was taken, and the same version
	// made anew in its place: the files just opened would then be the new object's,
	// and two objects would write them, each from its own copy of the bitmap.
	// Removal unlinks the files under c.mu, so o not removed now means the files
	// opened above were o's own (invariant 6).
	c.mu.Lock()
	removed := o.removed
	c.mu.Unlock()
	if removed {
		data.Close()
		side.close()
		return errRemoved
	}
	o.data, o.side = data, side.sidecar
	o.writeMu.Lock()
	changed := stampOf(&st) != o.stamp
	o.writeMu.Unlock()
	if check && (!o.verified || changed) {
		if o.verified {
			c.log.Warn("cache data file changed on disk since it was checked; re-hashing it", "path", o.Path)
		}
		o.verifyAndStamp()
	}
	return nil
}

// loadedSidecar is a sidecar with the header it was loaded with.
type loadedSidecar struct {
	*sidecar
	info *objectInfo
}

// loadSidecar loads o's sidecar from its file or its index record; where names it
// for the log.
func (o *object) loadSidecar() (loadedSidecar, string, error) {
	c := o.c
	if o.indexed {
		where := "index.db record " + o.key
		img, ok := c.recs.get(o.key)
		if !ok {
			return loadedSidecar{}, where, fmt.Errorf("%w: its index record is missing", errBadSidecar)
		}
		side, info, err := loadIndexedSidecar(c.recs, o.key, &o.gone, img)
		return loadedSidecar{side, info}, where, err
	}
	where := c.objectPath(o.key, ".meta")
	mf, err := openFile(where, os.O_RDWR, 0)
	if err != nil {
		if no := (*notOursError)(nil); errors.As(err, &no) {
			err = fmt.Errorf("%w: %v", errBadSidecar, err)
		}
		return loadedSidecar{}, where, err
	}
	side, info, err := loadSidecar(mf)
	if err != nil {
		mf.Close()
	}
	return loadedSidecar{side, info}, where, err
}

// recheckLocked re-hashes an open object whose data file changed on disk since this
// process last checked or wrote it. The check costs one fstat of the open data file
// per open: what is served is read from that descriptor, so its inode is the one to
// watch. (A file put in its place by rename is not read until the object's files are
// reopened, and openFiles checks the new inode's stamp then.) A stat of the path cost
// 8-20% of the server's 4 KiB requests/s on loopback; the fstat is within noise.
// o.mu must be held, the files open.
func (o *object) recheckLocked() error {
	if !o.verified {
		o.verifyAndStamp()
		return nil
	}
	var st unix.Stat_t
	o.writeMu.Lock() // no write of ours between the stat and the stamp
	err := unix.Fstat(int(o.data.Fd()), &st)
	cur := stampOf(&st)
	same, moved := cur == o.stamp, err != nil || cur.dev != o.stamp.dev || cur.ino != o.stamp.ino || cur.size != o.stamp.size
	o.writeMu.Unlock()
	switch {
	case same:
		return nil
	case moved:
		return fmt.Errorf("%w: %s", errReplaced, o.Path)
	}
	o.c.log.Warn("cache data file changed on disk since it was checked; re-hashing it", "path", o.Path)
	o.verifyAndStamp()
	return nil
}

// verifyAndStamp re-hashes the object, drops bad chunks, and records the data file's
// stamp. o.mu must be held, the files open.
func (o *object) verifyAndStamp() []int {
	bad := o.verify()
	o.verified = true
	o.writeMu.Lock()
	o.noteWriteLocked()
	o.writeMu.Unlock()
	return bad
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
	if o.side.lagging.Load() {
		// The file may claim chunks the copy dropped, or CRCs it never got: the
		// next load must not trust it (invariant 3).
		o.verified = false
		o.c.log.Warn("could not write a cache object's sidecar; it will be re-hashed when next opened (is the disk full or failing?)", "path", o.Path)
	}
	o.side.close()
	if o.attached != nil {
		o.attached.Close()
		o.attached, o.attachedOwner = nil, nil
	}
	o.whole = nil
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

// verify re-hashes every present chunk and drops the ones that do not match from the
// bitmap, punching their blocks out, so that they are refetched and never served
// again. A reader that has the file open by passthrough, or is sending a range it
// found present, may read zeros there instead of the bad bytes until the refetch.
// o.mu must be held and the files open. It returns the bad chunks.
func (o *object) verify() []int {
	buf := getBuf(o.ChunkSize)
	defer putBuf(buf)
	var bad []int
	for i := 0; i < o.nchunks; i++ {
		if o.checkChunk(i, (*buf)[:o.chunkLen(i)]) {
			bad = append(bad, i)
		}
	}
	return bad
}

// checkChunk re-hashes chunk i, if present, into b and drops it when it is bad. It
// reports whether it was. o.mu must be held and the files open.
func (o *object) checkChunk(i int, b []byte) bool {
	if !o.side.has(i) {
		return false
	}
	if _, err := o.data.ReadAt(b, int64(i)*o.ChunkSize); err == nil && checksum(b) == o.side.crc(i) {
		return false
	}
	o.dropChunk(i)
	o.c.log.Warn("dropped corrupt cache chunk; it will be refetched", "path", o.Path, "chunk", i)
	// The kernel may hold the bad bytes in its page cache of the mount, and keeps
	// them across opens of an unchanged version: drop them there too. Not
	// synchronously: this may run inside a FUSE open of this very path.
	go o.c.notifyInvalidate(o.Path)
	return true
}

// dropChunk takes chunk i out of the bitmap and gives its blocks back. o.mu held.
func (o *object) dropChunk(i int) {
	o.side.clear(i)
	n := roundBlock(o.chunkLen(i))
	o.writeMu.Lock()
	err := punchHole(o.data, int64(i)*o.ChunkSize, n)
	o.noteWriteLocked()
	o.writeMu.Unlock()
	if err != nil {
		// The blocks stay allocated, so they stay counted: du never exceeds the count.
		o.c.log.Warn("cannot punch a dropped chunk out of its data file; its blocks stay counted until the object is evicted", "path", o.Path, "chunk", i, "err", err)
	}
	o.c.mu.Lock()
	o.presentChunks--
	o.presentBytes -= o.chunkLen(i)
	if !o.removed && err == nil {
		o.diskBytes -= n
		o.c.idx.used -= n
	}
	o.c.mu.Unlock()
}

// acquire takes a reference and opens the files.
func (c *Cache) acquire(o *object) error { return c.acquireAs(o, openReader) }

// acquireAs is acquire for kind: a prefetch's is no use, so it leaves the object
// where it is in the LRU.
func (c *Cache) acquireAs(o *object, kind openKind) error {
	c.mu.Lock()
	if o.removed {
		c.mu.Unlock()
		return errRemoved
	}
	o.refs++
	if kind != openPrefetch {
		o.lastAccess = time.Now()
		if o.elem != nil {
			c.idx.lru.MoveToFront(o.elem)
		}
		if o.prefetched {
			o.prefetched = false
			c.metrics.prefetchUseful.Add(1)
			c.metrics.prefetchUsefulBytes.Add(o.Size)
		}
	}
	c.mu.Unlock()
	if testHookAcquire != nil {
		testHookAcquire(o)
	}
	o.mu.Lock()
	err := o.openFiles()
	o.mu.Unlock()
	if err != nil {
		c.release(o)
	}
	return err
}

// Test hooks, nil outside tests: testHookAcquire runs in acquire between taking the
// reference and opening the files; testHookBetweenChunks between two chunks of a
// verify.
var testHookAcquire, testHookBetweenChunks func(*object)

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
	if gone {
		o.closeIfIdle()
		return
	}
	// Parked already: the Get counts the use. A Set of a key present is an update
	// that still goes through ristretto's buffer and wakes its goroutine; at every
	// release of a hot small file that was 8% of the mount's CPU.
	c.idleMu.RLock()
	if c.idleClosed {
		c.idleMu.RUnlock()
		o.closeIfIdle()
		return
	}
	_, parked := c.idle.Get(o.key)
	if !parked && !c.idle.Set(o.key, o, 1) {
		c.idleMu.RUnlock()
		o.closeIfIdle()
		return
	}
	c.idleMu.RUnlock()
}

// ensure makes chunks first..last present, joining fetches in flight and starting
// the missing ones. The caller holds a reference. A fetch it waits for is cancelled
// when it leaves (ctx ends) and nobody else wants it.
func (o *object) ensure(ctx context.Context, first, last int) (hit bool, err error) {
	hit = true
	for restarts := 0; ; {
		var wait []*flight
		var joined map[*span]bool // made on the first miss: a hit allocates nothing
		o.mu.Lock()
		if o.side == nil {
			o.mu.Unlock()
			return false, errors.New("cache object closed")
		}
		if origin.NoForward(ctx) && o.forwardedLocked(first, last) {
			o.mu.Unlock()
			return false, errFetchForwarded
		}
		for i := first; i <= last; i++ {
			if o.side.has(i) {
				continue
			}
			if f := o.inflight[i]; f != nil {
				wait = append(wait, f)
				if joined == nil {
					joined = map[*span]bool{}
				}
				if !joined[f.span] {
					joined[f.span] = true
					f.span.waiters++
				}
				continue
			}
			if err := o.recentTimeout(); err != nil {
				o.leaveLocked(joined)
				o.mu.Unlock()
				return false, err
			}
			end := o.runEndLocked(i, last)
			fl, sp := o.startFetchLocked(ctx, i, end)
			sp.waiters++
			if joined == nil {
				joined = map[*span]bool{}
			}
			joined[sp] = true
			wait = append(wait, fl...)
			i = end
		}
		o.mu.Unlock()
		if len(wait) == 0 {
			return hit, nil
		}
		hit = false
		err := awaitFlights(ctx, wait)
		o.mu.Lock()
		o.leaveLocked(joined)
		o.mu.Unlock()
		// A fetch abandoned just as we joined it, or a prefetch's that found no
		// room without evicting: start our own, a few times at most (a prefetch
		// does not: its own would find no room either).
		if errors.Is(err, errAbandoned) && ctx.Err() == nil && restarts < 3 && !prefetching(ctx) {
			restarts++
			continue
		}
		if err != nil {
			return false, err
		}
	}
}

// forwardedLocked reports whether a chunk of first..last is being fetched through a
// peer. o.mu must be held.
func (o *object) forwardedLocked(first, last int) bool {
	if len(o.inflight) == 0 {
		return false
	}
	for i := first; i <= last; i++ {
		if f := o.inflight[i]; f != nil && f.forwarded {
			return true
		}
	}
	return false
}

// awaitFlights waits until every flight is done, one fails, or ctx ends.
func awaitFlights(ctx context.Context, wait []*flight) error {
	for _, f := range wait {
		select {
		case <-f.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if f.err != nil {
			return f.err
		}
	}
	return nil
}

// leaveLocked stops waiting for spans, cancelling those nobody wants any more.
// o.mu must be held.
func (o *object) leaveLocked(spans map[*span]bool) {
	for sp := range spans {
		sp.waiters--
		abandonIfUnwantedLocked(sp)
	}
}

// abandonIfUnwantedLocked cancels sp when nobody waits for it or holds it. The
// object's mu must be held.
func abandonIfUnwantedLocked(sp *span) {
	if sp.waiters == 0 && sp.holders == 0 && !sp.done {
		sp.cancel(errAbandoned)
	}
}

// prefetch starts fetches for the missing chunks of first..last without waiting,
// in spans that run in parallel. It returns the spans it started, held for the
// caller until it lets them go (letGo). ctx is the reader's: the spans keep only its
// bandwidth limit (WithBWLimit), not its cancellation.
func (o *object) prefetch(ctx context.Context, first, last int) []*span {
	last = min(last, o.nchunks-1)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.side == nil || o.recentTimeout() != nil {
		return nil
	}
	var started []*span
	for i := first; i <= last; i++ {
		if o.side.has(i) || o.inflight[i] != nil {
			continue
		}
		end := o.runEndLocked(i, last)
		_, sp := o.startFetchLocked(ctx, i, end)
		sp.holders++
		started = append(started, sp)
		i = end
	}
	return started
}

// runEndLocked returns the last chunk of the span a fetch starting at chunk i (missing
// and not in flight) asks for: it stops at last, at spanChunks chunks, and before a
// chunk present or in flight. ensure and prefetch group chunks by it alike. o.mu
// must be held.
func (o *object) runEndLocked(i, last int) int {
	end := i
	for end < last && end-i+1 < spanChunks && !o.side.has(end+1) && o.inflight[end+1] == nil {
		end++
	}
	return end
}

// letGo drops holds taken by prefetch, cancelling spans nobody else wants, and
// returns the spans of keep that are still running.
func (o *object) letGo(drop, keep []*span) []*span {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, sp := range drop {
		sp.holders--
		abandonIfUnwantedLocked(sp)
	}
	running := keep[:0]
	for _, sp := range keep {
		if sp.done {
			sp.holders--
		} else {
			running = append(running, sp)
		}
	}
	return running
}

// startFetchLocked registers flights for chunks first..last and starts one origin
// request for them, under a context of its own that keeps only the bandwidth limit
// of the reader's (from), whether it is a prefetch's, and the read hints
// (origin.CarryHints: a peer's no-forward mark). o.mu must be held.
func (o *object) startFetchLocked(from context.Context, first, last int) ([]*flight, *span) {
	ctx, cancel := context.WithCancelCause(origin.CarryHints(carryPrefetch(carryBWLimit(context.Background(), from), from), from))
	sp := &span{cancel: cancel}
	var fwd Forwarder // nil for a peer's request: it reads the origin itself
	if !origin.NoForward(from) {
		fwd = o.c.forwarder()
	}
	fl := make([]*flight, last-first+1)
	if o.inflight == nil {
		o.inflight = map[int]*flight{}
	}
	anyForwarded := false
	for i := range fl {
		fl[i] = &flight{done: make(chan struct{}), span: sp}
		if fwd != nil {
			fl[i].forwarded = fwd.Forwards(o.Path, o.Version, int64(first+i)*o.ChunkSize, o.chunkLen(first+i))
			anyForwarded = anyForwarded || fl[i].forwarded
		}
		o.inflight[first+i] = fl[i]
	}
	if fwd != nil && !anyForwarded {
		// Marked as reading from the origin, it must: a retry after a peer came
		// back up would otherwise ask it, with peers' requests waiting here.
		ctx = origin.WithNoForward(ctx)
	}
	o.c.mu.Lock()
	o.refs++ // the fetch keeps the files open and the object unevictable
	o.c.mu.Unlock()
	go o.fetch(ctx, sp, first, last, fl)
	return fl, sp
}

const maxAttempts = 4

// fillBackoff is the pause before a fill's attempt after a failed one: 100 ms, then
// 400 ms, then 1.6 s.
func fillBackoff(attempt int) time.Duration { return time.Duration(1<<(2*attempt)) * 25 * time.Millisecond }

// fetch reads chunks first..last from the origin into the data file, completing each
// chunk's flight as soon as it lands. Transient errors are retried from the first chunk
// not yet written. ctx ends when nobody wants the span (errAbandoned).
func (o *object) fetch(ctx context.Context, sp *span, first, last int, fl []*flight) {
	c := o.c
	defer c.release(o)
	defer func() {
		o.mu.Lock()
		sp.done = true
		o.mu.Unlock()
		sp.cancel(nil)
	}()
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
	// A prefetch never evicts: without room it ends, and a reader that joined it
	// starts its own fetch (errPrefetchNoRoom is an errAbandoned).
	if err := c.reserveFor(reserved, !prefetching(ctx)); err != nil {
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
	o.noteWriteLocked()
	o.writeMu.Unlock()
	if errors.Is(err, syscall.ENOSPC) {
		c.invalidateFree()
		finish(fmt.Errorf("%w (%v)", ErrNoSpace, err))
		return
	}
	buf := getBuf(o.ChunkSize)
	defer putBuf(buf)
	// The fetch gives up when no chunk has arrived for OriginTimeout, retries
	// included: the stall timer cancels ctx, which interrupts a request or body
	// read in progress, and progress winds the timer back.
	stall := time.AfterFunc(c.opts.OriginTimeout, func() { sp.cancel(errStalled) })
	defer stall.Stop()
	// Waiting for --bwlimit's tokens does not count as a stall.
	// One retry policy: this loop's, which resumes (origin.WithCallerRetries).
	rctx := origin.WithCallerRetries(withStallClock(ctx, stall, c.opts.OriginTimeout))
	for attempt := 0; i <= last; attempt++ {
		if attempt > 0 {
			if attempt >= maxAttempts || !origin.Retryable(err) || ctx.Err() != nil {
				break
			}
			c.log.Warn("origin read failed, retrying", "path", o.Path, "offset", int64(i)*o.ChunkSize, "attempt", attempt, "err", err)
			c.metrics.retries[opRead].Add(1)
			if !sleepCtx(ctx, c.retryDelay(attempt)) {
				break
			}
		}
		off := int64(i) * o.ChunkSize
		end := min(o.Size, int64(last+1)*o.ChunkSize)
		var rc io.ReadCloser
		rc, err = o.source(rctx, off, end-off)
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
			c.invalidateFree()
			err = fmt.Errorf("%w (%v)", ErrNoSpace, err)
			break
		}
	}
	if i <= last {
		abandoned := false
		if ctx.Err() != nil {
			if abandoned = errors.Is(context.Cause(ctx), errAbandoned); abandoned {
				err = errAbandoned
			} else {
				err = stalled(c.opts.OriginTimeout, err)
				o.mu.Lock()
				o.timedOut.at, o.timedOut.err = time.Now(), err
				o.mu.Unlock()
			}
		}
		// Give back the blocks allocated for chunks that never arrived.
		off := int64(i) * o.ChunkSize
		o.writeMu.Lock()
		perr := punchHole(o.data, off, spanOff+spanLen-off)
		o.noteWriteLocked()
		o.writeMu.Unlock()
		if perr != nil {
			c.log.Warn("cannot give back the blocks of chunks that never arrived; du may show more than the cache counts until the object is evicted", "path", o.Path, "err", perr)
		}
		if errors.Is(err, origin.ErrChanged) {
			c.changed(o.Path)
		}
		if err != nil && !errors.Is(err, ErrNoSpace) && !abandoned {
			c.log.Error("origin read failed", "path", o.Path, "offset", int64(i)*o.ChunkSize, "err", err)
		}
		finish(err)
	}
}

// timeoutMemory is how long new fetches of an object fail at once after one timed out.
const timeoutMemory = time.Second

// recentTimeout returns the error of a fetch of o that timed out less than
// timeoutMemory ago, or nil. o.mu must be held.
// source returns a reader of the origin's bytes [off, off+n) of this version: the
// bytes an Open got whole when that is the range asked for, else a ranged read.
func (o *object) source(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	o.mu.Lock()
	b := o.whole
	o.whole = nil
	o.mu.Unlock()
	if b != nil && off == 0 && n == int64(len(b)) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	return o.c.origin.ReadRange(ctx, o.Path, o.Version, off, n)
}

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
	o.noteWriteLocked()
	o.writeMu.Unlock()
	if err != nil {
		return err
	}
	checkChunkWritten(o, i, crc)
	o.side.set(i, crc)
	return nil
}

// spliceChunk moves chunk i (len(b) bytes) from the origin into the data file inside
// the kernel, then computes its CRC from the page cache, read back into b.
func (o *object) spliceChunk(fw origin.FileWriter, i int, b []byte) error {
	off := int64(i) * o.ChunkSize
	if err := fw.WriteToFile(o.data, off, int64(len(b)), stampingLocker{o}); err != nil {
		return err
	}
	// Read the chunk back from the page cache for its CRC: copying 1 MiB costs less
	// than mapping it (mmap with MAP_POPULATE, then munmap's TLB shootdown took about
	// 7% more CPU over a cold 512 MiB S3 read here).
	if _, err := o.data.ReadAt(b, off); err != nil {
		return fmt.Errorf("read chunk back for its checksum: %w", err)
	}
	crc := checksum(b)
	checkChunkWritten(o, i, crc)
	o.side.set(i, crc)
	return nil
}

// stampingLocker is o.writeMu for a FileWriter: unlocking records the data file's
// stamp, so the write just made is not taken for someone else's.
type stampingLocker struct{ o *object }

func (l stampingLocker) Lock() { l.o.writeMu.Lock() }

func (l stampingLocker) Unlock() {
	l.o.noteWriteLocked()
	l.o.writeMu.Unlock()
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
// when needed. When the cache cannot hold it (no room, or larger than the cache), the
// handle reads the origin directly. A reader's open may start prefetches of the next
// small files of p's directory (prefetch.go).
func (c *Cache) Open(ctx context.Context, p string) (*Handle, error) {
	c.prefetch.opened(p)
	return c.open(ctx, p, openReader)
}

// openKind tells who opens: a reader, a warm (no prefetch of its own: it has its
// own list and --parallel), or the prefetcher.
type openKind int

const (
	openReader openKind = iota
	openWarm
	// openPrefetch never evicts (its reservations fail instead), leaves a new object
	// at the back of the LRU, and gets no uncached handle.
	openPrefetch
)

func (c *Cache) open(ctx context.Context, p string, kind openKind) (*Handle, error) {
	// Attributes known: the hot path, one lookup. Else a small listed file may come
	// whole in one request; else the origin is asked for its attributes.
	e, known := c.meta.stats.Get(p)
	var whole []byte
	if !known {
		var ok bool
		var wf *wholeFlight
		var err error
		switch e, whole, wf, ok, err = c.fetchWhole(ctx, p); {
		case err != nil:
			e, err = c.meta.statUnanswered(p, err)
		case !ok:
			e, err = c.meta.stat(ctx, p)
		}
		if err != nil {
			return nil, err
		}
		if wf != nil {
			// Its attributes are remembered, and openers that joined the flight
			// let go, only once the bytes are offered to the object below: an
			// open that finds the attributes known must find the bytes too, or it
			// would ask the origin again.
			defer c.wholes.finish(c, p, wf)
		}
	}
	if e.IsDir {
		return nil, fmt.Errorf("%s: %w", p, syscall.EISDIR)
	}
	key := c.keyOf(p, e.Version)
	// An object can vanish between its lookup and its acquisition (evicted, files
	// gone or replaced); each try drops it, so the next one creates it anew. Past
	// maxOpenTries the origin is read uncached rather than trying for ever.
	const maxOpenTries = 3
	for try := 1; ; try++ {
		o, err := c.objectFor(key, p, e, kind)
		if err != nil {
			switch {
			case kind == openPrefetch:
				return nil, err
			case errors.Is(err, errPrefetchNoRoom) && try < maxOpenTries:
				continue // a prefetch's creation we joined: create it ourselves
			case errors.Is(err, ErrNoSpace) || errors.Is(err, syscall.ENOSPC):
				c.noteNoSpace(p, err)
			default:
				c.log.Warn("cannot cache object; reading it from the origin", "path", p, "err", err)
			}
			return &Handle{c: c, path: p, entry: e}, nil
		}
		err = c.acquireAs(o, kind)
		if err == nil {
			if whole != nil {
				o.offerWhole(whole)
			}
			return &Handle{c: c, o: o, path: p, entry: e}, nil
		}
		if !errors.Is(err, errRemoved) && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errBadSidecar) && !errors.Is(err, errReplaced) {
			return nil, err
		}
		c.log.Warn("cache object unusable; dropping it", "path", p, "err", err)
		// Handles that hold it keep their descriptors and what they checked.
		c.mu.Lock()
		c.removeLocked(o)
		c.mu.Unlock()
		o.closeIfIdle()
		if try == maxOpenTries {
			if kind == openPrefetch {
				return nil, err
			}
			c.log.Warn("cache object keeps vanishing; reading it from the origin", "path", p)
			return &Handle{c: c, path: p, entry: e}, nil
		}
	}
}

// fetchWhole is Open's first step for a small file (one chunk at most) that the
// listing at hand describes exactly and whose version is not known yet: one GET
// brings its bytes and its version, where a Stat (HEAD) and then a read (GET) took
// two requests. ok is false when that does not apply or the GET fails; Open then
// asks as usual (and retries), unless the GET went unanswered for the whole origin
// timeout (unanswered): then Open answers from what it last knew of p, or fails,
// rather than wait as long again. Open calls it only when p's attributes are not
// known.
//
// Concurrent openers of p (a reader and the prefetcher, say) share one GET: the
// first gets wf and must finish it (wholeFlights.finish) once it offered the bytes
// to the object; the others wait for that and get the same answer with wf nil.
func (c *Cache) fetchWhole(ctx context.Context, p string) (e origin.Entry, whole []byte, wf *wholeFlight, ok bool, unanswered error) {
	if f := c.wholes.get(p); f != nil {
		return f.wait(ctx)
	}
	// A version of it is cached (after a restart, say): a HEAD tells whether it
	// is still current, where a GET would bring its bytes again.
	c.mu.Lock()
	cached := c.idx.byPath[p] != nil
	c.mu.Unlock()
	if cached {
		return e, nil, nil, false, nil
	}
	l, listed := c.meta.lists.Get(parentDir(p)) // never a listing fetched for this
	if !listed {
		return e, nil, nil, false, nil
	}
	le, found := l.Get(p[strings.LastIndexByte(p, '/')+1:])
	if !found || le.IsDir || le.Symlink != "" || !le.Exact || le.Size <= 0 || le.Size > c.opts.ChunkSize {
		return e, nil, nil, false, nil
	}
	wf, mine := c.wholes.start(p)
	if !mine {
		return wf.wait(ctx)
	}
	origCtx := ctx
	ctx, cancel := context.WithTimeout(ctx, c.opts.OriginTimeout)
	defer cancel()
	e, whole, can, err := c.origin.(*meteredOrigin).GetWhole(ctx, p, c.opts.ChunkSize)
	if !can || err != nil {
		if timedOut(err) && origCtx.Err() == nil {
			// The origin said nothing for a whole timeout: a HEAD now would
			// most likely wait as long again for the same silence.
			wf.unanswered = err
		} else if err != nil {
			c.log.Debug("one-request read of a small file failed; asking again as usual", "path", "/"+p, "err", err)
		}
		c.wholes.finish(c, p, wf) // not ok: the others ask as usual too
		return e, nil, nil, false, wf.unanswered
	}
	wf.e, wf.whole, wf.ok = e, whole, true
	return e, whole, wf, true, nil
}

// timedOut reports whether err is a timeout: the origin gave no answer in time.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// offerWhole hands the object's bytes, got whole by Open, to its first fetch, unless
// they are present or being fetched already.
func (o *object) offerWhole(b []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.side != nil && !o.side.has(0) && o.inflight[0] == nil && int64(len(b)) == o.Size && o.nchunks == 1 {
		o.whole = b
	}
}

// objectFor returns the object of key, creating it (one creator per key: concurrent
// openers of a new version wait for it).
// A prefetch's new object goes to the back of the LRU: the first to go.
func (c *Cache) objectFor(key, p string, e origin.Entry, kind openKind) (*object, error) {
	c.mu.Lock()
	o := c.idx.objects[key]
	c.mu.Unlock()
	if o != nil {
		return o, nil
	}
	v, err, _ := c.creating.Do(key, func() (any, error) {
		c.mu.Lock()
		if o := c.idx.objects[key]; o != nil {
			c.mu.Unlock()
			return o, nil
		}
		c.mu.Unlock()
		info := &objectInfo{Origin: c.oname, Path: p, Version: e.Version, Size: e.Size, ModTime: e.ModTime, ChunkSize: c.opts.ChunkSize, LastAccess: time.Now()}
		o, err := c.create(key, info, kind != openPrefetch)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.idx.objects[key] = o
		if kind == openPrefetch {
			o.elem = c.idx.lru.PushBack(o)
			o.prefetched = true
		} else {
			o.elem = c.idx.lru.PushFront(o)
		}
		old := c.idx.byPath[p]
		if old != nil {
			if old.refs == 0 {
				c.removeLocked(old)
			} else {
				old.doomed = true
			}
		}
		c.idx.byPath[p] = o
		c.mu.Unlock()
		if old != nil {
			// Its files (and what readers keep with them: the mount's backing
			// file holds the unlinked data file in the kernel) close now, not
			// when the idle set evicts it; a held one closes at its last release.
			old.closeIfIdle()
			// A new version replaced a cached one: kernels and clients must drop
			// what they keep of the old one. Not from this goroutine, which may be
			// serving a FUSE request on that very path.
			go c.notifyInvalidate(p)
		}
		return o, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*object), nil
}
