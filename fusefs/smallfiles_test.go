package fusefs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCloseSendsNoFlush: a read-only file has nothing to flush, so a close costs the
// kernel no FLUSH round trip (FOPEN_NOFLUSH on every open; ENOSYS to any that comes).
func TestCloseSendsNoFlush(t *testing.T) {
	files := map[string][]byte{}
	for i := 0; i < 10; i++ {
		files[fmt.Sprintf("f%d", i)] = bytes.Repeat([]byte{byte(i)}, 100*i+1)
	}
	mnt, m := mountLocal(t, files, 64<<20)
	for round := 0; round < 2; round++ { // cold (cached mode), then warm (passthrough)
		for name, want := range files {
			got, err := os.ReadFile(filepath.Join(mnt, name))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %s: %v", name, err)
			}
		}
	}
	waitReleased(t, m)
	if n := m.flushes.Load(); n != 0 {
		t.Fatalf("20 closes sent %d FLUSH requests, want 0", n)
	}
}

// waitReleased waits until the kernel has sent RELEASE for every open (it does so
// asynchronously after close) and each has let go of its cache object.
func waitReleased(t *testing.T, m *ioModes) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m.mu.Lock()
		n := len(m.files)
		m.mu.Unlock()
		// files first: a release leaves files after it counts itself in releasing.
		if n == 0 && m.releasing.Load() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d releases never arrived", n)
		}
	}
}

// TestBackingFileKeptAcrossOpens: a complete file opened again and again is read by
// passthrough from one backing file, registered with the kernel once and kept while
// the cache keeps the object open; evicting the object unregisters it, and the next
// open registers the new object's.
func TestBackingFileKeptAcrossOpens(t *testing.T) {
	data := bytes.Repeat([]byte("small"), 1000)
	mnt, m := mountLocal(t, map[string][]byte{"f": data}, 64<<20)
	p := filepath.Join(mnt, "f")
	if _, err := os.ReadFile(p); err != nil { // cold: cached mode, fills the object
		t.Fatal(err)
	}
	waitReleased(t, m) // a cached open not yet released keeps the next one cached
	for i := 0; i < 10; i++ {
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("warm read %d: %v", i, err)
		}
	}
	waitReleased(t, m)
	if n, live := m.registered.Load(), m.backings.Load(); n != 1 || live != 1 {
		t.Fatalf("10 warm opens registered %d backing files, %d still registered; want 1, 1", n, live)
	}
	if n, err := m.fsys.c.Evict(context.Background(), []string{"f"}, false); err != nil || n != 1 {
		t.Fatalf("evict: %d, %v", n, err)
	}
	if live := m.backings.Load(); live != 0 {
		t.Fatalf("the evicted object's backing file is still registered (%d)", live)
	}
	for i := 0; i < 2; i++ { // refetched (cached mode), then passthrough again
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read after evict: %v", err)
		}
		waitReleased(t, m)
	}
	waitReleased(t, m)
	if n, live := m.registered.Load(), m.backings.Load(); n != 2 || live != 1 {
		t.Fatalf("after evict and two reads: %d registered in all, %d live; want 2, 1", n, live)
	}
}

// TestNewVersionNotReadFromKeptBackingFile: when the origin's file changes, reads get
// the new version, and the old version's backing file, kept while its object was
// open, is unregistered with the old object: the kernel holds no unlinked file.
func TestNewVersionNotReadFromKeptBackingFile(t *testing.T) {
	old := bytes.Repeat([]byte("old version "), 1000)
	mnt, m := mountLocal(t, map[string][]byte{"f": old}, 64<<20)
	p := filepath.Join(mnt, "f")
	for i := 0; i < 2; i++ { // cold, then passthrough with a kept backing file
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, old) {
			t.Fatalf("read %d of the old version: %v", i, err)
		}
		waitReleased(t, m) // a cached open not yet released keeps the next one cached
	}
	waitReleased(t, m)
	if live := m.backings.Load(); live != 1 {
		t.Fatalf("%d backing files registered after a passthrough read, want 1", live)
	}
	src := strings.TrimPrefix(m.fsys.c.Origin().String(), "file://")
	newer := bytes.Repeat([]byte("the new version "), 900)
	if err := os.WriteFile(filepath.Join(src, "f"), newer, 0o644); err != nil {
		t.Fatal(err)
	}
	m.fsys.c.Invalidate("f") // as the metadata TTL ending would
	m.fsys.invalidate("f")
	for i := 0; i < 2; i++ {
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, newer) {
			t.Fatalf("read %d after the change: %d bytes, %v; want the new version's %d", i, len(got), err, len(newer))
		}
		waitReleased(t, m)
	}
	waitReleased(t, m)
	if n, live := m.registered.Load(), m.backings.Load(); n != 2 || live != 1 {
		t.Fatalf("after the new version's passthrough read: %d registered in all, %d live; want 2, 1 (the old one unregistered)", n, live)
	}
}
