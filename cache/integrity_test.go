package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
)

// flipByte flips one byte of the only .data file under dir through its own descriptor,
// as another process (or dd conv=notrunc) would.
func flipByte(t *testing.T, dir string, off int64) {
	t.Helper()
	var data []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".data") {
			data = append(data, p)
		}
		return nil
	})
	if len(data) != 1 {
		t.Fatalf("%d data files, want 1", len(data))
	}
	time.Sleep(20 * time.Millisecond) // a timestamp the last write of ours cannot share
	fd, err := os.OpenFile(data[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	b := []byte{0}
	fd.ReadAt(b, off)
	b[0] ^= 0xff
	if _, err := fd.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// Issue 19, point 4: a data file written by another process after this process
// verified the object was served by every later open. The next open re-hashes it.
func TestDataFileChangedOnDiskIsReverified(t *testing.T) {
	f := newFixture(t)
	want := randomFile(t, f.originDir, "c", 1<<20, 90)
	c := f.open()
	defer c.Close()
	if got := readWhole(t, c, "c"); !bytes.Equal(got, want) {
		t.Fatal("cold read differs")
	}
	flipByte(t, f.cacheDir, 300_000)
	f.origin.bytes.Store(0)
	if got := readWhole(t, c, "c"); !bytes.Equal(got, want) {
		t.Fatal("a data file changed on disk was served")
	}
	if n := f.origin.bytes.Load(); n != f.opts.ChunkSize {
		t.Errorf("refetched %d bytes, want the one bad chunk (%d)", n, f.opts.ChunkSize)
	}
}

// stallOrigin answers metadata but never delivers a byte; it counts the requests still
// waiting, so a test sees when their context ends.
type stallOrigin struct {
	origin.Origin
	calls, open atomic.Int64
}

func (s *stallOrigin) ReadRange(ctx context.Context, p, v string, off, n int64) (io.ReadCloser, error) {
	s.calls.Add(1)
	s.open.Add(1)
	defer s.open.Add(-1)
	<-ctx.Done()
	return nil, ctx.Err()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}

// Issue 19, point 8: a fetch ran under context.Background(), so a reader that gave up
// left the origin request running until --origin-timeout.
func TestAbandonedFetchIsCancelled(t *testing.T) {
	f := newFixture(t)
	randomFile(t, f.originDir, "slow", 2<<20, 92)
	so := &stallOrigin{Origin: f.origin}
	f.opts.OriginTimeout = time.Minute
	c, err := Open(so, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, err := c.Open(context.Background(), "slow")
	if err != nil {
		t.Fatal(err)
	}
	seq, err := c.Open(context.Background(), "slow")
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	base := runtime.NumGoroutine()

	// A random read (no readahead): its fetch ends when its only reader leaves,
	// although the handle stays open.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := h.Fill(ctx, 5*f.opts.ChunkSize, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fill: %v, want the reader's deadline", err)
	}
	waitFor(t, "the origin request outlived its only reader", func() bool { return so.open.Load() == 0 })

	// A sequential read starts readahead nobody waits for: it lasts while the handle
	// that started it is open, and ends with it.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	calls := so.calls.Load()
	if _, err := seq.Fill(ctx2, 0, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fill: %v, want the reader's deadline", err)
	}
	time.Sleep(50 * time.Millisecond)
	if so.calls.Load() == calls || so.open.Load() == 0 {
		t.Fatalf("readahead of an open handle ended with its reader (%d requests, %d open)", so.calls.Load()-calls, so.open.Load())
	}
	h.Close()
	seq.Close()
	waitFor(t, "readahead outlived the handle that started it", func() bool { return so.open.Load() == 0 })
	waitFor(t, "goroutines left behind", func() bool { return runtime.NumGoroutine() <= base })
}

// Issue 19, point 10: an object larger than the cache is read through uncached, and
// no data file is made for it (a HEAD claiming 1 TiB made a 1 TiB sparse file).
func TestObjectLargerThanTheCacheIsNotCreated(t *testing.T) {
	f := newFixture(t)
	f.opts.Limit = 4 << 20
	want := randomFile(t, f.originDir, "huge", 6<<20, 93)
	c := f.open()
	defer c.Close()
	h, err := c.Open(context.Background(), "huge")
	if err != nil {
		t.Fatal(err)
	}
	if h.Cached() {
		t.Error("an object larger than the cache got a cache object")
	}
	h.Close()
	if files := countFiles(t, f.cacheDir, ".data"); files != 0 {
		t.Errorf("%d data files for an object larger than the cache", files)
	}
	if got := readWhole(t, c, "huge"); !bytes.Equal(got, want) {
		t.Fatal("uncached read differs")
	}
}

func countFiles(t *testing.T, dir, ext string) int {
	n := 0
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ext) {
			n++
		}
		return nil
	})
	return n
}

// enospcOrigin's ranges fail as a full disk does when written to the data file.
type enospcOrigin struct{ origin.Origin }

type enospcBody struct{ io.ReadCloser }

func (enospcBody) WriteToFile(f *os.File, off, n int64, mu sync.Locker) error { return syscall.ENOSPC }

func (e enospcOrigin) ReadRange(ctx context.Context, p, v string, off, n int64) (io.ReadCloser, error) {
	rc, err := e.Origin.ReadRange(ctx, p, v, off, n)
	if err != nil {
		return nil, err
	}
	return enospcBody{rc}, nil
}

