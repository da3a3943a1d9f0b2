package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDaemonReaddBusy: an origin removed while a file of its mount is open, then
// added back before that file closes, is mounted again once the old mount goes (it
// stayed unmounted: its re-mount failed on the busy old one and nothing retried); and
// a stop while a removed origin's mount is busy takes that mount too (it was left as
// a dead mount: the daemon had forgotten it).
func TestDaemonReaddBusy(t *testing.T) {
	d, a, b, sumB, _, reload := twoOriginDaemon(t, "readd", 100<<10, 300<<10, 2231)
	ma, mb := a.mount, b.mount

	fb, err := os.Open(filepath.Join(mb, "b.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	reload(1, a)
	if !strings.Contains(d.logs.String(), "mount busy") {
		t.Fatalf("the removed mount was not busy\n%s", d.logs.String())
	}
	reload(2, a, b)
	if _, err := io.Copy(io.Discard, fb); err != nil {
		t.Fatalf("the old mount's open file: %v", err)
	}
	fb.Close()
	if !pollFor(15*time.Second, func() bool {
		return strings.Count(d.logs.String(), "msg=mounted origin=b ") == 2 && isMounted(mb)
	}) {
		t.Fatalf("the origin added back was not mounted again once its old mount went\n%s", d.logs.String())
	}
	if sha256File(t, filepath.Join(mb, "b.bin")) != sumB {
		t.Fatal("b.bin differs through the new mount")
	}

	// Removed again while busy, then the daemon stops: no mount stays behind.
	fb2, err := os.Open(filepath.Join(mb, "b.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer fb2.Close()
	reload(3, a)
	if strings.Count(d.logs.String(), "mount busy") != 2 || !isMounted(mb) {
		t.Fatalf("the removed mount was not busy\n%s", d.logs.String())
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("the daemon did not stop\n%s", d.logs.String())
	}
	fb2.Close()
	if isMounted(mb) || isMounted(ma) {
		t.Fatalf("a mount stayed behind the stopped daemon (a: %v, b: %v)\n%s", isMounted(ma), isMounted(mb), d.logs.String())
	}
}

// TestDaemonRestartAfterKill9: a daemon killed with -9 (systemd's watchdog, the OOM
// killer) leaves its mounts dead; started again with the same config (what
// Restart=on-failure does) it comes up and mounts: its config check and its mounts
// refused the dead mount points ("does not exist: create it"), so the unit could
// never restart by itself. The killed daemon's registry entries go with it.
func TestDaemonRestartAfterKill9(t *testing.T) {
	requireRoot(t)
	root := filepath.Join(workDir, "kill9-daemon")
	sum := writeRandom(t, filepath.Join(root, "k.bin"), 100<<10, 2241)
	mnt := newMountDir(t)
	cacheDir := newCacheDir(t)
	file := filepath.Join(t.TempDir(), "cachegate.yaml")
	writeDaemonConfig(t, file, cacheDir, "64MiB", "256KiB", "", []daemonOrigin{{name: "k", url: root, mount: mnt}})
	d := startDaemon(t, nil, file, mnt)
	if sha256File(t, filepath.Join(mnt, "k.bin")) != sum {
		t.Fatal("k.bin differs")
	}
	pid := d.cmd.Process.Pid
	d.kill9()
	if !isMounted(mnt) {
		t.Skip("the kernel took the killed daemon's mount away")
	}
	if out, code := runCLI(t, "daemon", "--check", file); code != 0 {
		t.Errorf("--check over a dead mount of the killed daemon: %d %s", code, out)
	}
	d2 := startDaemon(t, nil, file, mnt)
	if sha256File(t, filepath.Join(mnt, "k.bin")) != sum {
		t.Fatalf("k.bin differs after the restart\n%s", d2.logs.String())
	}
	runCLI(t, "status")
	if left, _ := filepath.Glob(fmt.Sprintf("/run/cachegate/%d*.json", pid)); len(left) > 0 {
		t.Errorf("the killed daemon's registry entries stay: %v", left)
	}
}

// TestDaemonReloadRemountsMissing: a mount of the config that is missing (unmounted
// by hand, or whose mount failed at a reload) is mounted again by a reload of the
// same file, as systemctl reload promises; it stayed missing until the origin's
// settings changed or the daemon restarted.
func TestDaemonReloadRemountsMissing(t *testing.T) {
	requireRoot(t)
	root := filepath.Join(workDir, "remount-missing")
	rootA := filepath.Join(workDir, "remount-missing-a")
	writeRandom(t, filepath.Join(rootA, "a.bin"), 1000, 2252)
	sum := writeRandom(t, filepath.Join(root, "r.bin"), 100<<10, 2251)
	ma, mb := newMountDir(t), newMountDir(t)
	file := filepath.Join(t.TempDir(), "cachegate.yaml")
	writeDaemonConfig(t, file, newCacheDir(t), "64MiB", "256KiB", "", []daemonOrigin{{name: "a", url: rootA, mount: ma}, {name: "b", url: root, mount: mb}})
	d := startDaemon(t, nil, file, ma, mb)
	if err := syscall.Unmount(mb, 0); err != nil {
		t.Fatal(err)
	}
	if !pollFor(10*time.Second, func() bool { return strings.Contains(d.logs.String(), "mount went away") }) {
		t.Fatalf("the daemon did not see its mount go\n%s", d.logs.String())
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	if !pollFor(10*time.Second, func() bool { return strings.Contains(d.logs.String(), "config reloaded") && isMounted(mb) }) {
		t.Fatalf("a reload did not mount the missing mount again\n%s", d.logs.String())
	}
	if sha256File(t, filepath.Join(mb, "r.bin")) != sum {
		t.Fatal("r.bin differs through the mount made again")
	}
}

// TestDaemonChangedThenRemovedBusy: an origin changed while a file of its mount is
// open, then removed by a second reload before that file closes, keeps its route
// until the old mount goes: the open file reads on (its route went at once: the
// second reload saw no mount of the name and unrouted it).
func TestDaemonChangedThenRemovedBusy(t *testing.T) {
	d, a, b, sumB, cacheDir, reload := twoOriginDaemon(t, "chrm", 1000, 600<<10, 2261)
	mb := b.mount
	fb, err := os.Open(filepath.Join(mb, "b.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	b2 := b
	b2.extra = "    metadata_ttl: 5s\n"
	reload(1, a, b2)
	if !strings.Contains(d.logs.String(), "mount busy") {
		t.Fatalf("the changed mount was not busy\n%s", d.logs.String())
	}
	reload(2, a)
	h := newHasher()
	if _, err := io.Copy(h, fb); err != nil || h.sum() != sumB {
		t.Fatalf("the open file of the changed, then removed, origin: %v (sum right: %v)\n%s", err, h.sum() == sumB, d.logs.String())
	}
	fb.Close()
	if !pollFor(10*time.Second, func() bool { return !isMounted(mb) }) {
		t.Fatalf("the removed mount stayed after its file closed\n%s", d.logs.String())
	}
	if out, code := runCLI(t, "status", "--json", "--cache-dir", cacheDir); code != 0 || strings.Contains(out, `"b":`) {
		t.Errorf("status after the removal: %d %s", code, out)
	}
}

// twoOriginDaemon starts a daemon over two local origins, a (a.bin, sizeA bytes) and
// b (b.bin, sizeB bytes), in workDir/NAME-a and -b, each mounted. It returns b.bin's
// sum, the cache dir and reload, which rewrites the config to origins, sends SIGHUP and waits for
// the n-th reload.
func twoOriginDaemon(t *testing.T, name string, sizeA, sizeB int64, seed uint64) (d *proc, a, b daemonOrigin, sumB, cacheDir string, reload func(n int, origins ...daemonOrigin)) {
	requireRoot(t)
	rootA, rootB := filepath.Join(workDir, name+"-a"), filepath.Join(workDir, name+"-b")
	writeRandom(t, filepath.Join(rootA, "a.bin"), sizeA, seed)
	sumB = writeRandom(t, filepath.Join(rootB, "b.bin"), sizeB, seed+1)
	ma, mb := newMountDir(t), newMountDir(t)
	cacheDir = newCacheDir(t)
	file := filepath.Join(t.TempDir(), "cachegate.yaml")
	a, b = daemonOrigin{name: "a", url: rootA, mount: ma}, daemonOrigin{name: "b", url: rootB, mount: mb}
	writeDaemonConfig(t, file, cacheDir, "64MiB", "256KiB", "", []daemonOrigin{a, b})
	d = startDaemon(t, nil, file, ma, mb)
	reload = func(n int, origins ...daemonOrigin) {
		t.Helper()
		writeDaemonConfig(t, file, cacheDir, "64MiB", "256KiB", "", origins)
		d.cmd.Process.Signal(syscall.SIGHUP)
		if !pollFor(10*time.Second, func() bool { return strings.Count(d.logs.String(), "config reloaded") == n }) {
			t.Fatalf("reload %d not done\n%s", n, d.logs.String())
		}
	}
	return d, a, b, sumB, cacheDir, reload
}
