package cache

// The persistent metadata store: origin listings and attributes kept on disk with
// the time they were fetched, so that a restarted mount answers from them until the
// metadata TTL since that fetch, and serves them stale while the origin is down.
//
// Design choices and motivation:
//   - bbolt (go.etcd.io/bbolt), one file, index.db, in the cache dir. A B+tree in one
//     mmapped file with ACID transactions: a crash leaves the last committed state,
//     reads need no start-up scan (RSS grows with what is read, and the kernel may
//     reclaim those pages), and the same file is meant to hold goal 3's persistent
//     object index later (a bucket per origin, a sub-bucket per kind). pebble (an
//     LSM) writes faster but brings compactions and background goroutines that this
//     small, read-mostly store does not need.
//   - A record carries a format byte, so a later layout is told from this one; one
//     that cannot be decoded is a miss, never a crash.
//   - Writes are asynchronous: a listing through the mount never waits on an fsync.
//     Records go through a bounded queue to one writer goroutine that commits them
//     in batches; when the queue is full the record is dropped (and counted): the
//     in-memory caches still hold it, only the restart loses it. Deletions are
//     never dropped: they wait in a map (bounded; when too many wait, the whole
//     origin bucket is cleared instead), and a record queued before a deletion of
//     its path is skipped (sequence numbers), so an invalidated entry cannot come
//     back after a restart. Until the writer has committed a deletion, reads of
//     that path miss.
//   - Bounded: the keys and records kept for an origin are capped (metaStoreCap);
//     past the cap the records fetched longest ago are dropped first (the `age`
//     sub-bucket orders them by fetch time).
//   - Hostile or damaged files: index.db is opened without following a symlink and
//     only as a regular file of this user (openFile); one that bbolt refuses, whose
//     pages reach past the end of the file, or that panics or faults while being
//     read or written is logged once and moved aside to index.db.corrupt, and the
//     cache goes on with a new, empty store (or none, if that fails too).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
	bolt "go.etcd.io/bbolt"
)

const (
	metaStoreFile = "index.db"
	// metaFormat is the first byte of every record.
	metaFormat = 1
	// metaStoreQueue bounds the records waiting for the writer, and
	// metaStoreQueueBytes their bytes: a record of a big directory's listing is
	// megabytes, and 4096 of them would be gigabytes held for the writer.
	metaStoreQueue      = 4096
	metaStoreQueueBytes = 64 << 20
	// metaStoreBatch is the most records one write transaction commits.
	metaStoreBatch = 1024
	// commitGap is the least time between two commits of a writer that has less than
	// a full batch waiting. Each commit fdatasyncs index.db twice, and each of those
	// forces a journal commit of the whole filesystem, during which the cache's own
	// file creations wait: a cold cat of 5,000 small files committed once per file
	// or two (3,140 fdatasyncs) and spent 634 µs in each openat (strace -c, ext4).
	// What waits is served from memory meanwhile, and a crash loses it as it would
	// a moment earlier (the start reconciles the index with the files).
	commitGap = 200 * time.Millisecond
	// maxPendingDels bounds the deletions waiting for the writer; past it the whole
	// origin bucket is cleared instead.
	maxPendingDels = 1 << 16
	// maxMetaStoreCap is the largest metadata cap, whatever the cache size.
	maxMetaStoreCap = 256 << 20
)

// metaStoreCap is the bytes of keys and records the store keeps for an origin: 5% of
// the cache size, at most 256 MiB (about a million entries of 200 bytes).
func metaStoreCap(limit int64) int64 { return min(limit/20, maxMetaStoreCap) }

// Bucket names: one bucket per origin, holding these sub-buckets, keyed by path.
var (
	bucketLists = []byte("lists") // "/"+path -> record of the directory's entries
	bucketStats = []byte("stats") // "/"+path -> record of one entry
	// bucketAge orders the records by fetch time: 8-byte big-endian unix nanos, the
	// kind ('l' or 's'), "/"+path -> nothing. The cap drops from its front.
	bucketAge = []byte("age")
	// keyBytes, in the origin bucket, holds the bytes its records and keys take
	// (8 bytes, big-endian).
	keyBytes = []byte("bytes")
)

