package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
	"golang.org/x/sys/unix"
)

// countingOrigin counts the object bytes an origin delivers.
type countingOrigin struct {
	origin.Origin
	bytes atomic.Int64
	reads atomic.Int64
}

func (c *countingOrigin) ReadRange(ctx context.Context, p, v string, off, n int64) (io.ReadCloser, error) {
	rc, err := c.Origin.ReadRange(ctx, p, v, off, n)
	if err != nil {
		return nil, err
	}
	c.reads.Add(1)
	return &countingReader{rc, &c.bytes}, nil
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

func randomFile(t testing.TB, dir, name string, size int, seed uint64) []byte {
	t.Helper()
	b := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	p := filepath.Join(dir, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

type fixture struct {
	t         *testing.T
	originDir string
	cacheDir  string
	origin    *countingOrigin
	opts      Options
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, originDir: t.TempDir(), cacheDir: t.TempDir()}
	lo, err := origin.NewLocal(f.originDir)
	if err != nil {
		t.Fatal(err)
	}
	f.origin = &countingOrigin{Origin: lo}
	f.opts = Options{Dir: f.cacheDir, Limit: 1 << 30, ChunkSize: 64 << 10, Readahead: 1 << 20, TTL: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return f
}

func (f *fixture) open() *Cache {
	c, err := Open(f.origin, f.opts)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// readWhole reads all of p through c, failing the test on an error. Call it from the
// test's goroutine only (t.Fatal); other goroutines use readAll.
func readWhole(t testing.TB, c *Cache, p string) []byte {
	t.Helper()
	b, err := readAll(c, p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readAll reads all of p through c.
func readAll(c *Cache, p string) ([]byte, error) {
	h, err := c.Open(context.Background(), p)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	out := make([]byte, 0, h.Size())
	buf := make([]byte, 100_000) // not chunk-aligned on purpose
	for off := int64(0); ; {
		n, err := h.ReadAt(context.Background(), buf, off)
		out = append(out, buf[:n]...)
		off += int64(n)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read %s at %d: %w", p, off, err)
		}
	}
}

func TestReadThroughAndPersist(t *testing.T) {
	f := newFixture(t)
	want := randomFile(t, f.originDir, "dir/a.bin", 3<<20+123, 1)
	empty := randomFile(t, f.originDir, "empty", 0, 2)
	c := f.open()
	if got := readWhole(t, c, "dir/a.bin"); !bytes.Equal(got, want) {
		t.Fatal("cold read differs from the origin")
	}
	if got := readWhole(t, c, "empty"); len(got) != len(empty) {
		t.Fatal("empty file not empty")
	}
	if n := f.origin.bytes.Load(); n != int64(len(want)) {
		t.Errorf("origin delivered %d bytes for a %d-byte file", n, len(want))
	}
	h, _ := c.Open(context.Background(), "dir/a.bin")
	if !h.Complete() {
		t.Error("object not complete after a whole read")
	}
	h.Close()
	c.Close()

	f.origin.bytes.Store(0)
	c = f.open()
	defer c.Close()
	if got := readWhole(t, c, "dir/a.bin"); !bytes.Equal(got, want) {
		t.Fatal("warm read after restart differs")
	}
	if n := f.origin.bytes.Load(); n != 0 {
		t.Errorf("restart cost %d origin bytes, want 0", n)
	}
}

func TestConcurrentColdReadersShareFetches(t *testing.T) {
	f := newFixture(t)
	want := randomFile(t, f.originDir, "big", 8<<20, 3)
	c := f.open()
	defer c.Close()
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := readAll(c, "big"); err != nil || !bytes.Equal(got, want) {
				t.Errorf("concurrent reader got wrong bytes (%v)", err)
			}
		}()
	}
	wg.Wait()
	if n := f.origin.bytes.Load(); n != int64(len(want)) {
		t.Errorf("16 readers cost %d origin bytes, want exactly %d", n, len(want))
	}
}

// A sequential reader's readahead goes out in requests of several chunks, however
// small its reads: topped up after every read, the window used to grow by a chunk
// at a time and each read started a one-chunk request.
func TestSequentialReadaheadUsesLargeRequests(t *testing.T) {
	f := newFixture(t)
	f.opts.Readahead = 4 << 20 // 64 chunks
	want := randomFile(t, f.originDir, "big", 32<<20, 4)
	c := f.open()
	defer c.Close()
	h, err := c.Open(context.Background(), "big")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	got := make([]byte, len(want))
	for off := 0; off < len(got); off += 16 << 10 { // a quarter chunk at a time
		if _, err := h.ReadAt(context.Background(), got[off:off+16<<10], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatal("wrong bytes")
	}
	chunks := int64(len(want)) / f.opts.ChunkSize
	if reads := f.origin.reads.Load(); reads > 2*chunks/spanChunks+8 {
		t.Errorf("%d origin requests for %d chunks, want about %d (%d chunks each)", reads, chunks, chunks/spanChunks, spanChunks)
	}
}

func TestRandomReads(t *testing.T) {
	f := newFixture(t)
	want := randomFile(t, f.originDir, "r", 5<<20+7, 4)
	c := f.open()
	defer c.Close()
	h, err := c.Open(context.Background(), "r")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		off := rng.Int64N(int64(len(want)))
		n := 1 + rng.IntN(200_000)
		buf := make([]byte, n)
		m, err := h.ReadAt(context.Background(), buf, off)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		end := min(off+int64(n), int64(len(want)))
		if !bytes.Equal(buf[:m], want[off:end]) {
			t.Fatalf("pread %d+%d differs", off, n)
		}
	}
}

// duBytes is what du reports: allocated blocks under dir.
func duBytes(t testing.TB, dir string) int64 {
	var total int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			total += fileBlocks(fi)
		}
		return nil
	})
	return total
}

