package registry

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// deadPid is a pid no process has: one above the kernel's largest.
func deadPid(t *testing.T) int {
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Skip("no /proc/sys/kernel/pid_max:", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n + 1
}

func writeFake(t *testing.T, dir string, e Entry) string {
	b, _ := json.Marshal(e)
	p := filepath.Join(dir, strconv.Itoa(e.Pid)+".json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRegistry: an instance's entry is listed while it runs and gone after its clean
// exit; the entries of dead processes (a pid that no longer exists, or a pid reused by
// another process) are not listed and are removed, as are a killed writer's temporary
// files.
func TestRegistry(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cachegate")
	if l, err := List(dir); err != nil || len(l) != 0 {
		t.Fatalf("List of a missing registry: %v, %v", l, err)
	}
	unregister, err := Register(dir, Entry{Command: "mount", CacheDir: "/c", Origin: "http://xxxxx@h/", Mountpoint: "/m", Listen: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	dead := deadPid(t)
	stale := writeFake(t, dir, Entry{Pid: dead, CacheDir: "/dead", Started: time.Now()})
	reused := writeFake(t, dir, Entry{Pid: 1, ProcStart: 1 << 62, CacheDir: "/reused"}) // pid 1 runs, but started at another time
	tmp := filepath.Join(dir, "."+strconv.Itoa(dead)+".json.tmp-123")
	os.WriteFile(tmp, []byte("{"), 0o644)
	junk := filepath.Join(dir, "notes.txt")
	os.WriteFile(junk, []byte("x"), 0o644)

	l, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0].Pid != os.Getpid() || l[0].CacheDir != "/c" || l[0].Mountpoint != "/m" || l[0].Command != "mount" || l[0].ProcStart == 0 || l[0].Started.IsZero() {
		t.Fatalf("List = %+v, want this process's entry alone", l)
	}
	for _, p := range []string{stale, reused, tmp} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s: not pruned (%v)", p, err)
		}
	}
	if _, err := os.Stat(junk); err != nil {
		t.Errorf("a file that is not an entry was removed: %v", err)
	}
	if e, ok := ByMountpoint(l, "/m"); !ok || e.CacheDir != "/c" {
		t.Errorf("ByMountpoint(/m) = %+v, %v", e, ok)
	}
	if _, ok := ByMountpoint(l, "/m/sub"); ok {
		t.Errorf("ByMountpoint matched a path below the mount point")
	}

	unregister()
	if l, err := List(dir); err != nil || len(l) != 0 {
		t.Fatalf("after unregister: %+v, %v", l, err)
	}
}

// TestRegistryRefusesOthersDirectory: a registry directory others may write (or a
// link planted in its place) is not used.
func TestRegistryRefusesOthersDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cachegate")
	os.Mkdir(dir, 0o777)
	os.Chmod(dir, 0o777)
	if _, err := Register(dir, Entry{}); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("Register in a world-writable dir: %v", err)
	}
	if _, err := List(dir); err == nil {
		t.Errorf("List of a world-writable dir: no error")
	}
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(t.TempDir(), link)
	if _, err := Register(link, Entry{}); err == nil {
		t.Errorf("Register through a symlink: no error")
	}
}

// TestDirForUser: an ordinary user's registry is under its own XDG_RUNTIME_DIR, and
// under cachegate-UID in the temporary directory when XDG_RUNTIME_DIR is unset,
// relative, missing or another user's (root's /run/user/0 passed on by su), where
// the user could not make its entry.
func TestDirForUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a directory to another user")
	}
	const uid = 4242
	own, others := t.TempDir(), t.TempDir()
	if err := os.Chown(own, uid, uid); err != nil {
		t.Fatal(err)
	}
	tmp := "/tmp"
	fallback := filepath.Join(tmp, "cachegate-4242")
	for _, c := range []struct{ runtimeDir, want string }{
		{own, filepath.Join(own, "cachegate")},
		{"", fallback},
		{"run/user/4242", fallback},
		{filepath.Join(own, "missing"), fallback},
		{others, fallback},
	} {
		if got := dirFor(uid, c.runtimeDir, tmp); got != c.want {
			t.Errorf("dirFor(uid %d, XDG_RUNTIME_DIR=%q) = %s, want %s", uid, c.runtimeDir, got, c.want)
		}
	}
	if got := dirFor(0, own, tmp); got != "/run/cachegate" {
		t.Errorf("root's registry: %s, want /run/cachegate", got)
	}
}

// TestDaemonEntriesPerMount: a daemon registers itself and each mount (Root) under
// one pid; each is listed and removed on its own.
func TestDaemonEntriesPerMount(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "reg")
	self, err := Register(dir, Entry{Command: "daemon", CacheDir: "/c"})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := Register(dir, Entry{Command: "daemon", CacheDir: "/c", Mountpoint: "/mnt/pub", Root: "pub"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Register(dir, Entry{Command: "daemon", CacheDir: "/c", Mountpoint: "/mnt/d", Root: "data"}); err != nil {
		t.Fatal(err)
	}
	l, err := List(dir)
	if err != nil || len(l) != 3 {
		t.Fatalf("List = %+v, %v", l, err)
	}
	if e, ok := ByMountpoint(l, "/mnt/pub"); !ok || e.Root != "pub" {
		t.Fatalf("ByMountpoint = %+v %v", e, ok)
	}
	pub()
	if l, _ = List(dir); len(l) != 2 {
		t.Fatalf("after one unregister: %+v", l)
	}
	self()
	if l, _ = List(dir); len(l) != 1 || l[0].Root != "data" {
		t.Fatalf("after two: %+v", l)
	}
	if _, err := Register(dir, Entry{Root: "../x"}); err == nil {
		t.Fatal("a root with a path in it was accepted")
	}
}
