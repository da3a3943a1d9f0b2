package cache

// The object index: the sidecars of small objects (one chunk) kept as records
// of index.db instead of KEY.meta files, so that a tiny object takes one block on disk
// (its data file) instead of two (issue 21, goal 4). See doc.go for the layout and
// what holds after a crash.
//
// Design choices and motivation:
//   - A record is the very image a KEY.meta file would hold (sidecar.go's layout):
//     one decoder, one set of checks, and an object moves between the two homes
//     without a second format.
//   - Writes are asynchronous and coalesced: a put or delete replaces whatever waits
//     for the same key, and one goroutine commits what waits in one transaction. A
//     tiny file's fill (create, chunk, last access at close) never waits on an
//     fsync; a crash loses at most the writes not yet committed, which the start-up
//     reconciliation (Cache.load) turns into a refetch, never into wrong bytes.
//   - What waits is bounded by the objects in the cache (one entry per key).
//   - A store that is missing or broken means no records: new small objects get
//     KEY.meta files as big ones do, and an indexed object whose record cannot be
//     read is dropped and fetched again.

import (
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// bucketObjects is the top-level bucket of the object index: object key -> sidecar
// image. No origin is named with a leading zero byte, so it never meets an origin's
// bucket; clearBuckets (the metadata clear) keeps it.
var bucketObjects = []byte("\x00objects")

// objectRecords writes and reads the object index of a metaStore.
type objectRecords struct {
	s *metaStore

	mu sync.Mutex
	// pending are the writes not yet taken by the writer, committing those it is
	// committing: key -> image, nil for a deletion. Guarded by mu.
	pending, committing map[string][]byte
	closed              bool // guarded by mu

	// commitMu makes commits one at a time, so that flush returns only when what
	// waited at its call is committed (the writer's commit in progress included).
	commitMu sync.Mutex

	wake chan struct{} // capacity 1
	stop chan struct{}
	done chan struct{}
}

func newObjectRecords(s *metaStore) *objectRecords {
	if s == nil {
		return nil
	}
	r := &objectRecords{s: s, pending: map[string][]byte{}, wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	go r.writer()
	return r
}

// usable reports whether new objects may keep their sidecar here.
func (r *objectRecords) usable() bool {
	return r != nil && !r.s.broken.Load() && !r.s.closed.Load()
}

// put records img as key's sidecar, unless gone (the object was removed: its late
// write-backs must not bring back a record deleted for it, which may be a new
// object's by then). gone is read under r.mu, and removal sets it before it deletes
// under r.mu, so a put either precedes the deletion or is skipped.
func (r *objectRecords) put(key string, img []byte, gone *atomic.Bool) {
	r.mu.Lock()
	if !r.closed && (gone == nil || !gone.Load()) {
		r.pending[key] = img
	}
	r.mu.Unlock()
	r.poke()
}

// del forgets key's record.
func (r *objectRecords) del(key string) {
	r.mu.Lock()
	if !r.closed {
		r.pending[key] = nil
	}
	r.mu.Unlock()
	r.poke()
}

func (r *objectRecords) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// get returns a copy of key's record: the write waiting for it, else the stored one.
func (r *objectRecords) get(key string) ([]byte, bool) {
	r.mu.Lock()
	img, ok := r.pending[key]
	if !ok {
		img, ok = r.committing[key]
	}
	r.mu.Unlock()
	if ok {
		return append([]byte(nil), img...), img != nil
	}
	return r.stored(key)
}

// stored returns a copy of key's committed record.
func (r *objectRecords) stored(key string) ([]byte, bool) {
	if r.s.broken.Load() {
		return nil, false
	}
	var out []byte
	r.s.guard(func() error {
		return r.s.db.View(func(tx *bolt.Tx) error {
			if b := tx.Bucket(bucketObjects); b != nil {
				if v := b.Get([]byte(key)); v != nil {
					out = append([]byte(nil), v...) // v is valid only in the transaction
				}
			}
			return nil
		})
	})
	return out, out != nil
}

// forget makes sure that no record of key is stored or waits, before a new data file
// is made under key: a record of an earlier object of the same key (its deletion not
// committed yet) would, after a crash, claim the chunks of the new, empty file. A key
// never seen costs one lookup; a key with a record, or whose deletion waits, costs a
// synchronous commit (an evicted version read again).
func (r *objectRecords) forget(key string) {
	r.mu.Lock()
	_, waiting := r.pending[key]
	if !waiting {
		_, waiting = r.committing[key]
	}
	r.mu.Unlock()
	if !waiting {
		if _, ok := r.stored(key); !ok {
			return
		}
	}
	r.del(key)
	r.commit()
}

// writer commits what waits until close, then once more.
func (r *objectRecords) writer() {
	defer close(r.done)
	for {
		select {
		case <-r.wake:
			r.commit()
			pause(r.stop) // gather what comes meanwhile into the next commit
		case <-r.stop:
			r.commit()
			return
		}
	}
}

// commit writes every waiting put and deletion in one transaction.
func (r *objectRecords) commit() {
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	r.mu.Lock()
	batch := r.pending
	if len(batch) == 0 {
		r.mu.Unlock()
		return
	}
	r.pending, r.committing = map[string][]byte{}, batch
	r.mu.Unlock()
	if !r.s.broken.Load() {
		r.s.guard(func() error {
			return r.s.db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists(bucketObjects)
				if err != nil {
					return err
				}
				for k, img := range batch {
					if img == nil {
						err = b.Delete([]byte(k))
					} else {
						err = b.Put([]byte(k), img)
					}
					if err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
	r.mu.Lock()
	r.committing = nil
	r.mu.Unlock()
}

// close commits what waits; later writes are dropped. Call it before the metaStore
// closes.
func (r *objectRecords) close() {
	if r == nil {
		return
	}
	close(r.stop)
	<-r.done
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.commit()
}

// forEach calls fn with every stored record (valid only during the call), in key
// order. It is for the start-up reconciliation, before any write.
func (r *objectRecords) forEach(fn func(key string, img []byte)) error {
	if r.s.broken.Load() {
		return nil
	}
	return r.s.guard(func() error {
		return r.s.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketObjects)
			if b == nil {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				fn(string(k), v)
				return nil
			})
		})
	})
}
