package fusefs

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/origin"
)

// TestMountOfASubtree: Options.Root mounts one directory of the cache's namespace
// (cachegate daemon mounts each origin NAME of a Mux), at the mount's root.
func TestMountOfASubtree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	a, b := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(a, "d"), 0o755)
	os.WriteFile(filepath.Join(a, "d", "f"), []byte("from a"), 0o644)
	os.WriteFile(filepath.Join(b, "g"), []byte("from b"), 0o644)
	m := origin.NewMux("daemon")
	for name, dir := range map[string]string{"a": a, "b": b} {
		o, err := origin.NewLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		m.Set(name, o, 0)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := cache.Open(m, cache.Options{Dir: t.TempDir(), Limit: 1 << 20, ChunkSize: 64 << 10, TTL: time.Minute, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mnt := t.TempDir()
	srv, _, err := mount(mnt, c, Options{Root: "a", FsName: "a-origin", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Unmount()
	ents, err := os.ReadDir(mnt)
	if err != nil || len(ents) != 1 || ents[0].Name() != "d" {
		t.Fatalf("root of the mount: %v, %v", ents, err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "d", "f")); err != nil || string(got) != "from a" {
		t.Fatalf("d/f = %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "b")); !os.IsNotExist(err) {
		t.Fatalf("another origin shows through: %v", err)
	}
	if st, err := os.Stat(mnt); err != nil || !st.IsDir() {
		t.Fatalf("stat of the mount: %v", err)
	}
}
