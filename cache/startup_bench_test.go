package cache

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
	"golang.org/x/sys/unix"
)

// BenchmarkStartup measures how long Open takes to be ready over a cache directory of
// many small cached objects (issue 21, goal 3), and the heap and RSS it holds then.
// Not run in CI. Knobs (environment):
//
//	CACHEGATE_BENCH_OBJECTS  objects to cache (default 1000)
//	CACHEGATE_BENCH_DIR      cache dir to fill once and reuse across runs (default: a
//	                         temporary dir, filled every run)
//	CACHEGATE_BENCH_COLD=1   drop the page cache before each Open (root only:
//	                         writes /proc/sys/vm/drop_caches)
//
// The objects are made through the cache's own create and chunk-write path, one
// chunk of 20-30 bytes each, with no origin round trip, so that a million take
// minutes. Run with -benchtime=3x, e.g.
//
//	CACHEGATE_BENCH_OBJECTS=200000 CACHEGATE_BENCH_DIR=/var/tmp/cg200k \
//	  CACHEGATE_BENCH_COLD=1 go test -run '^$' -bench Startup -benchtime 3x ./cache
func BenchmarkStartup(b *testing.B) {
	n := 1000
	if s := os.Getenv("CACHEGATE_BENCH_OBJECTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n <= 0 {
			b.Fatalf("CACHEGATE_BENCH_OBJECTS=%q: want a positive count", s)
		}
	}
	dir := os.Getenv("CACHEGATE_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	cold := os.Getenv("CACHEGATE_BENCH_COLD") == "1"
	if cold && os.Geteuid() != 0 {
		b.Skip("CACHEGATE_BENCH_COLD=1 drops the page cache, which needs root")
	}
	lo, err := origin.NewLocal(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	opts := Options{Dir: dir, Limit: 64 << 30, ChunkSize: 64 << 10, TTL: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	marker := filepath.Join(dir, fmt.Sprintf("bench-objects-%d", n))
	if _, err := os.Stat(marker); err != nil {
		t0 := time.Now()
		fillObjects(b, lo, opts, n)
		if err := os.WriteFile(marker, nil, 0o600); err != nil {
			b.Fatal(err)
		}
		b.Logf("made %d objects in %v", n, time.Since(t0).Round(time.Millisecond))
	}
	runtime.GC()
	debug.FreeOSMemory()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	var took time.Duration
	var heap, rss int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if cold {
			dropCaches(b)
		}
		b.StartTimer()
		t0 := time.Now()
		c, err := Open(lo, opts)
		if err != nil {
			b.Fatal(err)
		}
		took += time.Since(t0)
		b.StopTimer()
		if got := c.Status().Objects; got < n {
			b.Fatalf("cache opened with %d objects, made %d", got, n)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		heap = int64(after.HeapInuse) - int64(before.HeapInuse)
		rss = rssBytes()
		c.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(took.Milliseconds())/float64(b.N), "ms/open")
	b.ReportMetric(float64(heap)/float64(n), "heapB/object")
	b.ReportMetric(float64(rss)/(1<<20), "rssMiB") // the whole test process, after a GC
	b.ReportMetric(0, "ns/op")
}

// fillObjects caches n small objects through the create path and one chunk write
// each, on a few goroutines.
func fillObjects(b *testing.B, lo origin.Origin, opts Options, n int) {
	c, err := Open(lo, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const workers = 4
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if err := fillOne(c, i); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

func fillOne(c *Cache, i int) error {
	p := fmt.Sprintf("d%03d/f%07d", i%1000, i)
	body := []byte(strings.Repeat("x", 20+i%11))
	e := origin.Entry{Name: filepath.Base(p), Size: int64(len(body)), Version: "v1", ModTime: time.Unix(1_700_000_000, 0), Exact: true}
	o, err := c.objectFor(objectKey(c.oname, p, e.Version), p, e, openWarm)
	if err != nil {
		return err
	}
	if err := c.acquire(o); err != nil {
		return err
	}
	defer c.release(o)
	rb := roundBlock(int64(len(body)))
	if err := c.reserve(rb); err != nil {
		return err
	}
	if err := o.writeChunk(0, body); err != nil {
		c.unreserve(rb)
		return err
	}
	c.commit(o, rb, rb, int64(len(body)))
	return nil
}

// rssBytes is this process's resident set size.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(l)); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func dropCaches(b *testing.B) {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		b.Fatalf("drop the page cache (CACHEGATE_BENCH_COLD=1 needs root): %v", err)
	}
}
