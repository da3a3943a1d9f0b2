package cache

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// objectsDu is what du reports for the objects' files (index.db has its own cap).
func objectsDu(t *testing.T, c *Cache) int64 { return duBytes(t, c.objDir) }

// A tiny object takes one block: its data file, with no sidecar file beside it (its
// sidecar is a record of index.db), and the cache counts exactly what du sees; so it
// does after a restart, where it is served without the origin.
func TestTinyObjectTakesOneBlock(t *testing.T) {
	f := newFixture(t)
	want := []byte("twenty-three bytes long")
	if err := os.WriteFile(filepath.Join(f.originDir, "tiny"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	c := f.open()
	if got := readWhole(t, c, "tiny"); !bytes.Equal(got, want) {
		t.Fatalf("read %q", got)
	}
	o := objectOf(t, c, "tiny")
	if _, err := os.Stat(c.objectPath(o.key, ".meta")); !os.IsNotExist(err) {
		t.Errorf("a tiny object has a sidecar file (%v); want its sidecar in index.db", err)
	}
	fi, err := os.Stat(c.objectPath(o.key, ".data"))
	if err != nil {
		t.Fatal(err)
	}
	if blocks := fi.Sys().(*syscall.Stat_t).Blocks; blocks*512 != blockSize {
		t.Errorf("data file takes %d bytes (st_blocks %d), want one block", blocks*512, blocks)
	}
	if used, _ := c.Used(); used != objectsDu(t, c) || used != blockSize {
		t.Errorf("cache counts %d bytes, du %d, want both one block", used, objectsDu(t, c))
	}
	c.Close()

	reads := f.origin.reads.Load()
	c = f.open()
	defer c.Close()
	if used, _ := c.Used(); used != objectsDu(t, c) || used != blockSize {
		t.Errorf("after a restart the cache counts %d bytes, du %d, want both one block", used, objectsDu(t, c))
	}
	if got := readWhole(t, c, "tiny"); !bytes.Equal(got, want) {
		t.Fatalf("read %q after a restart", got)
	}
	if f.origin.reads.Load() != reads {
		t.Error("a tiny object cached before a restart was read from the origin again")
	}
}

// The object index round-trips: small and big objects, a pin and the bytes counted
// come back after a restart as they were.
func TestObjectIndexRoundTrip(t *testing.T) {
	f := newFixture(t)
	small := randomFile(t, f.originDir, "s", 1000, 1)
	empty := randomFile(t, f.originDir, "e", 0, 2)
	big := randomFile(t, f.originDir, "b", 200_000, 3)
	c := f.open()
	for p, want := range map[string][]byte{"s": small, "e": empty, "b": big} {
		if got := readWhole(t, c, p); !bytes.Equal(got, want) {
			t.Fatalf("%s: wrong bytes", p)
		}
	}
	if _, err := c.Warm(t.Context(), []string{"s"}, 1, true, nil); err != nil {
		t.Fatal(err)
	}
	used, _ := c.Used()
	if du := objectsDu(t, c); used != du {
		t.Errorf("cache counts %d bytes, du %d", used, du)
	}
	before := objectStates(t, c)
	c.Close()

	reads := f.origin.reads.Load()
	c = f.open()
	defer c.Close()
	if got, _ := c.Used(); got != used {
		t.Errorf("after a restart the cache counts %d bytes, before %d", got, used)
	}
	after := objectStates(t, c)
	for p, b := range before {
		if a := after[p]; a != b {
			t.Errorf("%s: after a restart %+v, before %+v", p, a, b)
		}
	}
	for p, want := range map[string][]byte{"s": small, "e": empty, "b": big} {
		if got := readWhole(t, c, p); !bytes.Equal(got, want) {
			t.Fatalf("%s: wrong bytes after a restart", p)
		}
	}
	if f.origin.reads.Load() != reads {
		t.Error("objects cached before a restart were read from the origin again")
	}
}

// objState is what a restart must keep of an object.
type objState struct {
	size, cached int64
	complete     bool
	pinned       bool
}

// objectStates returns the state of every cached object of c by path.
func objectStates(t *testing.T, c *Cache) map[string]objState {
	t.Helper()
	m := map[string]objState{}
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, o := range c.idx.byPath {
		m[p] = objState{o.Size, o.presentBytes, o.completeLocked(), o.pinned}
	}
	return m
}

// A damaged index.db is moved aside: the small objects whose sidecars it held are
// dropped with their data files (and fetched again), the big ones stay, and the
// cache counts what du sees.
func TestObjectIndexDamagedIsRebuilt(t *testing.T) {
	f := newFixture(t)
	small := randomFile(t, f.originDir, "s", 1000, 4)
	big := randomFile(t, f.originDir, "b", 200_000, 5)
	c := f.open()
	readWhole(t, c, "s")
	readWhole(t, c, "b")
	c.Close()
	if err := os.WriteFile(filepath.Join(f.cacheDir, "index.db"), bytes.Repeat([]byte("junk"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	c = f.open()
	defer c.Close()
	st := objectStates(t, c)
	if _, ok := st["s"]; ok {
		t.Error("a small object survived the loss of its index record")
	}
	if !st["b"].complete {
		t.Error("a big object (its own sidecar file) was lost with index.db")
	}
	if used, _ := c.Used(); used != objectsDu(t, c) {
		t.Errorf("cache counts %d bytes, du %d: a data file without its record was kept", used, objectsDu(t, c))
	}
	reads := f.origin.reads.Load()
	if got := readWhole(t, c, "b"); !bytes.Equal(got, big) {
		t.Fatal("big: wrong bytes")
	}
	if f.origin.reads.Load() != reads {
		t.Error("the big object was read from the origin again")
	}
	if got := readWhole(t, c, "s"); !bytes.Equal(got, small) {
		t.Fatal("small: wrong bytes after its refetch")
	}
	if used, _ := c.Used(); used != objectsDu(t, c) {
		t.Errorf("after the refetch the cache counts %d bytes, du %d", used, objectsDu(t, c))
	}
}

// After a crash the records and the files agree: a data file whose record never
// landed goes, a record whose data file went is dropped; the count is du's.
func TestObjectIndexAgreesWithFiles(t *testing.T) {
	f := newFixture(t)
	randomFile(t, f.originDir, "a", 1000, 6)
	want := randomFile(t, f.originDir, "b", 1000, 7)
	c := f.open()
	readWhole(t, c, "a")
	readWhole(t, c, "b")
	a := objectOf(t, c, "a")
	stray := c.objectPath("00"+a.key[2:], ".data") // a file whose record never landed
	c.Close()
	if err := os.MkdirAll(filepath.Dir(stray), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stray, bytes.Repeat([]byte{1}, 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(c.objectPath(a.key, ".data")); err != nil { // its record stays
		t.Fatal(err)
	}
	c = f.open()
	st := objectStates(t, c)
	if _, ok := st["a"]; ok {
		t.Error("an object whose data file is gone was kept")
	}
	if !st["b"].complete {
		t.Error("an intact small object was lost")
	}
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Errorf("a data file with no record was kept (%v)", err)
	}
	if used, _ := c.Used(); used != objectsDu(t, c) {
		t.Errorf("cache counts %d bytes, du %d", used, objectsDu(t, c))
	}
	if _, ok := c.recs.get(a.key); ok {
		t.Error("the record of an object whose data file is gone is still read")
	}
	c.Close()
	c = f.open()
	defer c.Close()
	if _, ok := c.recs.get(a.key); ok {
		t.Error("the record of an object whose data file is gone came back after a restart")
	}
	if got := readWhole(t, c, "b"); !bytes.Equal(got, want) {
		t.Fatal("b: wrong bytes")
	}
}

// A removed object's late write-back (its last access, written when its files close)
// must not bring its record back: the same version may be made anew under that key,
// and a stale record would claim chunks the new data file lacks.
func TestRemovedObjectWritesNoRecord(t *testing.T) {
	c, o := idleSmallObject(t, 8)
	if !o.indexed {
		t.Fatal("a one-chunk object is not in the object index")
	}
	o.mu.Lock()
	if o.side == nil {
		o.mu.Unlock()
		t.Fatal("the idle object's files are closed already")
	}
	c.mu.Lock()
	c.removeLocked(o)
	c.mu.Unlock()
	o.side.setLastAccess(time.Now()) // as closeFiles does
	o.mu.Unlock()
	if _, ok := c.recs.get(o.key); ok {
		t.Fatal("a removed object's write-back put its record back")
	}
}

// A record left by an earlier object of a key (evicted, its deletion not committed)
// must be gone before a new data file is made under that key: after a crash it would
// claim the new, empty file's chunk (TestCrashLoop's verify found such a chunk bad).
// create calls forget, which commits the deletion first.
func TestForgetCommitsStaleRecord(t *testing.T) {
	c, o := idleSmallObject(t, 9)
	c.mu.Lock()
	c.removeLocked(o) // files unlinked, the record's deletion waits
	c.mu.Unlock()
	o.closeIfIdle()
	img := encodeHeaderT(t, &o.objectInfo)
	img[len(img)-12] |= 1 // as committed by the earlier object: chunk 0 present
	c.recs.put(o.key, img, nil)
	c.recs.commit()
	if _, ok := c.recs.stored(o.key); !ok {
		t.Fatal("setup: no stored record")
	}
	info := o.objectInfo
	n, err := c.create(o.key, &info, true)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.idx.objects[n.key] = n
	n.elem = c.idx.lru.PushFront(n)
	c.idx.byPath[n.Path] = n
	c.mu.Unlock()
	// What a crash now would leave: the stored record must not claim the chunk.
	c.recs.commitMu.Lock() // no commit of what create queued
	stored, ok := c.recs.stored(o.key)
	c.recs.commitMu.Unlock()
	if ok {
		if _, hl, err := decodeHeader(stored); err == nil && stored[hl]&1 != 0 {
			t.Fatal("a new data file was made while an earlier object's record claiming its chunk was stored")
		}
	}
}

func encodeHeaderT(t *testing.T, info *objectInfo) []byte {
	t.Helper()
	b, err := encodeHeader(info)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// idleSmallObject reads a 1000-byte file "r" (random from seed) through a new cache
// and returns the cache and its object once idle; the cache closes with the test.
func idleSmallObject(t *testing.T, seed uint64) (*Cache, *object) {
	t.Helper()
	f := newFixture(t)
	randomFile(t, f.originDir, "r", 1000, seed)
	c := f.open()
	t.Cleanup(func() { c.Close() })
	readWhole(t, c, "r")
	o := objectOf(t, c, "r")
	waitIdle(t, o)
	return c, o
}
