package cache

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A cache directory that another user owns, or that group or others may write, could
// have been prepared to make this process write where it should not: it is refused
// with an error that says how to fix it.
func TestUntrustedCacheDirIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	for _, tc := range []struct {
		name    string
		prepare func(dir string) error
		want    string
	}{
		{"owned by another user", func(dir string) error { return os.Chown(dir, 1001, 1001) }, "is owned by uid 1001, not 0: chown it or pick another --cache-dir"},
		{"writable by others", func(dir string) error { return os.Chmod(dir, 0o777) }, "is writable by group or others"},
		{"objects owned by another user", func(dir string) error {
			if err := os.Mkdir(filepath.Join(dir, "objects"), 0o700); err != nil {
				return err
			}
			return os.Chown(filepath.Join(dir, "objects"), 1001, 1001)
		}, "objects is owned by uid 1001"},
		{"objects a symlink", func(dir string) error {
			return os.Symlink(t.TempDir(), filepath.Join(dir, "objects"))
		}, "is not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if err := tc.prepare(f.cacheDir); err != nil {
				t.Fatal(err)
			}
			c, err := Open(f.origin, f.opts)
			if err == nil {
				c.Close()
				t.Fatal("an untrusted cache dir was used")
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q, want one line containing %q", msg, tc.want)
			}
		})
	}
}

// A lock file that is a symlink is refused without touching what it points at.
func TestLockSymlinkIsNotFollowed(t *testing.T) {
	f := newFixture(t)
	victim := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(victim, []byte("precious contents\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(f.cacheDir, "lock")); err != nil {
		t.Fatal(err)
	}
	c, err := Open(f.origin, f.opts)
	if err == nil {
		c.Close()
		t.Error("a cache dir whose lock is a symlink was used")
	} else if !strings.Contains(err.Error(), "symlink") {
		t.Errorf("error %q does not say the lock is a symlink", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious contents\n" {
		t.Fatalf("the lock symlink's target was written: %q", b)
	}
}

// A data file replaced by a symlink to a file of the same size is never written
// through (no holes punched, no origin bytes), and reads still get the origin's bytes.
func TestDataSymlinkIsNotWrittenThrough(t *testing.T) {
	f := newFixture(t)
	const size = 1 << 20
	want := randomFile(t, f.originDir, "d.bin", size, 90)
	c := f.open()
	h, err := c.Open(t.Context(), "d.bin")
	if err != nil {
		t.Fatal(err)
	}
	// Half the chunks present: the rest would be fetched into the file, and the
	// blocks of the absent ones punched out when the cache opens again.
	if _, err := h.Fill(t.Context(), 0, size/2); err != nil {
		t.Fatal(err)
	}
	data := c.objectPath(h.o.key, ".data")
	h.Close()
	c.Close()

	victimBytes := bytes.Repeat([]byte("v"), size)
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, victimBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	var before unix.Stat_t
	unix.Stat(victim, &before)
	if err := os.Remove(data); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, data); err != nil {
		t.Fatal(err)
	}
	c = f.open()
	defer c.Close()
	if got := readWhole(t, c, "d.bin"); !bytes.Equal(got, want) {
		t.Error("read through a cache whose data file is a symlink differs from the origin")
	}
	var after unix.Stat_t
	unix.Stat(victim, &after)
	if b, _ := os.ReadFile(victim); !bytes.Equal(b, victimBytes) || after.Blocks != before.Blocks {
		t.Fatalf("the data symlink's target was written (blocks %d, were %d)", after.Blocks, before.Blocks)
	}
}
