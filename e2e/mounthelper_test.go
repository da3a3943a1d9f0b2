package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// installHelper links the test's binary as /sbin/mount.cachegate, where mount(8)
// looks for the helper of type cachegate (util-linux searches /sbin, /sbin/fs.d and
// /sbin/fs, and no variable moves it). It refuses to replace one already there and
// removes its own link when the test ends.
func installHelper(t *testing.T) {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath("mount"); err != nil {
		t.Skip("no mount(8)")
	}
	link := "/sbin/mount.cachegate"
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s exists (%v): not replacing it; remove it to run this test", link, err)
	}
	if err := os.Symlink(binary, link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if dest, err := os.Readlink(link); err == nil && dest == binary {
			os.Remove(link)
		}
	})
}

// helperMountPid is the pid of the cachegate process registered as mounting dir
// (0 when none).
func helperMountPid(t *testing.T, dir string) int {
	t.Helper()
	files, _ := filepath.Glob("/run/cachegate/*.json")
	for _, f := range files {
		b, err := os.ReadFile(f)
		var e instance
		if err == nil && json.Unmarshal(b, &e) == nil && e.Mountpoint == dir && processAlive(e.Pid) {
			return e.Pid
		}
	}
	return 0
}

// processAlive reports whether pid runs (a zombie has exited: the background mount's
// parent, the helper, is gone, and whoever inherits it may not reap it at once).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// processesOn lists the live processes whose command line names dir.
func processesOn(dir string) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if a == dir {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				if processAlive(pid) {
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}

// helperMountDir makes a mount point and cleans up whatever a helper mount left on
// it when the test ends: the mount and its process.
func helperMountDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(workDir, "helper-mnt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pids := processesOn(dir)
		if isMounted(dir) {
			if err := syscall.Unmount(dir, 0); err != nil {
				abortFuse(dir)
				syscall.Unmount(dir, syscall.MNT_DETACH)
			}
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		// The background mounts' logs, named by the escaped mount point.
		logs, _ := os.ReadDir("/var/log/cachegate")
		for _, l := range logs {
			if strings.Contains(l.Name(), strings.ReplaceAll(filepath.Base(dir), "-", `\x2d`)+".log") {
				os.Remove(filepath.Join("/var/log/cachegate", l.Name()))
			}
		}
	})
	return dir
}

