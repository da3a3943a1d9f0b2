package fusefs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
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
// asynchronously after close).
func waitReleased(t *testing.T, m *ioModes) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m.mu.Lock()
		n := len(m.files)
		m.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d releases never arrived", n)
		}
	}
}