const (
	kindList = 'l'
	kindStat = 's'
)

func kindBucket(kind byte) []byte {
	if kind == kindList {
		return bucketLists
	}
	return bucketStats
}

// metaStore is the persistent store of one origin's metadata.
type metaStore struct {
	db     *bolt.DB
	path   string
	bucket []byte // the origin's name
	cap    int64
	log    *slog.Logger

	// broken is set when the file turned out damaged while in use: the store then
	// answers nothing and writes nothing. closed is set by close.
	broken  atomic.Bool
	closed  atomic.Bool
	dropped atomic.Int64 // records dropped because the queue was full
	queued  atomic.Int64 // bytes of the records in queue

	queue chan storeWrite
	wake  chan struct{} // a deletion waits (capacity 1)
	stop  chan struct{}
	done  chan struct{}

	mu sync.Mutex
	// seq orders writes and deletions. Guarded by mu.
	seq uint64
	// dels are the deletions not yet committed: kind+path -> their seq; clearSeq,
	// when not 0, a clear of the whole origin bucket not yet committed. Guarded by mu.
	dels     map[string]uint64
	clearSeq uint64
	// trees are the subtrees forgotten and not yet committed: "/"+path -> their
	// seq (a route of the daemon that now leads elsewhere). Guarded by mu.
	trees map[string]uint64
}

type storeWrite struct {
	kind byte
	path string
	rec  []byte
	seq  uint64
}

// openMetaStore opens (creating it if needed) dir's index.db for originName. A file
// that cannot be used is moved aside and replaced by an empty one; if even that fails
// the store is nil (metadata is then kept in memory only) and the reason logged.
func openMetaStore(dir, originName string, capBytes int64, log *slog.Logger) *metaStore {
	p := filepath.Join(dir, metaStoreFile)
	db, err := openBolt(p)
	if err != nil {
		log.Error("metadata store "+p+" is unreadable: moved aside to "+metaStoreFile+".corrupt, starting with an empty one (delete the .corrupt file when done with it)", "err", err)
		if err := os.Rename(p, p+".corrupt"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Error("metadata store kept in memory only: cannot move "+p+" aside (remove it)", "err", err)
			return nil
		}
		if db, err = openBolt(p); err != nil {
			log.Error("metadata store kept in memory only: cannot create "+p, "err", err)
			return nil
		}
	}
	s := &metaStore{db: db, path: p, bucket: []byte(originName), cap: capBytes, log: log,
		queue: make(chan storeWrite, metaStoreQueue), wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}), dels: map[string]uint64{}, trees: map[string]uint64{}}
	go s.writer()
	return s
}