// Issue 19, point 19: a full disk invalidated the free-space state outside c.mu, which
// reserve reads under it (the race detector sees it).
func TestFullDiskFreeSpaceRace(t *testing.T) {
	f := newFixture(t)
	for _, n := range []string{"a", "b", "c", "d"} {
		randomFile(t, f.originDir, n, 1<<20, 94)
	}
	c, err := Open(enospcOrigin{f.origin}, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var wg sync.WaitGroup
	for _, n := range []string{"a", "b", "c", "d"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				h, err := c.Open(context.Background(), n)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := h.Fill(context.Background(), int64(i%16)*f.opts.ChunkSize, 1); !errors.Is(err, ErrNoSpace) {
					t.Errorf("fill on a full disk: %v, want ErrNoSpace", err)
				}
				h.Close()
			}
		}()
	}
	wg.Wait()
}

// Issue 19, point 19: Open retried an object whose files had vanished by recursing
// without bound while another reference kept the object in the index.
func TestOpenOfVanishedObjectIsBounded(t *testing.T) {
	f := newFixture(t)
	want := randomFile(t, f.originDir, "v", 200_000, 95)
	c := f.open()
	defer c.Close()
	readWhole(t, c, "v")
	c.mu.Lock()
	o := c.idx.byPath["v"]
	o.refs++ // someone else holds it
	c.mu.Unlock()
	o.closeFilesForTest()
	os.Remove(c.objectPath(o.key, ".meta"))
	done := make(chan []byte, 1)
	go func() {
		b, err := readAll(c, "v")
		if err != nil {
			t.Error(err)
		}
		done <- b
	}()
	select {
	case got := <-done:
		if !bytes.Equal(got, want) {
			t.Error("wrong bytes")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Open of an object whose files vanished never returned")
	}
}

func (o *object) closeFilesForTest() {
	o.mu.Lock()
	o.closeFiles()
	o.mu.Unlock()
}

// Issue 19, point 19: the result of punching a dropped chunk's blocks out was ignored,
// so on a filesystem that cannot punch holes the cache counted fewer bytes than the
// disk held. Blocks that stay must stay counted.
func TestFailedHolePunchKeepsBlocksCounted(t *testing.T) {
	f := newFixture(t)
	want := randomFile(t, f.originDir, "p", 1<<20, 96)
	c := f.open()
	readWhole(t, c, "p")
	c.Close()
	flipByte(t, f.cacheDir, 70_000)
	punchHole = func(*os.File, int64, int64) error { return syscall.EOPNOTSUPP }
	defer func() { punchHole = defaultPunchHole }()
	c = f.open()
	defer c.Close()
	h, err := c.Open(context.Background(), "p") // the first open re-hashes and drops the chunk
	if err != nil {
		t.Fatal(err)
	}
	if h.Complete() {
		t.Fatal("the bad chunk was not dropped")
	}
	h.Close()
	used, _ := c.Used()
	if du := duBytes(t, filepath.Join(f.cacheDir, "objects")); used < du {
		t.Errorf("the cache counts %d bytes, the disk holds %d", used, du)
	}
	if got := readWhole(t, c, "p"); !bytes.Equal(got, want) {
		t.Fatal("wrong bytes")
	}
}

// Issue 19, point 3: the cache tells its invalidators (the mount's kernel caches) of
// every path whose version it drops or replaces: evict and clear before they return,
// a new version it finds soon after.
func TestInvalidatorsHearOfDroppedVersions(t *testing.T) {
	f := newFixture(t)
	randomFile(t, f.originDir, "d/a", 1000, 97)
	randomFile(t, f.originDir, "d/b", 1000, 98)
	c := f.open()
	defer c.Close()
	var mu sync.Mutex
	heard := map[string]int{}
	c.OnInvalidate(func(p string) {
		mu.Lock()
		heard[p]++
		mu.Unlock()
	})
	count := func(p string) int {
		mu.Lock()
		defer mu.Unlock()
		return heard[p]
	}
	readWhole(t, c, "d/a")
	readWhole(t, c, "d/b")
	if n, err := c.Evict(context.Background(), []string{"d"}, false); err != nil || n != 2 || count("d/a") != 1 || count("d/b") != 1 {
		t.Fatalf("evict of 2 objects: told %v", heard)
	}
	readWhole(t, c, "d/a")
	time.Sleep(20 * time.Millisecond)
	randomFile(t, f.originDir, "d/a", 2000, 99) // a new version at the origin
	c.Invalidate("d/a")
	readWhole(t, c, "d/a")
	waitFor(t, "a replaced version was not told", func() bool { return count("d/a") == 2 })
	readWhole(t, c, "d/b")
	c.Clear()
	if count("d/a") != 3 || count("d/b") != 2 {
		t.Fatalf("clear: told %v", heard)
	}
}

// A chunk dropped as corrupt is told to the invalidators too: the mount's kernel may
// hold its bad bytes in its page cache, and keeps them across opens of an unchanged
// version.
func TestDroppedCorruptChunkIsTold(t *testing.T) {
	f := newFixture(t)
	randomFile(t, f.originDir, "c", 1<<20, 91)
	c := f.open()
	defer c.Close()
	var told atomic.Int64
	c.OnInvalidate(func(p string) {
		if p == "c" {
			told.Add(1)
		}
	})
	readWhole(t, c, "c")
	flipByte(t, f.cacheDir, 300_000)
	readWhole(t, c, "c") // the changed data file is re-hashed at this open
	waitFor(t, "a dropped corrupt chunk was not told to the invalidators", func() bool { return told.Load() > 0 })
}
