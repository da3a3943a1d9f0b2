package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testUser is an ordinary user made for one test, removed when it ends.
type testUser struct {
	name     string
	uid, gid uint32
	home     string // a temporary directory it owns (useradd -M makes none)
	env      []string
}

// newTestUser creates a user with no login shell and a temporary home it owns, with
// XDG_CACHE_HOME and XDG_RUNTIME_DIR below it, as a login session would give it.
func newTestUser(t *testing.T) *testUser {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("useradd missing:", err)
	}
	name := fmt.Sprintf("cgtest%d", os.Getpid()%100000)
	// A run killed before its cleanup leaves the user: reuse it.
	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "-M", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v %s", name, err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v %s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	home, err := os.MkdirTemp(workDir, "home-")
	if err != nil {
		t.Fatal(err)
	}
	tu := &testUser{name: name, uid: uint32(uid), gid: uint32(gid), home: home}
	run := filepath.Join(home, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{home, run} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	tu.env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=" + home, "USER=" + name,
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"), "XDG_RUNTIME_DIR=" + run}
	return tu
}

// command is cachegate with args, run as the user.
func (u *testUser) command(args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Env = u.env
	cmd.Dir = u.home
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid}}
	return cmd
}

// TestUserMount: an ordinary user mounts with no help from root (fusermount3), reads
// through the mount, finds it in `cachegate status`, and unmounts it with `cachegate
// unmount`; the cache is under $XDG_CACHE_HOME/cachegate. What needs root (FUSE
// passthrough) is given up with one log line, no warning; --allow-other without
// user_allow_other in /etc/fuse.conf is refused with one line saying what to add.
func TestUserMount(t *testing.T) {
	u := newTestUser(t)
	root := filepath.Join(workDir, "user-origin")
	want := []byte(strings.Repeat("cachegate for ordinary users\n", 10000))
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "f.txt"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	ng := startNginx(t, root, "json")
	mnt := filepath.Join(u.home, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(mnt, int(u.uid), int(u.gid))

	// A mount point the user may not write (fusermount3's rule): one line, first.
	refused(t, u, "root's mount point", 1, []string{"mount", ng.URL, workDir}, "not writable by you", workDir)

	// Containers without udev leave /dev/fuse 0600 (udev makes it 0666): the user is
	// told so in one line, before anything is made; then the test opens it as udev
	// would, until it ends.
	if fi, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatal(err)
	} else if mode := fi.Mode().Perm(); mode&0o006 != 0o006 {
		refused(t, u, "/dev/fuse", 1, []string{"mount", ng.URL, mnt}, "/dev/fuse", "0666")
		if err := os.Chmod("/dev/fuse", 0o666); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod("/dev/fuse", mode) })
	}

	// --allow-other first: this machine's fuse.conf does not let users use it (the
	// test does not change it), so it must be refused before anything is mounted.
	if fuseConfAllowsOther() {
		t.Log("/etc/fuse.conf has user_allow_other: skipping the --allow-other refusal")
	} else {
		refused(t, u, "--allow-other", 2, []string{"mount", ng.URL, mnt, "--allow-other"}, "user_allow_other", "/etc/fuse.conf")
		if isMounted(mnt) {
			t.Fatal("refused mount left a mount behind")
		}
	}

	if _, err := os.Stat(filepath.Join(u.home, ".cache")); err == nil {
		t.Error("a refused mount made the cache directory")
	}

	logs := &lockedBuffer{}
	cmd := u.command("mount", ng.URL, mnt)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		// Whatever happened: stop the user's cachegate (by its pid) and the mount.
		select {
		case <-done:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
		if isMounted(mnt) {
			exec.Command("fusermount3", "-uz", mnt).Run()
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
		if t.Failed() {
			t.Logf("user's cachegate mount log:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); !isMounted(mnt) || !strings.Contains(logs.String(), "msg=mounted"); {
		select {
		case <-done:
			t.Fatalf("cachegate mount as %s exited: %v\n%s", u.name, cmd.ProcessState, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("cachegate mount as %s not ready after 20s\n%s", u.name, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Read as the user, twice: the second open finds the file complete in the cache,
	// where root would get passthrough.
	for i := 0; i < 2; i++ {
		cat := exec.Command("cat", filepath.Join(mnt, "f.txt"))
		cat.Env = u.env
		cat.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid}}
		got, err := cat.Output()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read %d as %s: %v, %d bytes, want %d bytes equal to the origin's", i, u.name, err, len(got), len(want))
		}
	}
	if fi, err := os.Stat(filepath.Join(u.home, ".cache", "cachegate")); err != nil || !fi.IsDir() {
		t.Errorf("cache not under $XDG_CACHE_HOME/cachegate: %v", err)
	} else if st := fi.Sys().(*syscall.Stat_t); st.Uid != u.uid {
		t.Errorf("cache dir belongs to uid %d, want %d", st.Uid, u.uid)
	}

	if _, err := os.Stat(filepath.Join(u.home, "run", "cachegate", strconv.Itoa(cmd.Process.Pid)+".json")); err != nil {
		t.Errorf("not registered under $XDG_RUNTIME_DIR/cachegate: %v", err)
	}
	out, err := u.command("status").CombinedOutput()
	if err != nil || !strings.Contains(string(out), mnt) {
		t.Errorf("cachegate status as %s: %v\n%s\nwant the mount %s listed", u.name, err, out, mnt)
	}

	if out, err := u.command("unmount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("cachegate unmount as %s: %v\n%s", u.name, err, out)
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatalf("cachegate mount still running 15s after unmount")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("cachegate mount exited %d after unmount, want 0", code)
	}
	if isMounted(mnt) {
		t.Errorf("%s still mounted after cachegate unmount", mnt)
	}

	// What needs root is given up in one informational line, not a warning.
	var pt []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			t.Errorf("a user mount logged a warning or error: %s", l)
		}
		if strings.Contains(l, "passthrough") {
			pt = append(pt, l)
		}
	}
	if len(pt) != 1 || !strings.Contains(pt[0], "level=INFO") {
		t.Errorf("log lines about passthrough: %q, want one at INFO", pt)
	}
}

// refused runs cachegate args as u and checks that it exits with code and one line on
// stderr containing every one of want.
func refused(t *testing.T, u *testUser, what string, code int, args []string, want ...string) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := u.command(args...)
	cmd.Stderr = &stderr
	err := cmd.Run()
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	ok := len(lines) == 1
	for _, w := range want {
		ok = ok && strings.Contains(lines[0], w)
	}
	if ee, isExit := err.(*exec.ExitError); !isExit || ee.ExitCode() != code || !ok {
		t.Errorf("mount as a user (%s): %v, stderr:\n%s\nwant exit %d and one line naming %q", what, err, stderr.String(), code, want)
	}
}

// fuseConfAllowsOther reports whether /etc/fuse.conf lets users mount with allow_other.
func fuseConfAllowsOther() bool {
	b, _ := os.ReadFile("/etc/fuse.conf")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == "user_allow_other" {
			return true
		}
	}
	return false
}