// openBolt opens a bbolt file and checks that its pages lie within the file, so
// that no read of it faults.
func openBolt(p string) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt: %v", r)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err = bolt.Open(p, 0o600, &bolt.Options{
		// The cache dir's lock is ours, so nobody else holds this file's: a
		// wait here would be a stale lock, not a second owner.
		Timeout:  time.Second,
		OpenFile: openFile,
	})
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(p)
	if err == nil {
		err = db.View(func(tx *bolt.Tx) error {
			if tx.Size() > st.Size() {
				return fmt.Errorf("its pages reach byte %d but the file has %d (truncated)", tx.Size(), st.Size())
			}
			return nil
		})
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// guard runs fn. A panic or memory fault of a damaged file becomes an error, and the
// file is moved aside (the open descriptor stays usable to bbolt; the next start makes
// a new file); any error marks the store broken: it answers and writes nothing more.
func (s *metaStore) guard(fn func() error) (err error) {
	damaged := false
	defer func() {
		if r := recover(); r != nil {
			err, damaged = fmt.Errorf("bbolt: %v", r), true
		}
		if err == nil || s.closed.Load() || !s.broken.CompareAndSwap(false, true) {
			return
		}
		if damaged {
			s.log.Error("metadata store "+s.path+" is damaged: moved aside to "+metaStoreFile+".corrupt; metadata is kept in memory only until a restart", "err", err)
			os.Rename(s.path, s.path+".corrupt")
			return
		}
		s.log.Error("metadata store "+s.path+" failed: metadata is kept in memory only until a restart", "err", err)
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return fn()
}

// storeKey is the key of path p: "/" and p, as bbolt keys cannot be empty (the root).
func storeKey(p string) string { return "/" + p }

// get returns the record of kind for p, if the store holds one.
func (s *metaStore) get(kind byte, p string) (fetched time.Time, entries []origin.Entry, ok bool) {
	if s == nil || s.broken.Load() || s.closed.Load() {
		return time.Time{}, nil, false
	}
	p = storeKey(p)
	s.mu.Lock()
	_, deleted := s.dels[string(kind)+p]
	deleted = deleted || s.clearSeq != 0 || inTrees(s.trees, p) != 0
	s.mu.Unlock()
	if deleted {
		return time.Time{}, nil, false
	}
	var rec []byte
	s.guard(func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			if b := subBucket(tx, s.bucket, kindBucket(kind)); b != nil {
				if v := b.Get([]byte(p)); v != nil {
					rec = append([]byte(nil), v...) // v is valid only in the transaction
				}
			}
			return nil
		})
	})
	if rec == nil {
		return time.Time{}, nil, false
	}
	fetched, entries, err := decodeMetaRecord(rec)
	if err != nil {
		s.log.Warn("metadata store: ignoring an unreadable record", "path", p, "err", err)
		return time.Time{}, nil, false
	}
	return fetched, entries, true
}

func subBucket(tx *bolt.Tx, top, sub []byte) *bolt.Bucket {
	b := tx.Bucket(top)
	if b == nil {
		return nil
	}
	return b.Bucket(sub)
}

// put records entries of kind for p, fetched at fetched, without waiting.
func (s *metaStore) put(kind byte, p string, fetched time.Time, entries []origin.Entry) {
	if s == nil || s.broken.Load() || s.closed.Load() {
		return
	}
	rec := encodeMetaRecord(fetched, entries)
	if s.queued.Add(int64(len(rec))) > metaStoreQueueBytes {
		s.queued.Add(-int64(len(rec)))
		s.dropped.Add(1)
		return
	}
	p = storeKey(p)
	s.mu.Lock()
	s.seq++
	w := storeWrite{kind: kind, path: p, rec: rec, seq: s.seq}
	s.mu.Unlock()
	select {
	case s.queue <- w:
	default:
		s.queued.Add(-int64(len(rec)))
		s.dropped.Add(1)
	}
}

// del forgets the record of kind for p (and any queued before this call).
func (s *metaStore) del(kind byte, p string) {
	if s == nil {
		return
	}
	p = storeKey(p)
	s.mu.Lock()
	s.seq++
	if len(s.dels) >= maxPendingDels {
		s.clearSeq, s.dels = s.seq, map[string]uint64{}
	} else {
		s.dels[string(kind)+p] = s.seq
	}
	s.mu.Unlock()
	s.poke()
}

// delTree forgets the records of p and of everything below it, of both kinds (and
// any queued before this call).
func (s *metaStore) delTree(p string) {
	if s == nil {
		return
	}
	p = storeKey(p)
	s.mu.Lock()
	s.seq++
	if len(s.trees) >= maxPendingDels {
		s.clearSeq, s.dels, s.trees = s.seq, map[string]uint64{}, map[string]uint64{}
	} else {
		s.trees[p] = s.seq
	}
	s.mu.Unlock()
	s.poke()
}

// inTrees returns the seq of the latest of trees that holds the store key p (0: none).
func inTrees(trees map[string]uint64, p string) uint64 {
	var seq uint64
	for t, v := range trees {
		if (p == t || t == "/" || strings.HasPrefix(p, t+"/")) && v > seq {
			seq = v
		}
	}
	return seq
}

// clear forgets every record of the store, of every origin.
func (s *metaStore) clear() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.seq++
	s.clearSeq, s.dels, s.trees = s.seq, map[string]uint64{}, map[string]uint64{}
	s.mu.Unlock()
	s.poke()
}

