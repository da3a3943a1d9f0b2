package fusefs

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// lockedBuffer collects log output written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Reads served by the daemon (not passthrough) reach the kernel by splice: the
// mount's requests fit go-fuse's pipe, and its readahead is raised from the
// kernel's 128 KiB. With 1 MiB requests every reply fell back to pread and write,
// and go-fuse said so in the log once per request.
func TestDaemonReadsSplice(t *testing.T) {
	data := make([]byte, 24<<20)
	rand.NewChaCha8([32]byte{1}).Read(data)
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mnt, _ := mountLocalWith(t, map[string][]byte{"big": data}, 64<<20, Options{NoPassthrough: true, Logger: log})

	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		t.Fatal(err)
	}
	ra, err := os.ReadFile(fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(ra)), fmt.Sprint(kernelReadahead>>10); got != want {
		t.Errorf("read_ahead_kb = %s, want %s", got, want)
	}

	for round := 0; round < 2; round++ { // cold, then from the complete cache file
		got, err := os.ReadFile(filepath.Join(mnt, "big"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("round %d: wrong bytes", round)
		}
	}
	if s := logs.String(); strings.Contains(s, "trySplice") || strings.Contains(s, "level=WARN") {
		t.Errorf("go-fuse did not splice every reply:\n%.2000s", s)
	}
}
