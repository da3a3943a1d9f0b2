package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// A 404 prefix or a file URL as origin said `origin http://…/nope/: : file does not
// exist`. Now the message says what the origin answered, or that it is a file, and
// never shows the password of the URL.
func TestOriginErrorsAtStartup(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(workDir, "originerr-origin")
	writeRandom(t, filepath.Join(dir, "f.txt"), 100, 1)
	srv := startNginx(t, dir, "json")
	withPass := strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1)
	cases := []struct{ origin, want string }{
		{srv.URL + "nope/", "404 Not Found for " + srv.URL + "nope/: is the prefix right? an origin must be a directory"},
		// The origin's errors name its URL without the credentials (and "hunter2" must not show).
		{withPass + "nope/", "404 Not Found for " + srv.URL + "nope/"},
		{srv.URL + "f.txt", srv.URL + "f.txt is a file, not a directory: an origin must be a directory"},
		{filepath.Join(dir, "f.txt"), filepath.Join(dir, "f.txt") + " is a file, not a directory: an origin must be a directory"},
		{filepath.Join(dir, "nope"), "origin directory " + filepath.Join(dir, "nope") + " does not exist"},
	}
	for _, c := range cases {
		out, code := runCLITimeout(t, "", "serve", c.origin, "--listen", "127.0.0.1:0", "--cache-dir", t.TempDir())
		out = strings.TrimSpace(out)
		if code == 0 || !strings.Contains(out, c.want) || strings.Contains(out, "hunter2") || strings.Count(out, "\n") > 0 {
			t.Errorf("serve %s: exit %d, want one line with %q:\n%s", c.origin, code, c.want, out)
		}
	}
}

// `cache stat` said "not in the origin" three times for a missing path, "not cached
// … warm fetches it" for a directory and ": not cached" for the root. Now a missing
// path is said once, and a directory (the root too) gets a summary of what it holds.
func TestCacheStatPathsAndDirectories(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(workDir, "stat-origin")
	writeRandom(t, filepath.Join(dir, "d", "a.bin"), 3000, 1)
	writeRandom(t, filepath.Join(dir, "d", "e", "b.bin"), 5000, 2)
	writeRandom(t, filepath.Join(dir, "top.bin"), 1000, 3)
	srv := startNginx(t, dir, "json")
	m := startMount(t, srv.URL, "")
	if out, code := runCLI(t, "cache", "pin", "d/a.bin", "--cache-dir", m.CacheDir); code != 0 {
		t.Fatalf("pin: %s", out)
	}

	out, code := runCLI(t, "cache", "stat", "nope.txt", "--cache-dir", m.CacheDir)
	if code != 1 || strings.Count(out, "not in the origin") != 1 || strings.Contains(out, "file does not exist") {
		t.Errorf("stat nope.txt: exit %d, want 1 and \"not in the origin\" once:\n%s", code, out)
	}

	out, code = runCLI(t, "cache", "stat", "d", "--cache-dir", m.CacheDir)
	for _, want := range []string{"path:          /d\n", "type:          directory\n", "files:         2\n", "size:          7.8 KiB (8000 bytes)\n", "cached:        2.9 KiB (3000 bytes)\n", "pinned:        1 file\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("stat d: exit %d, want %q in:\n%s", code, want, out)
		}
	}
	out, code = runCLI(t, "cache", "stat", "/", "--cache-dir", m.CacheDir)
	if code != 0 || !strings.Contains(out, "path:          /\n") || !strings.Contains(out, "files:         3\n") {
		t.Errorf("stat /: exit %d, want the root's summary (3 files):\n%s", code, out)
	}
	out, code = runCLI(t, "cache", "stat", filepath.Join(m.Dir, "d", "e"), "--cache-dir", m.CacheDir, "--json")
	var sum struct {
		Path        string `json:"path"`
		Dir         bool   `json:"dir"`
		Files       int    `json:"files"`
		Size        int64  `json:"size"`
		CachedBytes int64  `json:"cached_bytes"`
		Pinned      int    `json:"pinned"`
	}
	if err := json.Unmarshal([]byte(out), &sum); code != 0 || err != nil || sum.Path != "d/e" || !sum.Dir || sum.Files != 1 || sum.Size != 5000 || sum.CachedBytes != 0 || sum.Pinned != 0 {
		t.Errorf("stat --json d/e: exit %d, %v, %+v:\n%s", code, err, sum, out)
	}
	// A file is still described as one.
	if out, code := runCLI(t, "cache", "stat", "top.bin", "--cache-dir", m.CacheDir); code != 1 || !strings.Contains(out, "not cached") {
		t.Errorf("stat top.bin (not cached): exit %d:\n%s", code, out)
	}
}

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
	if out, code := runCLI(t, "cache", "ls", "--cache-dir", newDir); code != 0 || !strings.Contains(out, "\nf.bin ") || !strings.Contains(out, "100%") {
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

// An S3 key named as origin mounted as an empty directory; it is refused, saying so.
// An empty prefix is still a directory (S3 prefixes exist once written to).
func TestS3ObjectAsOrigin(t *testing.T) {
	requireRoot(t)
	v := startVersitygw(t)
	if err := v.client.MakeBucket(context.Background(), "bkt", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	v.put(t, "bkt", "dir/f.bin", []byte("hello"))
	out, code := runCLITimeout(t, "", "serve", "s3://bkt/dir/f.bin", "--listen", "127.0.0.1:0", "--cache-dir", t.TempDir(), "--s3-endpoint", v.Endpoint)
	if want := "origin s3://bkt/dir/f.bin is an object, not a prefix: an origin must be a directory (e.g. s3://bkt/dir/)"; code != 1 || !strings.Contains(out, want) {
		t.Errorf("serve s3://bkt/dir/f.bin: exit %d, want 1 and %q:\n%s", code, want, out)
	}
	port := freePort(t)
	startProc(t, []string{"serve", "s3://bkt/empty/", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--cache-dir", t.TempDir(), "--s3-endpoint", v.Endpoint}, func() bool { return waitPort(port, 0) == nil })
}