func (s *metaStore) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// close commits what waits and closes the file.
func (s *metaStore) close() {
	if s == nil {
		return
	}
	s.closed.Store(true)
	close(s.stop)
	<-s.done
	if n := s.dropped.Load(); n > 0 {
		s.log.Info("metadata store: records dropped because its queue was full (a restart asks the origin for them again)", "dropped", n)
	}
	s.db.Close()
}

// writer commits queued records and deletions in batches until close.
func (s *metaStore) writer() {
	defer close(s.done)
	for {
		var batch []storeWrite
		select {
		case w := <-s.queue:
			batch = append(batch, w)
		case <-s.wake:
		case <-s.stop:
			// Drain what waits, then stop.
			for {
				batch = batch[:0]
				for len(batch) < metaStoreBatch {
					select {
					case w := <-s.queue:
						batch = append(batch, w)
						continue
					default:
					}
					break
				}
				s.commit(batch)
				if len(batch) == 0 {
					return
				}
			}
		}
		for len(batch) < metaStoreBatch {
			select {
			case w := <-s.queue:
				batch = append(batch, w)
				continue
			default:
			}
			break
		}
		s.commit(batch)
		if len(batch) < metaStoreBatch {
			pause(s.stop)
		}
	}
}

// pause waits commitGap, or until stop closes.
func pause(stop <-chan struct{}) {
	t := time.NewTimer(commitGap)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
	}
}

// commit writes the pending deletions, then batch, in one transaction.
func (s *metaStore) commit(batch []storeWrite) {
	defer func() { // the records are written (or dropped): their bytes leave the queue
		for _, w := range batch {
			s.queued.Add(-int64(len(w.rec)))
		}
	}()
	s.mu.Lock()
	dels := make(map[string]uint64, len(s.dels))
	for k, v := range s.dels {
		dels[k] = v
	}
	trees := make(map[string]uint64, len(s.trees))
	for k, v := range s.trees {
		trees[k] = v
	}
	clearSeq := s.clearSeq
	s.mu.Unlock()
	if len(batch) == 0 && len(dels) == 0 && len(trees) == 0 && clearSeq == 0 {
		return
	}
	if !s.broken.Load() {
		s.guard(func() error {
			return s.db.Update(func(tx *bolt.Tx) error {
				if clearSeq != 0 {
					if err := clearBuckets(tx); err != nil {
						return err
					}
				}
				ob, err := s.originBucket(tx)
				if err != nil {
					return err
				}
				for k := range dels {
					if err := ob.remove(k[0], k[1:]); err != nil {
						return err
					}
				}
				for t := range trees {
					if err := ob.removeTree(t); err != nil {
						return err
					}
				}
				for _, w := range batch {
					if w.seq < clearSeq || w.seq < dels[string(w.kind)+w.path] || w.seq < inTrees(trees, w.path) {
						continue // deleted after it was queued
					}
					if err := ob.set(w.kind, w.path, w.rec); err != nil {
						return err
					}
				}
				return ob.trim(s.cap)
			})
		})
	}
	// Committed (or the store is broken and answers nothing): reads may see the
	// file again.
	s.mu.Lock()
	for k, v := range dels {
		if s.dels[k] == v {
			delete(s.dels, k)
		}
	}
	for k, v := range trees {
		if s.trees[k] == v {
			delete(s.trees, k)
		}
	}
	if s.clearSeq == clearSeq {
		s.clearSeq = 0
	}
	s.mu.Unlock()
}

// clearBuckets drops every origin's bucket. The object index (bucketObjects) stays:
// its records follow the objects' files, which a metadata clear does not touch.
func clearBuckets(tx *bolt.Tx) error {
	var names [][]byte
	if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		if string(name) == string(bucketObjects) {
			return nil
		}
		names = append(names, append([]byte(nil), name...))
		return nil
	}); err != nil {
		return err
	}
	for _, n := range names {
		if err := tx.DeleteBucket(n); err != nil {
			return err
		}
	}
	return nil
}