func runMount(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command("mount", args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return string(out), 0
}

// waitGone waits (generously) for pid to exit.
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); processAlive(pid); {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still runs 10s after umount", what, pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Issue 22: mount -t cachegate through /sbin/mount.cachegate mounts in the
// background and returns once the mount answers; env.NAME=VALUE reaches the mount
// process's environment but not its command line; umount stops the process; a bad
// origin or an unknown option exits 32 with one line and leaves nothing behind.
func TestMountHelper(t *testing.T) {
	installHelper(t)
	root := filepath.Join(workDir, "helper-origin")
	sum := writeRandom(t, filepath.Join(root, "d/a.bin"), 300<<10, 2201)
	nx := startNginx(t, root, "json")
	dir := helperMountDir(t)
	cacheDir := dir + "-cache"
	out, code := runMount(t, "-t", "cachegate", nx.URL, dir, "-o",
		"cache_dir="+cacheDir+",cache_size=64MiB,metadata_ttl=5m,env.CACHEGATE_TEST_SECRET=hunter2,origin_header=X-Test-Token: sekrit42")
	if code != 0 {
		t.Fatalf("mount -t cachegate: exit %d: %s", code, out)
	}
	if !isMounted(dir) {
		t.Fatalf("mount returned 0 but %s is not mounted", dir)
	}
	if got := sha256File(t, filepath.Join(dir, "d/a.bin")); got != sum {
		t.Fatalf("d/a.bin through the helper's mount: sha256 %s, want %s", got, sum)
	}
	pid := helperMountPid(t, dir)
	if pid == 0 {
		t.Fatal("no registered process for the mount")
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	// Every local user reads argv (ps): it names the mount, never an option's value.
	if !strings.HasPrefix(string(cmdline), "cachegate\x00mount\x00") || strings.Contains(string(cmdline), "hunter2") ||
		strings.Contains(string(cmdline), "sekrit42") || strings.Contains(string(cmdline), "cache-size") {
		t.Errorf("the mount process's command line is %q: want cachegate mount -- ORIGIN DIR, without the options", cmdline)
	}
	// Its log is kept outside the cache dir, whose bytes --cache-size bounds.
	if _, err := os.Stat(filepath.Join(cacheDir, "mount.log")); err == nil {
		t.Errorf("the background mount logs into its cache dir")
	}
	if !strings.Contains(string(environ), "\x00CACHEGATE_TEST_SECRET=hunter2\x00") && !strings.HasPrefix(string(environ), "CACHEGATE_TEST_SECRET=hunter2\x00") {
		t.Errorf("env.CACHEGATE_TEST_SECRET=hunter2 is not in the mount process's environment")
	}
	if out, code := runMount(t, "-t", "cachegate", nx.URL, dir, "-o", "cache_dir="+cacheDir); code == 0 {
		t.Errorf("a second mount on the same dir: exit 0: %s", out)
	}

	// A plain umount ends the background process, which unregisters.
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v: %s", err, out)
	}
	waitGone(t, pid, "the background mount")
	if _, err := os.Stat(fmt.Sprintf("/run/cachegate/%d.json", pid)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("registry entry of the unmounted process: %v", err)
	}

	// A bad origin: exit 32, one line, nothing left.
	bad := helperMountDir(t)
	badURL := fmt.Sprintf("http://127.0.0.1:%d/", freePort(t))
	out, code = runMount(t, "-t", "cachegate", badURL, bad, "-o", "cache_dir="+bad+"-cache,cache_size=64MiB,_netdev,nofail")
	if code != 32 || !strings.Contains(out, "cannot reach origin") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("mount of an unreachable origin: exit %d, want 32 with one line naming it: %q", code, out)
	}
	if isMounted(bad) {
		t.Error("a failed helper mount left a mount")
	}
	if pids := processesOn(bad); len(pids) != 0 {
		t.Errorf("a failed helper mount left processes %v", pids)
	}
	if pid := helperMountPid(t, bad); pid != 0 {
		t.Errorf("a failed helper mount left a registry entry for pid %d", pid)
	}

	// An unknown option is named.
	out, code = runMount(t, "-t", "cachegate", nx.URL, bad, "-o", "cache_dir="+bad+"-cache,bogus_opt=1")
	if code != 32 || !strings.Contains(out, "bogus_opt") {
		t.Errorf("mount with an unknown option: exit %d, want 32 naming it: %q", code, out)
	}
	if isMounted(bad) || len(processesOn(bad)) != 0 {
		t.Error("a refused option left a mount or a process")
	}
}

// Issue 22: an fstab line of type cachegate mounts with mount -a (-T: this fstab
// rather than /etc/fstab), with mount(8)'s options among cachegate's.
func TestMountHelperFstab(t *testing.T) {
	installHelper(t)
	root := filepath.Join(workDir, "fstab-origin")
	sum := writeRandom(t, filepath.Join(root, "b.bin"), 200<<10, 2202)
	nx := startNginx(t, root, "html")
	dir := helperMountDir(t)
	fstab := filepath.Join(t.TempDir(), "fstab")
	line := fmt.Sprintf("%s %s cachegate _netdev,nofail,x-systemd.automount,cache_size=64MiB,cache_dir=%s-cache 0 0\n", nx.URL, dir, dir)
	if err := os.WriteFile(fstab, []byte("# test fstab\n"+line), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := runMount(t, "-a", "-T", fstab); code != 0 {
		t.Fatalf("mount -a -T %s: exit %d: %s", line, code, out)
	}
	if got := sha256File(t, filepath.Join(dir, "b.bin")); got != sum {
		t.Fatalf("b.bin: sha256 %s, want %s", got, sum)
	}
	pid := helperMountPid(t, dir)
	// mount -a again: mount(8) knows the entry is mounted (mountinfo's source is the
	// fstab's) and leaves it alone.
	if out, code := runMount(t, "-a", "-T", fstab); code != 0 {
		t.Errorf("second mount -a: exit %d: %s", code, out)
	}
	if pids := processesOn(dir); len(pids) != 1 {
		t.Errorf("after a second mount -a, processes %v run on the mount point, want 1", pids)
	}
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v: %s", err, out)
	}
	if pid == 0 {
		t.Fatal("no registered process for the mount")
	}
	waitGone(t, pid, "the background mount")
}
