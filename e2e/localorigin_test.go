package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// newLocalOrigin makes a directory for a local origin that every user may read.
func newLocalOrigin(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp(workDir, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	return dir
}

// A file of a local origin replaced by a FIFO after cachegate statted it used to hang
// its reader (and the server's request) for as long as no writer came, whatever
// --origin-timeout said. Now the open does not wait, the FIFO is refused, and the
// reader gets EIO (the server 502) at once.
func TestLocalOriginFIFOFailsFast(t *testing.T) {
	dir := newLocalOrigin(t, "fifo-origin")
	writeRandom(t, filepath.Join(dir, "f.bin"), 1000, 1)
	port := freePort(t)
	m := startMount(t, dir, "", "--origin-timeout", "60s", "--serve", fmt.Sprintf("127.0.0.1:%d", port))
	base := fmt.Sprintf("http://127.0.0.1:%d/", port)
	// Stat it through both, so that both hold the regular file's attributes.
	if _, err := os.Stat(filepath.Join(m.Dir, "f.bin")); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Head(base + "f.bin"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	fifo := filepath.Join(dir, "f.bin")
	os.Remove(fifo)
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// A cachegate that waits on the FIFO is released by a writer coming and going.
	t.Cleanup(func() {
		for i := 0; i < 20; i++ {
			if fd, err := syscall.Open(fifo, syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				syscall.Close(fd)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	const bound = 10 * time.Second // generous; the origin timeout is 60s
	res := make(chan error, 1)
	start := time.Now()
	go func() { _, err := os.ReadFile(filepath.Join(m.Dir, "f.bin")); res <- err }()
	select {
	case err := <-res:
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("read through the mount of a file replaced by a FIFO: %v, want EIO", err)
		}
		t.Logf("mount read failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(bound):
		t.Errorf("read through the mount of a file replaced by a FIFO still waits after %v", bound)
	}

	// The kernel may still hold the file's attributes, but cachegate forgot them:
	// a new HEAD already says it is gone, so ask with a stat cached again first.
	writeRandom(t, filepath.Join(dir, "g.bin"), 1000, 2)
	if resp, err := http.Head(base + "g.bin"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("HEAD g.bin: %v %v", resp, err)
	}
	os.Remove(filepath.Join(dir, "g.bin"))
	if err := syscall.Mkfifo(filepath.Join(dir, "g.bin"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if fd, err := syscall.Open(filepath.Join(dir, "g.bin"), syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			syscall.Close(fd)
		}
	})
	client := &http.Client{Timeout: bound}
	start = time.Now()
	resp, err := client.Get(base + "g.bin")
	if err != nil {
		t.Fatalf("GET of a file replaced by a FIFO: %v after %v", err, time.Since(start).Round(time.Millisecond))
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("GET of a file replaced by a FIFO: %s, want 502", resp.Status)
	}
}

// A local origin's owners and modes show through the mount (write bits removed), and
// the kernel checks them (default_permissions): with --allow-other, another user
// cannot read a 0600 root file but can read a 0644 one.
func TestLocalOriginPermissionsHold(t *testing.T) {
	dir := newLocalOrigin(t, "perm-local")
	os.WriteFile(filepath.Join(dir, "secret"), []byte("root only\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "public"), []byte("for everyone\n"), 0o644)
	os.Chmod(filepath.Join(dir, "secret"), 0o600) // whatever the umask
	os.Chmod(filepath.Join(dir, "public"), 0o644)
	m := startMount(t, dir, "", "--allow-other")

	for name, want := range map[string]os.FileMode{"secret": 0o400, "public": 0o444, ".": os.ModeDir | 0o555} {
		fi, err := os.Stat(filepath.Join(m.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != want || st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s through the mount: %v uid %d gid %d, want %v root root", name, fi.Mode(), st.Uid, st.Gid, want)
		}
	}
	catAs := func(uid uint32, name string) (string, error) {
		cmd := exec.Command("cat", filepath.Join(m.Dir, name))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := catAs(1001, "secret"); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("uid 1001 reading a 0600 root file: %v %q, want Permission denied", err, out)
	}
	if out, err := catAs(1001, "public"); err != nil || out != "for everyone\n" {
		t.Errorf("uid 1001 reading a 0644 file: %v %q", err, out)
	}
	if out, err := catAs(0, "secret"); err != nil || out != "root only\n" {
		t.Errorf("root reading its 0600 file: %v %q", err, out)
	}
}

// Symlinks of a local origin show as symlinks when they stay inside it; links that
// loop (loopA -> ., sub/up -> ..) no longer make endless trees for find or for
// `cache ls`, and links that leave the origin are not shown.
func TestLocalOriginSymlinksAreSymlinks(t *testing.T) {
	dir := newLocalOrigin(t, "link-origin")
	for i := 0; i < 10; i++ {
		writeRandom(t, filepath.Join(dir, fmt.Sprintf("f%02d", i)), 100, uint64(i))
		writeRandom(t, filepath.Join(dir, "sub", fmt.Sprintf("g%02d", i)), 100, uint64(100+i))
	}
	for link, target := range map[string]string{
		"loopA": ".", "loopB": ".", "sub/up": "..", "lf": "sub/g00",
		"out": "../..", "abs": "/etc", "sub/out": "up/..",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	m := startMount(t, dir, "")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "find", m.Dir).Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	// The root, 10 files, sub and its 10 files, and the links loopA, loopB, lf, sub/up.
	if err != nil || len(lines) != 26 {
		t.Fatalf("find through the mount: %d entries (%v), want 26; first ones: %q", len(lines), err, lines[:min(len(lines), 40)])
	}
	for link, want := range map[string]string{"loopA": ".", "loopB": ".", "sub/up": "..", "lf": "sub/g00"} {
		got, err := os.Readlink(filepath.Join(m.Dir, link))
		if err != nil || got != want {
			t.Errorf("readlink %s: %q %v, want %q", link, got, err, want)
		}
	}
	for _, hidden := range []string{"out", "abs", "sub/out"} {
		if _, err := os.Lstat(filepath.Join(m.Dir, hidden)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a link leaving the origin, %s, is shown: %v", hidden, err)
		}
	}
	// The kernel follows the links inside the mount.
	if a, b := sha256File(t, filepath.Join(m.Dir, "lf")), sha256File(t, filepath.Join(dir, "sub/g00")); a != b {
		t.Error("lf does not read as sub/g00")
	}
	if a, b := sha256File(t, filepath.Join(m.Dir, "loopA/sub/up/f03")), sha256File(t, filepath.Join(dir, "f03")); a != b {
		t.Error("loopA/sub/up/f03 does not read as f03")
	}

	// `cache ls /` walks the origin without following links: the 20 files.
	o, code := runCLI(t, "cache", "ls", "/", "--json", "--cache-dir", m.CacheDir)
	var objs []struct{ Path string }
	if code != 0 || json.Unmarshal([]byte(o), &objs) != nil || len(objs) != 20 {
		t.Errorf("cache ls /: exit %d, %d objects, want 20:\n%.2000s", code, len(objs), o)
	}
}

// A sidecar truncated under a running mount used to kill it with SIGBUS at the next
// read of a chunk whose record lay past the new end (the mount then gave ENOTCONN).
// Now the mount lives on and reads stay right; the damaged sidecar is dropped, with a
// log line, when the object is next opened from disk (here: at a restart).
func TestTruncatedSidecarKeepsTheMount(t *testing.T) {
	dir := newLocalOrigin(t, "sidecar-origin")
	const size = 8 << 20
	want := writeRandom(t, filepath.Join(dir, "s.bin"), size, 16)
	// 4 KiB chunks: the sidecar spans three pages, so high chunks' CRCs lie beyond
	// the page a truncated file still backs.
	flags := []string{"--chunk-size", "4KiB", "--cache-size", "64MiB"}
	m := startMount(t, dir, "", flags...)
	p := filepath.Join(m.Dir, "s.bin")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	metas, _ := filepath.Glob(filepath.Join(m.CacheDir, "objects", "*", "*.meta"))
	if len(metas) != 1 {
		t.Fatalf("sidecars: %q, want one", metas)
	}
	if err := os.Truncate(metas[0], 100); err != nil {
		t.Fatal(err)
	}
	off := int64(size - 2*4096)
	n, err := f.ReadAt(buf, off)
	if err != nil {
		t.Logf("read of a high range after the truncation: %d bytes, %v", n, err)
	}
	if !isMounted(m.Dir) {
		t.Fatal("the mount is gone")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the mount no longer answers: %v", err)
	}
	if got := sha256File(t, p); got != want {
		t.Fatal("whole read after the sidecar's truncation differs from the origin")
	}
	f.Close()

	m.stop(t)
	m = startMount(t, dir, m.CacheDir, flags...)
	if got := sha256File(t, filepath.Join(m.Dir, "s.bin")); got != want {
		t.Fatal("read after a restart differs from the origin")
	}
	if !strings.Contains(m.logs.String(), "dropping unreadable cache object") {
		t.Errorf("the restart did not drop the damaged sidecar:\n%s", m.logs.String())
	}
}