// originTx is an origin's buckets within one write transaction.
type originTx struct {
	top, lists, stats, age *bolt.Bucket
	bytes                  int64
}

func (s *metaStore) originBucket(tx *bolt.Tx) (*originTx, error) {
	top, err := tx.CreateBucketIfNotExists(s.bucket)
	if err != nil {
		return nil, err
	}
	o := &originTx{top: top}
	for _, b := range []struct {
		to   **bolt.Bucket
		name []byte
	}{{&o.lists, bucketLists}, {&o.stats, bucketStats}, {&o.age, bucketAge}} {
		if *b.to, err = top.CreateBucketIfNotExists(b.name); err != nil {
			return nil, err
		}
	}
	if v := top.Get(keyBytes); len(v) == 8 {
		o.bytes = int64(binary.BigEndian.Uint64(v))
	}
	return o, nil
}

func (o *originTx) kind(kind byte) *bolt.Bucket {
	if kind == kindList {
		return o.lists
	}
	return o.stats
}

func ageKey(fetched int64, kind byte, p string) []byte {
	k := make([]byte, 9+len(p))
	binary.BigEndian.PutUint64(k, uint64(fetched))
	k[8] = kind
	copy(k[9:], p)
	return k
}

// remove deletes the record of kind for p, and its age key.
func (o *originTx) remove(kind byte, p string) error {
	b := o.kind(kind)
	old := b.Get([]byte(p))
	if old == nil {
		return nil
	}
	if fetched, ok := recordFetched(old); ok {
		if err := o.age.Delete(ageKey(fetched, kind, p)); err != nil {
			return err
		}
	}
	o.bytes -= int64(len(p) + len(old))
	return b.Delete([]byte(p))
}

