// Package cache is cachegate's persistent, chunked disk cache of origin objects. It
// knows origins (internal/origin) and the local disk, and nothing of FUSE or HTTP: the
// mount and the server both read through a Handle.
//
// # On disk
//
// A cache directory holds a lock file (the pid of the owning process) and, under
// objects/, the files of each object version, named by a hash of origin, path and
// version (KEY): a data file and, for an object of more than one chunk, a sidecar file.
// It is used only when it (and objects/) belongs to this process's user and nobody
// else may write it, and no file in it is opened through a symlink or created where a
// leftover stood (checkDir, openFile): its contents are this user's own.
//
//   - KEY.data: a sparse file as long as the object; only present chunks occupy blocks.
//   - KEY.meta: the sidecar, read into memory while the object is open and written
//     back as chunks land (never mapped: a truncated mapping faults): an immutable,
//     checksummed header (origin, path, version, size, chunk size), then a
//     chunk-presence bitmap and a CRC32C per chunk (see sidecar.go for the layout).
//   - An object of one chunk has no KEY.meta: the same image is a record of
//     index.db's object index (the top-level bucket "\x00objects", KEY -> image;
//     objindex.go), so a tiny object takes one block, its data file, and the cap
//     counts exactly the blocks of the data files and sidecar files (the index, like
//     the rest of index.db, is not counted in --cache-size). A store that is missing
//     or broken gives new small objects KEY.meta files as before. (An empty object
//     keeps its KEY.meta: that block is what bounds how many of them are kept.)
//
// Under a Router (origin.Mux: `cachegate daemon`, many origins under NAME/), the key
// and the sidecar name the real origin and the path inside it, never NAME/…, so one
// directory serves a single-origin mount and the daemon alike (route.go). In memory
// such an object is the cache's own, at NAME/…; its Origin and Path change only in
// Reroute, under Cache.mu, for an object no handle holds.
//
// What holds for the object index after a crash (kill -9) at any point: its writes
// are asynchronous (coalesced per key, committed by one goroutine), and the start-up
// scan reconciles it with the files, so the index never decides what is on disk:
//   - A data file is created before its record is put, and unlinked before its record
//     is deleted. A data file with neither KEY.meta nor a record (a crash before the
//     record's commit) is removed at start; a record whose data file is gone (a crash
//     before the deletion's commit) is deleted at start. No file outlives the scan
//     uncounted, so the hard cap holds.
//   - A data file is made under KEY only when no record of KEY is stored or waits
//     (objectRecords.forget commits a waiting deletion first): a record of an earlier
//     object of the same key (evicted, its deletion not yet committed) would claim
//     the new, empty file's chunk after a crash.
//   - A record lags the object's copy at most by the writes not yet committed: a lost
//     bit means a refetch; blocks of a chunk whose bit was lost are punched out at
//     start (as for KEY.meta); a stale CRC is caught by the re-hash of invariant 3.
//   - A removed object never puts its record again (object.gone, read under the
//     index's lock and set before the deletion), so a late write-back cannot put an
//     old image over the record of the same version made anew.
//   - index.db damaged or lost: it is moved aside and replaced (metastore.go); the
//     small objects whose sidecars it held are removed at start as above and fetched
//     again when read. Big objects keep their KEY.meta and survive.
//   - `cache clear` of the metadata (clearBuckets) keeps the object index.
//   - A complete indexed object's data file is not stat'ed at start: one replaced
//     by a symlink, another user's file or a file of another size is found at the
//     object's first open, which drops it (unlinking the name, never following it)
//     and fetches it again; until then it is counted at the record's size.
//
// Start-up (Cache.load) still walks objects/ (one getdents per directory, no stat of
// a data file's sidecar: KEY.meta follows KEY.data in the walk's order) and reads the
// object index in one sequential pass; a complete indexed object of up to 1 MiB is
// counted from its record without an lstat of its data file, which was most of a
// cold start. Every object is still held in memory (about 0.8-1 KB each), so a
// million objects take ~1 GB: goal 3's lazy index (objects in memory only while in
// use, eviction from an age-ordered bucket) is not built yet.
//
// Beside objects/, index.db is the metadata store (metastore.go), a bbolt file: the
// object index above, and origin listings and
// attributes with the time they were fetched, so a restart neither asks the origin
// again within the metadata TTL nor loses the tree while the origin is down. A bucket
// per origin (named as the origin prints itself) holds the sub-buckets lists and
// stats ("/"+path -> record), age (fetch time, kind, "/"+path -> nothing: the order
// the cap drops in) and the key bytes (what the records and keys take). A record is a
// format byte (1), the fetch time (unix nanoseconds) and the entries (layout in
// metastore.go). It is read on demand, never loaded at start, and is not counted in
// --cache-size: it has its own cap.
//
//   - Bounded: an origin's records and keys take at most min(5% of the cache size,
//     256 MiB); past that the records fetched longest ago go first. (The file keeps
//     the pages it once used, so it can exceed that by bbolt's free pages.)
//   - A record is answered without the origin only within the TTL since its fetch
//     (the TTL left, not a fresh one); older, only while the origin does not answer.
//   - What the cache forgets (invalidate, a changed object, evict, clear) is gone
//     from the store too: reads miss from the moment it is forgotten, the writer
//     deletes it in its next commit, and a record queued before that is not written.
//     Writes are asynchronous (a bounded queue, dropped when full, committed in
//     batches): a crash loses what was not yet committed, at most the last moment's
//     writes and deletions. A lost deletion brings back metadata the cache had
//     forgotten, which is at worst stale: every read stays conditional on the version.
//   - A file that bbolt refuses, whose pages reach past its end, or that panics or
//     faults while used is moved aside to index.db.corrupt (logged) and replaced.
//
// # Invariants
//
//  1. A chunk's bit is set only after its bytes and CRC are written (pwrite, then CRC,
//     then an atomic OR of the bit). Whoever sees the bit may read the bytes.
//  2. Bytes of a version live only in that version's files. A changed origin object
//     gets new files, and every origin read is conditional on the version, so no read
//     combines two versions.
//  3. Nothing is served from disk before this process has checked its CRC: an object's
//     present chunks are re-hashed the first time the process opens it, so corruption
//     or a torn write from before a crash (or a restart) is dropped and refetched.
//     So is a sidecar reloaded in this process after one of its write-backs failed
//     (a full or failing disk): the file may then claim a chunk the copy dropped.
//     A chunk found bad (at that first open, by `cache verify` with or without
//     --repair, by the scrub, or at an open that finds the data file changed on disk
//     since this process checked or wrote it) leaves the bitmap at once; an object is
//     marked verified only when no chunk known bad is left in it.
//  4. Accounted bytes (chunks rounded to 4 KiB, plus sidecar files) never exceed the limit
//     by more than the bytes reserved by fetches in flight; the fetch reserves its bytes
//     before it asks the origin, evicting to make room. The disk keeps MinFree free.
//  5. Files are never truncated or rewritten in place. Eviction unlinks objects that
//     no handle holds, so open files, mappings and sends keep their bytes; pinned
//     objects are never evicted. (Evict, clear and a replaced data file unlink an
//     object also while handles hold it; they keep their descriptors.)
//  6. At most one object in memory has a given object's files open by name: the one
//     in the index. An object removed from the index opens no file by name again
//     (openFilesVerify checks o.removed under Cache.mu after its opens), since the
//     same version may have been made anew at the same names; two objects on one
//     sidecar would each write it from their own copy of the bitmap.
//
// # What "never served" covers
//
// A corrupt chunk is never served to an open made after the corruption was written,
// provided stat can tell: the data file's device, inode, size, mtime or ctime differ
// from what the process recorded after its own last check or write. The scrub
// (--verify-interval) finds what stat cannot (a disk that corrupts in place, a writer
// that restores the timestamps) within one interval. Not covered: a handle already open
// when the bytes change reads what the disk holds (a passthrough open reads the data
// file itself; a daemon read may send a range it found present), and a change written
// in the instant between one of cachegate's own writes into that object and its stat.
//
// # Policy
//
// Disk eviction is least-recently-used over objects that are neither open nor pinned,
// with exact byte accounting. ristretto (TinyLFU) holds the in-memory hot sets: origin
// attributes and directory listings, with the metadata TTL. It is not the disk policy
// because its eviction cannot be vetoed — it would pick open or pinned objects, which
// must stay — and its cost accounting is asynchronous (Set is buffered and may be
// dropped, and its admission may refuse a chunk that is already on disk), so its view
// of the bytes can differ from the disk's and it cannot hold a hard byte cap.
//
// # Fetching
//
// Concurrent readers of one chunk share one origin request (a flight per chunk).
// A sequential reader grows a readahead window, fetched as several parallel range
// requests of up to a span each; the window is topped up a span (or half the window)
// at a time, so small reads never turn readahead into one request per chunk. Transient origin errors are retried with backoff,
// resuming at the first missing chunk; a changed object fails the read (ErrChanged)
// instead of mixing versions. When no room can be made (everything open or pinned, or
// the disk is full), reads go straight to the origin, uncached, as do objects larger
// than the cache less its pinned objects (no files are made for them).
//
// A reader that opens the small files of a directory in turn gets the next ones
// fetched ahead of it (prefetch.go, Options.Prefetch): bounded in count, bytes and
// time, never evicting (a prefetch's reservation fails instead), its objects at the
// back of the LRU. Concurrent openers of a small file, the prefetcher among them,
// share its one GET (wholeFlights) and then its fetch.
//
// A fetch (one origin request for a span of chunks) is cancelled when nobody wants it:
// no reader waits for one of its chunks and no open handle holds it as readahead. A
// reader that gives up (its context ends) leaves; readahead is held by the handle that
// started it, bounded by its window, until that handle closes.
package cache
