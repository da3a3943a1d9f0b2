package cache

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// A sidecar truncated under a running cache (a stray `truncate -s 100`, a full disk
// repaired by hand) used to kill the process with SIGBUS on the next access through
// its mapping. Now the object keeps working from what the process holds, and the
// damaged file is dropped (with a log line) the next time the object is opened.
func TestTruncatedSidecarDoesNotKillTheProcess(t *testing.T) {
	f := newFixture(t)
	var logs lockedLog
	f.opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	// 4 KiB chunks: 2048 of them make a sidecar of three pages, so a high chunk's
	// CRC lies beyond the first page, which a truncated file still backs.
	f.opts.ChunkSize = 4096
	const size = 8 << 20
	want := randomFile(t, f.originDir, "s.bin", size, 80)
	c := f.open()
	defer c.Close()
	ctx := context.Background()
	h, err := c.Open(ctx, "s.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Fill(ctx, 0, 4096); err != nil {
		t.Fatal(err)
	}
	o := h.o
	meta := c.objectPath(o.key, ".meta")
	if fi, err := os.Stat(meta); err != nil || fi.Size() <= 8192 {
		t.Fatalf("sidecar %v %v: want more than two pages", fi, err)
	}
	if err := os.Truncate(meta, 100); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	off := int64(size - 3*4096)
	if _, err := h.ReadAt(ctx, buf, off); err != nil {
		t.Logf("read of a high range after the truncation: %v", err)
	} else if !bytes.Equal(buf, want[off:off+4096]) {
		t.Fatal("read after the sidecar's truncation returned wrong bytes")
	}
	h.Close()

	// Once its files are closed, reopening the object finds the damage: the object
	// is dropped (logged) and fetched again, whole and right.
	waitIdle(t, o)
	o.closeIfIdle()
	if got := readWhole(t, c, "s.bin"); !bytes.Equal(got, want) {
		t.Fatal("read after dropping the damaged object differs from the origin")
	}
	if !strings.Contains(logs.String(), "damaged") {
		t.Errorf("no log line names the damaged sidecar:\n%s", logs.String())
	}
}

// lockedLog collects log output written from several goroutines.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitIdle waits until no handle or fetch holds o (a fetch lets go of its object
// just after its readers are woken).
func waitIdle(t *testing.T, o *object) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		o.c.mu.Lock()
		refs := o.refs
		o.c.mu.Unlock()
		if refs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("object %s still has %d references", o.Path, refs)
		}
	}
}

// createFile makes a new, empty file of ours whatever is left at the path: a
// leftover file is replaced, and a symlink is removed without touching its target.
func TestCreateFileReplacesLeftovers(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(outside, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	leftover, link, fresh := filepath.Join(dir, "a.data"), filepath.Join(dir, "b.data"), filepath.Join(dir, "c.data")
	if err := os.WriteFile(leftover, []byte("old bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{leftover, link, fresh} {
		f, err := createFile(p)
		if err != nil {
			t.Fatalf("createFile(%s): %v", p, err)
		}
		f.Close()
		if st, err := os.Lstat(p); err != nil || !st.Mode().IsRegular() || st.Size() != 0 {
			t.Errorf("%s after createFile: %v, %v; want an empty regular file", p, st, err)
		}
	}
	if b, _ := os.ReadFile(outside); string(b) != "keep me" {
		t.Errorf("a symlink's target was changed: %q", b)
	}
}