// removeTree removes the records of both kinds of the store key t and of every key
// below it.
func (o *originTx) removeTree(t string) error {
	for _, kind := range []byte{kindStat, kindList} {
		var keys []string
		c := o.kind(kind).Cursor()
		for k, _ := c.Seek([]byte(t)); k != nil && strings.HasPrefix(string(k), t); k, _ = c.Next() {
			if p := string(k); p == t || t == "/" || strings.HasPrefix(p, t+"/") {
				keys = append(keys, p)
			}
		}
		for _, p := range keys {
			if err := o.remove(kind, p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (o *originTx) set(kind byte, p string, rec []byte) error {
	if err := o.remove(kind, p); err != nil {
		return err
	}
	fetched, _ := recordFetched(rec)
	if err := o.kind(kind).Put([]byte(p), rec); err != nil {
		return err
	}
	o.bytes += int64(len(p) + len(rec))
	return o.age.Put(ageKey(fetched, kind, p), nil)
}

// trim drops the records fetched longest ago until the origin's bytes are within
// capBytes, and records the bytes kept.
func (o *originTx) trim(capBytes int64) error {
	c := o.age.Cursor()
	for k, _ := c.First(); k != nil && o.bytes > capBytes; k, _ = c.First() {
		if len(k) < 9 {
			if err := o.age.Delete(k); err != nil { // not ours: drop it
				return err
			}
			continue
		}
		kind, p := k[8], string(k[9:])
		// Only the record this age key was made for goes (an orphaned key, whose
		// record is gone or newer, just leaves).
		if fetched, ok := recordFetched(o.kind(kind).Get([]byte(p))); ok && fetched == int64(binary.BigEndian.Uint64(k)) {
			if err := o.remove(kind, p); err != nil {
				return err
			}
		}
		if err := o.age.Delete(k); err != nil {
			return err
		}
	}
	o.bytes = max(o.bytes, 0)
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(o.bytes))
	return o.top.Put(keyBytes, v[:])
}

// A record is: the format byte (metaFormat); the fetch time, 8 bytes big-endian
// unix nanoseconds; a uvarint count of entries; then each entry as
//
//	name (uvarint length, bytes), flags (1 byte: 1 dir, 2 exact, 4 has owner,
//	8 has mtime), size (varint), mtime (varint unix nanos, if flag 8), version
//	(uvarint length, bytes), uid, gid, perm (uvarints), symlink (uvarint length,
//	bytes).
//
// A directory's listing has one entry per child; attributes have one entry.
const (
	flagDir = 1 << iota
	flagExact
	flagOwner
	flagMtime
	flagsKnown = flagDir | flagExact | flagOwner | flagMtime
	// minEntryBytes is the fewest bytes an encoded entry takes.
	minEntryBytes = 8
	// maxMetaString bounds each string of a record (names, versions, targets).
	maxMetaString = 64 << 10
)

func encodeMetaRecord(fetched time.Time, entries []origin.Entry) []byte {
	b := make([]byte, 9, 16+len(entries)*48)
	b[0] = metaFormat
	binary.BigEndian.PutUint64(b[1:], uint64(fetched.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		b = appendString(b, e.Name)
		var flags byte
		if e.IsDir {
			flags |= flagDir
		}
		if e.Exact {
			flags |= flagExact
		}
		if e.HasOwner {
			flags |= flagOwner
		}
		if !e.ModTime.IsZero() {
			flags |= flagMtime
		}
		b = append(b, flags)
		b = binary.AppendVarint(b, e.Size)
		if flags&flagMtime != 0 {
			b = binary.AppendVarint(b, e.ModTime.UnixNano())
		}
		b = appendString(b, e.Version)
		b = binary.AppendUvarint(b, uint64(e.Uid))
		b = binary.AppendUvarint(b, uint64(e.Gid))
		b = binary.AppendUvarint(b, uint64(e.Perm&fs.ModePerm))
		b = appendString(b, e.Symlink)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// recordFetched returns a record's fetch time without decoding its entries.
func recordFetched(rec []byte) (int64, bool) {
	if len(rec) < 9 || rec[0] != metaFormat {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(rec[1:])), true
}

var errBadRecord = errors.New("malformed metadata record")

// decodeMetaRecord parses a record, checking every length against what is left of
// it: a hostile or damaged record is an error, never a panic or a large allocation.
func decodeMetaRecord(rec []byte) (time.Time, []origin.Entry, error) {
	if len(rec) < 9 {
		return time.Time{}, nil, errBadRecord
	}
	if rec[0] != metaFormat {
		return time.Time{}, nil, fmt.Errorf("metadata record of format %d, not %d", rec[0], metaFormat)
	}
	fetched := time.Unix(0, int64(binary.BigEndian.Uint64(rec[1:])))
	d := recordDecoder{b: rec[9:]}
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)/minEntryBytes) {
		return time.Time{}, nil, errBadRecord
	}
	entries := make([]origin.Entry, n)
	for i := range entries {
		e := &entries[i]
		e.Name = d.string()
		flags := d.byte()
		if flags&^flagsKnown != 0 {
			return time.Time{}, nil, errBadRecord
		}
		e.IsDir, e.Exact, e.HasOwner = flags&flagDir != 0, flags&flagExact != 0, flags&flagOwner != 0
		e.Size = d.varint()
		if flags&flagMtime != 0 {
			e.ModTime = time.Unix(0, d.varint())
		}
		e.Version = d.string()
		e.Uid, e.Gid = d.uint32(), d.uint32()
		perm := d.uvarint()
		e.Perm = fs.FileMode(perm)
		e.Symlink = d.string()
		if d.err != nil || e.Size < 0 || perm&^uint64(fs.ModePerm) != 0 {
			return time.Time{}, nil, errBadRecord
		}
	}
	if len(d.b) != 0 {
		return time.Time{}, nil, errBadRecord
	}
	return fetched, entries, nil
}

// recordDecoder reads a record's fields; the first error sticks and later reads
// return zero values.
type recordDecoder struct {
	b   []byte
	err error
}

func (d *recordDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *recordDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errBadRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *recordDecoder) uint32() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.err = errBadRecord
		return 0
	}
	return uint32(v)
}

func (d *recordDecoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = errBadRecord
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *recordDecoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) || n > maxMetaString {
		d.err = errBadRecord
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
