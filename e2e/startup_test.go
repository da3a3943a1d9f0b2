package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A relative origin directory was refused; it is resolved against the working
// directory. `cache warm --origin X --cache-dir NEW` refused the new directory; it
// creates it (0700).
func TestRelativeOriginAndWarmIntoNewCacheDir(t *testing.T) {
	requireRoot(t)
	base := newLocalOrigin(t, "rel")
	data := filepath.Join(base, "data")
	writeRandom(t, filepath.Join(data, "f.bin"), 2000, 1)
	os.Chmod(data, 0o755)

	mp := t.TempDir()
	cacheDir := filepath.Join(t.TempDir(), "c")
	p := &proc{logs: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, "mount", "./data", mp, "--cache-dir", cacheDir)
	p.cmd.Dir = base
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	m := &mount{proc: p, Dir: mp, CacheDir: cacheDir}
	t.Cleanup(func() { m.stop(t) })
	for deadline := time.Now().Add(20 * time.Second); !isMounted(mp); time.Sleep(20 * time.Millisecond) {
		select {
		case <-p.done:
			t.Fatalf("mount ./data exited: %s", p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mount ./data not ready:\n%s", p.logs.String())
		}
	}
	if got := sha256File(t, filepath.Join(mp, "f.bin")); got != sha256File(t, filepath.Join(data, "f.bin")) {
		t.Errorf("f.bin through a relative origin's mount differs")
	}
	if out, _ := runCLI(t, "status", "--cache-dir", cacheDir); !strings.Contains(out, "file://"+data) {
		t.Errorf("status does not name the absolute origin file://%s:\n%s", data, out)
	}
	m.stop(t)

	newDir := filepath.Join(t.TempDir(), "new", "cache")
	out, code := runCLITimeout(t, base, "cache", "warm", "f.bin", "--origin", "data", "--cache-dir", newDir)
	if code != 0 {
		t.Fatalf("warm into a new cache dir: exit %d:\n%s", code, out)
	}
	if fi, err := os.Stat(newDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("new cache dir: %v %v, want mode 0700", fi, err)
	}
	if out, code := runCLI(t, "cache", "ls", "--cache-dir", newDir); code != 0 || !strings.Contains(out, "/f.bin") || !strings.Contains(out, "100%") {
		t.Errorf("cache ls after warm: exit %d:\n%s", code, out)
	}
	// The other verbs still refuse a missing directory (a typo).
	if out, code := runCLI(t, "cache", "ls", "--cache-dir", newDir+"x"); code != 2 || !strings.Contains(out, "does not exist") {
		t.Errorf("cache ls of a missing dir: exit %d:\n%s", code, out)
	}
}

// `--listen 18985` was refused with "missing port in address": a bare port is
// 127.0.0.1:PORT, and :PORT every interface, with a warning when no token guards it.
func TestServeListenBarePort(t *testing.T) {
	requireRoot(t)
	dir := newLocalOrigin(t, "listen-origin")
	writeRandom(t, filepath.Join(dir, "f.bin"), 100, 1)
	for _, form := range []string{"%d", ":%d"} {
		port := freePort(t)
		listen := fmt.Sprintf(form, port)
		p := startProc(t, []string{"serve", dir, "--listen", listen, "--cache-dir", t.TempDir()}, func() bool { return waitPort(port, 0) == nil })
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/f.bin", port))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("--listen %s: GET f.bin: %v %v", listen, resp, err)
		}
		resp.Body.Close()
		warned := strings.Contains(p.logs.String(), "without --auth-token-file")
		if want := strings.HasPrefix(listen, ":"); warned != want {
			t.Errorf("--listen %s: warned about an exposed server: %v, want %v:\n%s", listen, warned, want, p.logs.String())
		}
		p.stop()
	}
}
