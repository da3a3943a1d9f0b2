package cache

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// An indexed object whose data file was replaced by a symlink (to a file with the
// very bytes), by another user's file or by a longer file is not served from it after a restart: it reads
// right (fetched again), and the cache then counts what du sees.
func TestIndexedDataFileReplacedBeforeStart(t *testing.T) {
	for _, tc := range []string{"symlink", "longer", "other owner"} {
		t.Run(tc, func(t *testing.T) {
			f := newFixture(t)
			want := []byte("small and indexed")
			if err := os.WriteFile(filepath.Join(f.originDir, "s"), want, 0o644); err != nil {
				t.Fatal(err)
			}
			c := f.open()
			readWhole(t, c, "s")
			dataPath := c.objectPath(objectOf(t, c, "s").key, ".data")
			c.Close()
			os.Remove(dataPath)
			switch tc {
			case "symlink":
				target := filepath.Join(t.TempDir(), "elsewhere")
				if err := os.WriteFile(target, want, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(target, dataPath); err != nil {
					t.Fatal(err)
				}
			case "other owner":
				if os.Geteuid() != 0 {
					t.Skip("needs root to give a file away")
				}
				if err := os.WriteFile(dataPath, want, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(dataPath, 65534, 65534); err != nil {
					t.Fatal(err)
				}
			case "longer":
				if err := os.WriteFile(dataPath, bytes.Repeat([]byte{'x'}, 1<<20), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c = f.open()
			defer c.Close()
			for i := 0; i < 2; i++ {
				if got := readWhole(t, c, "s"); !bytes.Equal(got, want) {
					t.Fatalf("read %d: %q", i, got)
				}
			}
			if used, _ := c.Used(); used != objectsDu(t, c) {
				t.Errorf("cache counts %d bytes, du %d", used, objectsDu(t, c))
			}
		})
	}
}