func TestCapHolds(t *testing.T) {
	f := newFixture(t)
	f.opts.Limit = 4 << 20
	var files [][]byte
	for i := 0; i < 20; i++ {
		files = append(files, randomFile(t, f.originDir, filepath.Join("d", string(rune('a'+i))), 1<<20+i*4096, uint64(10+i)))
	}
	c := f.open()
	defer c.Close()
	slack := int64(spanChunks) * f.opts.ChunkSize * 2 // fetches in flight
	for round := 0; round < 2; round++ {
		for i, want := range files {
			if got := readWhole(t, c, filepath.Join("d", string(rune('a'+i)))); !bytes.Equal(got, want) {
				t.Fatalf("file %d differs", i)
			}
			used, limit := c.Used()
			if used > limit {
				t.Fatalf("accounted %d bytes over limit %d", used, limit)
			}
			if du := duBytes(t, f.cacheDir); du > limit+slack {
				t.Fatalf("du %d bytes over limit %d + in-flight %d", du, limit, slack)
			}
		}
	}
}

func TestOpenObjectIsNotEvicted(t *testing.T) {
	f := newFixture(t)
	f.opts.Limit = 2 << 20
	want := randomFile(t, f.originDir, "held", 1<<20, 20)
	other := randomFile(t, f.originDir, "other", 1<<20+8192, 21)
	c := f.open()
	defer c.Close()
	h, err := c.Open(context.Background(), "held")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	buf := make([]byte, len(want))
	if _, err := h.ReadAt(context.Background(), buf, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	// Reading "other" cannot evict "held", so it is served uncached but right.
	if got := readWhole(t, c, "other"); !bytes.Equal(got, other) {
		t.Fatal("uncached read differs")
	}
	if _, err := h.ReadAt(context.Background(), buf, 0); (err != nil && err != io.EOF) || !bytes.Equal(buf, want) {
		t.Fatal("held object changed under its reader")
	}
}

func TestCorruptChunkIsRefetched(t *testing.T) {
	f := newFixture(t)
	want := randomFile(t, f.originDir, "c", 1<<20, 30)
	c := f.open()
	readWhole(t, c, "c")
	c.Close()
	// Flip one byte of the data file, as a bad disk or a stray write would.
	var data string
	filepath.Walk(f.cacheDir, func(p string, fi os.FileInfo, err error) error {
		if filepath.Ext(p) == ".data" {
			data = p
		}
		return nil
	})
	fd, err := os.OpenFile(data, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	fd.ReadAt(b, 200_000)
	b[0] ^= 0xff
	fd.WriteAt(b, 200_000)
	fd.Close()

	f.origin.bytes.Store(0)
	c = f.open()
	defer c.Close()
	if got := readWhole(t, c, "c"); !bytes.Equal(got, want) {
		t.Fatal("corrupt byte served")
	}
	if n := f.origin.bytes.Load(); n != f.opts.ChunkSize {
		t.Errorf("refetched %d bytes, want one chunk (%d)", n, f.opts.ChunkSize)
	}
}

func TestChangedObjectIsNeverMixed(t *testing.T) {
	f := newFixture(t)
	randomFile(t, f.originDir, "v", 1<<20, 40)
	c := f.open()
	defer c.Close()
	h, err := c.Open(context.Background(), "v")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	buf := make([]byte, 1000)
	if _, err := h.ReadAt(context.Background(), buf, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	v2 := randomFile(t, f.originDir, "v", 1<<20, 41)
	// The old handle may read what it has, but never the new version's bytes.
	if _, err := h.ReadAt(context.Background(), buf, 900_000); !errors.Is(err, origin.ErrChanged) {
		t.Fatalf("read of an uncached range of a replaced object: %v, want ErrChanged", err)
	}
	c.Invalidate("v")
	if got := readWhole(t, c, "v"); !bytes.Equal(got, v2) {
		t.Fatal("new version not read whole")
	}
}

func TestSecondOwnerIsRefused(t *testing.T) {
	f := newFixture(t)
	c := f.open()
	defer c.Close()
	_, err := Open(f.origin, f.opts)
	var le *LockedError
	if !errors.As(err, &le) || le.Pid != os.Getpid() {
		t.Fatalf("second Open: %v, want LockedError naming pid %d", err, os.Getpid())
	}
}

func TestSidecarRoundTrip(t *testing.T) {
	info := &objectInfo{Origin: "http://h/", Path: "a/b c", Version: `"v"`, Size: 5<<20 + 1, ChunkSize: 1 << 20, ModTime: time.Unix(100, 5), LastAccess: time.Unix(200, 0), Pinned: true}
	img, err := encodeHeader(info)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := decodeHeader(img)
	if err != nil {
		t.Fatal(err)
	}
	if got.Origin != info.Origin || got.Path != info.Path || got.Version != info.Version || got.Size != info.Size || got.ChunkSize != info.ChunkSize || !got.ModTime.Equal(info.ModTime) || !got.Pinned {
		t.Fatalf("round trip: %+v != %+v", got, info)
	}
	img[fixedHeader] ^= 1
	if _, _, err := decodeHeader(img); err == nil {
		t.Fatal("corrupt header accepted")
	}
}

func FuzzDecodeSidecar(f *testing.F) {
	for _, size := range []int64{0, 1, 1 << 20, 3<<20 + 5} {
		img, _ := encodeHeader(&objectInfo{Origin: "o", Path: "p", Version: "v", Size: size, ChunkSize: 1 << 20})
		f.Add(img)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, hl, err := decodeHeader(b)
		if err != nil {
			return
		}
		if hl > len(b) || sidecarSize(hl, info.nchunks()) != len(b) {
			t.Fatalf("accepted inconsistent sidecar: hl %d len %d", hl, len(b))
		}
	})
}

// downOrigin fails every call like an unreachable server while down is set.
type downOrigin struct {
	origin.Origin
	down atomic.Bool
}

var errDown = &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}

func (d *downOrigin) Stat(ctx context.Context, p string) (origin.Entry, error) {
	if d.down.Load() {
		return origin.Entry{}, errDown
	}
	return d.Origin.Stat(ctx, p)
}

func (d *downOrigin) List(ctx context.Context, p string) ([]origin.Entry, error) {
	if d.down.Load() {
		return nil, errDown
	}
	return d.Origin.List(ctx, p)
}

func (d *downOrigin) ReadRange(ctx context.Context, p, v string, off, n int64) (io.ReadCloser, error) {
	if d.down.Load() {
		return nil, errDown
	}
	return d.Origin.ReadRange(ctx, p, v, off, n)
}

// With the origin down, what is cached stays readable (stale metadata, or after a
// restart metadata rebuilt from the cached objects); what is not fails cleanly.
func TestOriginDownServesCached(t *testing.T) {
	f := newFixture(t)
	want := randomFile(t, f.originDir, "d/cached.bin", 300_000, 50)
	randomFile(t, f.originDir, "d/other.bin", 1000, 51)
	d := &downOrigin{Origin: f.origin}
	f.opts.TTL = 50 * time.Millisecond
	c, err := Open(d, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	readWhole(t, c, "d/cached.bin")
	if _, err := c.List(context.Background(), "d"); err != nil {
		t.Fatal(err)
	}
	d.down.Store(true)
	time.Sleep(100 * time.Millisecond) // past the TTL
	if got := readWhole(t, c, "d/cached.bin"); !bytes.Equal(got, want) {
		t.Fatal("cached file unreadable or wrong with the origin down")
	}
	if _, err := c.Open(context.Background(), "d/other.bin"); err == nil {
		t.Error("an uncached file opened with the origin down")
	}
	c.Close()

	// A restart while the origin is still down: the listing comes from the
	// metadata store (index.db), uncached files included.
	c, err = Open(d, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.List(context.Background(), "d")
	if err != nil || len(l.Entries) != 2 || l.Entries[0].Name != "cached.bin" || l.Entries[1].Name != "other.bin" {
		t.Fatalf("offline listing: %+v, %v", l, err)
	}
	if got := readWhole(t, c, "d/cached.bin"); !bytes.Equal(got, want) {
		t.Fatal("cached file unreadable after a restart with the origin down")
	}
	c.Close()

	// Without the store, metadata comes from the objects.
	if err := os.Remove(filepath.Join(f.cacheDir, metaStoreFile)); err != nil {
		t.Fatal(err)
	}
	c, err = Open(d, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err = c.List(context.Background(), "d")
	if err != nil || len(l.Entries) != 1 || l.Entries[0].Name != "cached.bin" {
		t.Fatalf("offline listing: %+v, %v", l, err)
	}
	if got := readWhole(t, c, "d/cached.bin"); !bytes.Equal(got, want) {
		t.Fatal("cached file unreadable after a restart with the origin down")
	}
}

// hangingOrigin answers metadata but never delivers a byte: each ReadRange waits for
// its context, like a server that accepted the request and went silent.
type hangingOrigin struct {
	origin.Origin
	calls atomic.Int64
}

func (h *hangingOrigin) ReadRange(ctx context.Context, p, v string, off, n int64) (io.ReadCloser, error) {
	h.calls.Add(1)
	<-ctx.Done()
	return nil, &net.OpError{Op: "read", Net: "tcp", Err: ctx.Err()}
}

// A miss on a silent origin fails with ErrOriginTimeout after OriginTimeout, retries
// included, and neither the cached nor the uncached path waits longer.
func TestOriginTimeoutBoundsAMiss(t *testing.T) {
	f := newFixture(t)
	randomFile(t, f.originDir, "slow.bin", 300_000, 60)
	h := &hangingOrigin{Origin: f.origin}
	f.opts.OriginTimeout = 300 * time.Millisecond
	c, err := Open(h, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hd, err := c.Open(context.Background(), "slow.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer hd.Close()
	start := time.Now()
	_, err = hd.Fill(context.Background(), 0, 4096)
	took := time.Since(start)
	if !errors.Is(err, ErrOriginTimeout) {
		t.Fatalf("Fill on a silent origin: %v, want ErrOriginTimeout", err)
	}
	// Generous for a loaded machine, but well below four attempts of 300 ms each.
	if took > 900*time.Millisecond {
		t.Errorf("miss took %v with a %v origin timeout", took, f.opts.OriginTimeout)
	}
	if present, _ := hd.Presence(0, 4096); present {
		t.Error("a chunk counted as present after a failed fetch")
	}
	// The uncached path (no room in the cache) is bounded the same way.
	u := &Handle{c: c, path: "slow.bin", entry: hd.Entry()}
	start = time.Now()
	if _, err := u.ReadAt(context.Background(), make([]byte, 4096), 0); !errors.Is(err, ErrOriginTimeout) {
		t.Fatalf("uncached read on a silent origin: %v, want ErrOriginTimeout", err)
	}
	if took := time.Since(start); took > 900*time.Millisecond {
		t.Errorf("uncached miss took %v", took)
	}
}

// A crash in the middle of a fetch leaves blocks allocated for chunks that never got
// their bit; reopening the cache gives them back, so the disk holds what is counted.
func TestCrashLeftoverBlocksAreReclaimed(t *testing.T) {
	f := newFixture(t)
	randomFile(t, f.originDir, "part.bin", 1<<20, 70)
	c := f.open()
	h, err := c.Open(context.Background(), "part.bin")
	if err != nil {
		t.Fatal(err)
	}
	// Chunk 5 only: a read away from the start starts no readahead.
	if _, err := h.Fill(context.Background(), 5<<16, 1); err != nil {
		t.Fatal(err)
	}
	key := h.o.key
	data := c.objectPath(key, ".data")
	h.Close()
	used := c.Status().UsedBytes
	c.Close()

	// What a fetch in flight looks like at kill -9: the span is allocated.
	fd, err := os.OpenFile(data, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Fallocate(int(fd.Fd()), 0, 0, 1<<20); err != nil {
		t.Skipf("no fallocate here: %v", err)
	}
	fd.Close()
	c = f.open()
	defer c.Close()
	if got := c.Status().UsedBytes; got != used {
		t.Errorf("used after reopening: %d, before the crash %d", got, used)
	}
	var st unix.Stat_t
	unix.Stat(data, &st)
	if st.Blocks*512 > 64<<10 {
		t.Errorf("data file still holds %d bytes on disk for one 64 KiB chunk", st.Blocks*512)
	}
	if got := readWhole(t, c, "part.bin"); len(got) != 1<<20 {
		t.Fatalf("read %d bytes", len(got))
	}
}
