package fusefs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/origin"
)

// mountLocal mounts a cache of limit bytes over a local directory of files and
// returns the mount point and the io-mode bookkeeping. It needs root (DirectMount).
func mountLocal(t *testing.T, files map[string][]byte, limit int64) (string, *ioModes) {
	t.Helper()
	return mountLocalWith(t, files, limit, Options{})
}

// mountLocalWith is mountLocal with mount options; a nil opts.Logger discards.
func mountLocalWith(t *testing.T, files map[string][]byte, limit int64, opts Options) (string, *ioModes) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	src := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o, err := origin.NewLocal(src)
	if err != nil {
		t.Fatal(err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	opts.TTL, opts.Logger = time.Minute, log
	c, err := cache.Open(o, cache.Options{Dir: t.TempDir(), Limit: limit, ChunkSize: 64 << 10, TTL: time.Minute, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	srv, fsys, err := mount(mnt, c, opts)
	if err != nil {
		c.Close()
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		srv.Unmount()
		c.Close()
	})
	return mnt, fsys.modes
}

// A complete file opened while nothing else has it open goes by passthrough; while a
// cached open of it lasts, further opens are cached too.
func TestPassthroughOnlyForCompleteFiles(t *testing.T) {
	data := bytes.Repeat([]byte("cachegate"), 50_000)
	mnt, m := mountLocal(t, map[string][]byte{"f": data}, 64<<20)
	p := filepath.Join(mnt, "f")
	modes := func() (pt, cached int) {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, s := range m.inodes {
			pt += s.passthrough
			cached += s.cached
		}
		return
	}
	cold, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if pt, cached := modes(); pt != 0 || cached != 1 {
		t.Fatalf("cold open: %d passthrough, %d cached; want 0, 1", pt, cached)
	}
	if b, err := io.ReadAll(cold); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("cold read: %v", err)
	}
	second, err := os.Open(p) // complete now, but the cold open still holds cached mode
	if err != nil {
		t.Fatal(err)
	}
	if pt, cached := modes(); pt != 0 || cached != 2 {
		t.Fatalf("open beside a cached one: %d passthrough, %d cached; want 0, 2", pt, cached)
	}
	cold.Close()
	second.Close()
	// The kernel sends RELEASE asynchronously after close.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if pt, cached := modes(); pt == 0 && cached == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("releases never arrived")
		}
	}
	warm, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer warm.Close()
	if pt, cached := modes(); pt != 1 || cached != 0 {
		t.Fatalf("warm open: %d passthrough, %d cached; want 1, 0", pt, cached)
	}
	if b, err := io.ReadAll(warm); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("passthrough read: %v", err)
	}
}

// Concurrent opens of files that fill, complete and are evicted under a small cache
// switch inodes between cached and passthrough mode all the time; the kernel fails an
// open that asks for the wrong mode with EIO. None may fail, and every read is right.
func TestOpenModesUnderChurn(t *testing.T) {
	files := map[string][]byte{}
	var names []string
	for i := 0; i < 24; i++ {
		b := make([]byte, 1+rand.IntN(300_000))
		rand.NewChaCha8([32]byte{byte(i)}).Read(b)
		name := fmt.Sprintf("f%02d", i)
		files[name] = b
		names = append(names, name)
	}
	mnt, _ := mountLocal(t, files, 2<<20) // well under the 3.6 MB working set
	deadline := time.Now().Add(5 * time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	opens, eio := 0, 0
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rr := rand.New(rand.NewPCG(uint64(g), 5))
			buf := make([]byte, 64<<10)
			for time.Now().Before(deadline) {
				name := names[rr.IntN(len(names))]
				f, err := os.Open(filepath.Join(mnt, name))
				mu.Lock()
				opens++
				if errors.Is(err, syscall.EIO) {
					eio++
				}
				mu.Unlock()
				if err != nil {
					t.Errorf("open %s: %v", name, err)
					continue
				}
				want := files[name]
				off := int64(0)
				if rr.IntN(2) == 0 {
					off = rr.Int64N(int64(len(want)))
				}
				n, err := f.ReadAt(buf, off)
				f.Close()
				if err != nil && err != io.EOF {
					t.Errorf("read %s at %d: %v", name, off, err)
					continue
				}
				if !bytes.Equal(buf[:n], want[off:min(int64(len(want)), off+int64(len(buf)))]) {
					t.Errorf("%s at %d: wrong bytes", name, off)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d opens, %d EIO", opens, eio)
}
