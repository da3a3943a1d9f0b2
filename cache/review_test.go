package cache

import (
	"bytes"
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// objectOf returns the object the index holds for p.
func objectOf(t *testing.T, c *Cache, p string) *object {
	t.Helper()
	c.mu.Lock()
	o := c.idx.byPath[p]
	c.mu.Unlock()
	if o == nil {
		t.Fatalf("%s is not cached", p)
	}
	return o
}

// A sidecar write-back that failed (ENOSPC, EIO) left the file out of step with the
// copy in memory: a chunk dropped as bad kept its bit in the file, over a punched
// hole. Reloaded later in the same process, the file was trusted without a re-hash
// (the object was verified and the data file's stamp was ours), and the hole's zeros
// were served. A failed write-back makes the next load re-hash (review finding 5).
func TestFailedSidecarWriteBackIsReverified(t *testing.T) {
	f := newFixture(t)
	want := randomFile(t, f.originDir, "w", 256<<10, 101) // four chunks
	c := f.open()
	defer c.Close()
	readWhole(t, c, "w")
	o := objectOf(t, c, "w")
	waitIdle(t, o)
	o.mu.Lock()
	// From now on every write to the sidecar file fails, as on a failing disk.
	ro, err := os.Open(c.objectPath(o.key, ".meta"))
	if err != nil {
		o.mu.Unlock()
		t.Fatal(err)
	}
	o.side.f.Close()
	o.side.f = ro
	o.dropChunk(1) // as verify or the scrub do with a bad chunk
	o.closeFiles()
	o.mu.Unlock()
	if got := readWhole(t, c, "w"); !bytes.Equal(got, want) {
		t.Fatal("a reloaded sidecar whose write-back failed was trusted: wrong bytes served")
	}
}

// Acquiring an object raced with its eviction and the creation of the same version
// anew: the old, removed object opened the new one's files, and two objects in
// memory then wrote one sidecar and one data file, each from its own copy of the
// bitmap (review finding 6). An object removed before its files were opened must
// not open them.
func TestAcquireRacingEvictAndRecreate(t *testing.T) {
	f := newFixture(t)
	want := randomFile(t, f.originDir, "r", 200_000, 102)
	c := f.open()
	defer c.Close()
	readWhole(t, c, "r")
	old := objectOf(t, c, "r")
	waitIdle(t, old)
	old.closeFilesForTest()
	var fired atomic.Bool
	testHookAcquire = func(o *object) {
		if o != old || !fired.CompareAndSwap(false, true) {
			return
		}
		// Between the reference and the opening of the files: evict the path and
		// read it again, which creates the same version's object anew.
		if _, err := c.Evict(context.Background(), []string{"r"}, false); err != nil {
			t.Error(err)
			return
		}
		if got, err := readAll(c, "r"); err != nil || !bytes.Equal(got, want) {
			t.Errorf("read after the evict: %v", err)
		}
	}
	defer func() { testHookAcquire = nil }()
	h, err := c.Open(context.Background(), "r")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if !fired.Load() {
		t.Fatal("the hook did not run")
	}
	cur := objectOf(t, c, "r")
	if h.o != cur {
		t.Fatalf("the handle holds an object (removed: %v) other than the index's: two objects on one set of files", h.o.removed)
	}
	buf := make([]byte, len(want))
	if n, err := h.ReadAt(context.Background(), buf, 0); n != len(want) || !bytes.Equal(buf, want) {
		t.Fatalf("read %d bytes, %v: wrong bytes", n, err)
	}
}

// Verify held an object's lock while it re-hashed all of it, so readers of a big
// object waited for the whole re-hash. It takes the lock one chunk at a time.
func TestVerifyLetsReadersInBetweenChunks(t *testing.T) {
	f := newFixture(t)
	randomFile(t, f.originDir, "big", 1<<20, 103) // 16 chunks
	c := f.open()
	defer c.Close()
	readWhole(t, c, "big")
	o := objectOf(t, c, "big")
	var between, free atomic.Int64
	testHookBetweenChunks = func(v *object) {
		if v != o {
			return
		}
		between.Add(1)
		if o.mu.TryLock() {
			free.Add(1)
			o.mu.Unlock()
		}
	}
	defer func() { testHookBetweenChunks = nil }()
	res, err := c.Verify(context.Background(), false)
	if err != nil || len(res.Bad) != 0 || res.Objects != 1 {
		t.Fatalf("verify: %+v, %v", res, err)
	}
	if between.Load() < 15 {
		t.Fatalf("hook ran %d times for 16 chunks", between.Load())
	}
	if free.Load() != between.Load() {
		t.Fatalf("the object's lock was held between chunks %d times of %d: readers wait for the whole object", between.Load()-free.Load(), between.Load())
	}
}

// Verify stopped at the first object it could not open, leaving the rest unchecked.
// It reports that object and goes on.
func TestVerifyGoesOnPastAnUnreadableObject(t *testing.T) {
	f := newFixture(t)
	randomFile(t, f.originDir, "a", 100_000, 104)
	want := randomFile(t, f.originDir, "b", 100_000, 105)
	c := f.open()
	defer c.Close()
	readWhole(t, c, "a")
	a := objectOf(t, c, "a")
	waitIdle(t, a)
	a.closeFilesForTest()
	if err := os.Truncate(c.objectPath(a.key, ".meta"), 100); err != nil {
		t.Fatal(err)
	}
	readWhole(t, c, "b")
	b := objectOf(t, c, "b")
	waitIdle(t, b)
	b.closeFilesForTest()
	// A bad chunk in b, the object after a: it must still be found.
	time.Sleep(20 * time.Millisecond) // a timestamp our last write cannot share
	fd, err := os.OpenFile(c.objectPath(b.key, ".data"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd.WriteAt([]byte{want[10] ^ 0xff}, 10)
	fd.Close()
	res, err := c.Verify(context.Background(), false)
	if err != nil {
		t.Fatalf("verify stopped: %v (%+v)", err, res)
	}
	if len(res.Unreadable) != 1 || res.Unreadable[0].Path != "a" || res.Unreadable[0].Error == "" {
		t.Errorf("unreadable %+v, want a", res.Unreadable)
	}
	if res.Objects != 1 || len(res.Bad) != 1 || res.Bad[0].Path != "b" {
		t.Errorf("verify checked %d objects, bad %+v: want b checked and its chunk 0 bad", res.Objects, res.Bad)
	}
	if got := readWhole(t, c, "b"); !bytes.Equal(got, want) {
		t.Fatal("wrong bytes after verify")
	}
}
