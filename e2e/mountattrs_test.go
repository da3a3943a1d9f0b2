package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runCLITimeout is runCLI for commands that must exit by themselves (a serve that
// should have refused to start): killed after 30s instead of hanging the suite.
func runCLITimeout(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case ctx.Err() != nil:
		t.Fatalf("cachegate %s did not exit within 30s:\n%s", strings.Join(args, " "), out)
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatal(err)
	return "", 0
}

// statOwnerMode returns the owner and permission bits of path.
func statOwnerMode(t *testing.T, path string) (uint32, uint32, os.FileMode) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid, os.FileMode(st.Mode & 0o7777)
}

// readAs reads path as another user (setpriv) and reports whether it could.
func readAs(t *testing.T, uid, path string) bool {
	t.Helper()
	out, err := exec.Command("setpriv", "--reuid="+uid, "--regid="+uid, "--clear-groups", "cat", path).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Permission denied") {
		t.Fatalf("cat %s as %s: %v\n%s", path, uid, err, out)
	}
	return err == nil
}

// Every file of a web origin showed as r--r--r-- root root. --uid, --gid,
// --file-mode and --dir-mode set what the mount shows, and the kernel enforces it;
// --umask clears bits of the defaults (0444, 0555, the mounting user); the flags
// can come from the environment.
func TestMountOwnerAndModeFlags(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(workDir, "modes-origin")
	writeRandom(t, filepath.Join(dir, "sub", "f.bin"), 1000, 1)
	srv := startNginx(t, dir, "json")

	m := startMount(t, srv.URL, "", "--uid", "1001", "--gid", "1001", "--file-mode", "0440", "--dir-mode", "550", "--allow-other")
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{m.Dir, 0o550}, {filepath.Join(m.Dir, "sub"), 0o550}, {filepath.Join(m.Dir, "sub", "f.bin"), 0o440}} {
		uid, gid, mode := statOwnerMode(t, c.path)
		if uid != 1001 || gid != 1001 || mode != c.mode {
			t.Errorf("%s: owner %d:%d mode %04o, want 1001:1001 %04o", c.path, uid, gid, mode, c.mode)
		}
	}
	f := filepath.Join(m.Dir, "sub", "f.bin")
	if !readAs(t, "1001", f) {
		t.Errorf("the owner (1001) cannot read a 0440 file")
	}
	if readAs(t, "65534", f) {
		t.Errorf("another user read a 0440 file owned by 1001")
	}

	t.Setenv("CACHEGATE_MOUNT_GID", "1002")
	m2 := startMount(t, srv.URL, "", "--umask", "027")
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{m2.Dir, 0o550}, {filepath.Join(m2.Dir, "sub"), 0o550}, {filepath.Join(m2.Dir, "sub", "f.bin"), 0o440}} {
		uid, gid, mode := statOwnerMode(t, c.path)
		if uid != uint32(os.Getuid()) || gid != 1002 || mode != c.mode {
			t.Errorf("%s: owner %d:%d mode %04o, want %d:1002 %04o", c.path, uid, gid, mode, os.Getuid(), c.mode)
		}
	}

	for _, bad := range [][]string{{"--file-mode", "0999"}, {"--dir-mode", "04755"}, {"--uid", "-1"}, {"--umask", "x"}} {
		out, code := runCLITimeout(t, "", append([]string{"mount", srv.URL, t.TempDir(), "--cache-dir", t.TempDir()}, bad...)...)
		if code != 2 || !strings.Contains(out, bad[0]) || strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Errorf("mount %v: exit %d, want 2 and one line naming the flag:\n%s", bad, code, out)
		}
	}
}

// A local origin keeps its owners and modes unless a flag overrides them.
func TestMountFlagsOverrideLocalOwners(t *testing.T) {
	requireRoot(t)
	dir := newLocalOrigin(t, "owners-origin")
	f := filepath.Join(dir, "f.bin")
	writeRandom(t, f, 100, 1)
	os.Chown(f, 1234, 1235)
	os.Chmod(f, 0o640)
	m := startMount(t, dir, "", "--gid", "7", "--file-mode", "0400")
	if uid, gid, mode := statOwnerMode(t, filepath.Join(m.Dir, "f.bin")); uid != 1234 || gid != 7 || mode != 0o400 {
		t.Errorf("f.bin: owner %d:%d mode %04o, want 1234:7 0400 (the origin's uid, the flags' gid and mode)", uid, gid, mode)
	}
	if _, _, mode := statOwnerMode(t, m.Dir); mode != 0o555 {
		t.Errorf("root: mode %04o, want the origin's 0755 without write bits", mode)
	}
}
