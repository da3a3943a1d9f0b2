package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestUnmountRefusesOtherMounts: `cachegate unmount` of a mount that is not
// cachegate's (a typo, an NFS or data mount) is refused and names what is mounted
// there; a cachegate mount is still unmounted.
func TestUnmountRefusesOtherMounts(t *testing.T) {
	requireRoot(t)
	dir, err := os.MkdirTemp(workDir, "tmpfs-")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	out, code := runCLI(t, "unmount", dir)
	if code == 0 || !strings.Contains(out, dir+" is a tmpfs mount, not cachegate's: use umount") {
		t.Errorf("cachegate unmount of a tmpfs: exit %d, %q; want a refusal naming the tmpfs", code, out)
	}
	if !isMounted(dir) {
		t.Fatal("cachegate unmount removed a tmpfs it never mounted")
	}

	// Its own mounts (fuse.cachegate in mountinfo) it still unmounts.
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	m := startMount(t, src, "")
	if out, code := runCLI(t, "unmount", m.Dir); code != 0 || isMounted(m.Dir) {
		t.Errorf("cachegate unmount of a cachegate mount: exit %d, %q, mounted afterwards: %v", code, out, isMounted(m.Dir))
	}
}
