package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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

	// Its own mounts (fuse.cachegate in mountinfo) it still unmounts, live or dead.
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	m := startMount(t, src, "")
	if out, code := runCLI(t, "unmount", m.Dir); code != 0 || isMounted(m.Dir) {
		t.Errorf("cachegate unmount of a cachegate mount: exit %d, %q, mounted afterwards: %v", code, out, isMounted(m.Dir))
	}
	select {
	case <-m.done: // its process ends with its mount
	case <-time.After(10 * time.Second):
		t.Error("the mount's process still runs 10s after its mount went")
	}
	m = startMount(t, src, "")
	m.kill9()
	if out, code := runCLI(t, "unmount", m.Dir); code != 0 || isMounted(m.Dir) {
		t.Errorf("cachegate unmount of a dead cachegate mount: exit %d, %q, mounted afterwards: %v", code, out, isMounted(m.Dir))
	}
}

// stalledOrigin is an HTTP origin that lists one file, /stall, and never answers
// anything else (HEAD or GET of it): each such request waits until its client goes.
type stalledOrigin struct {
	URL     string
	stalled chan string // receives the method and path of each request it holds
}

func startStalledOrigin(t *testing.T) *stalledOrigin {
	t.Helper()
	o := &stalledOrigin{stalled: make(chan string, 16)}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `[{"name":"stall","type":"file","mtime":"Mon, 30 Nov 2026 10:00:00 GMT","size":5}]`)
			return
		}
		select {
		case o.stalled <- r.Method + " " + r.URL.Path:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	o.URL = srv.URL + "/"
	return o
}

// waitStalled waits until the origin holds a request.
func (o *stalledOrigin) waitStalled(t *testing.T, what string) {
	t.Helper()
	select {
	case req := <-o.stalled:
		t.Logf("%s: the origin holds %s", what, req)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s never reached the origin", what)
	}
}

// sigtermWithin sends SIGTERM and fails unless the process exits 0 within limit.
func sigtermWithin(t *testing.T, p *proc, limit time.Duration) {
	t.Helper()
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		t.Logf("exited %v after SIGTERM (%v)", time.Since(start).Round(time.Millisecond), p.cmd.ProcessState)
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit status %d after SIGTERM; want 0", code)
		}
	case <-time.After(limit):
		t.Fatalf("still running %v after SIGTERM with a request stuck on the origin", limit)
	}
}

// TestSigtermEndsStuckWork: SIGTERM ends a server, or a mount serving too, within
// 10 s although requests wait on an origin that never answers (with --origin-timeout
// far longer), and leaves nothing mounted.
func TestSigtermEndsStuckWork(t *testing.T) {
	requireRoot(t)
	t.Run("serve", func(t *testing.T) {
		o := startStalledOrigin(t)
		s := startServe(t, o.URL, "", "--origin-timeout", "2m")
		go func() {
			c := &http.Client{Timeout: time.Minute}
			if resp, err := c.Get(s.URL + "stall"); err == nil {
				resp.Body.Close()
			}
		}()
		o.waitStalled(t, "GET /stall from the server")
		sigtermWithin(t, s.proc, 10*time.Second)
	})
	t.Run("mount", func(t *testing.T) {
		o := startStalledOrigin(t)
		port := freePort(t)
		m := startMount(t, o.URL, "", "--origin-timeout", "2m", "--serve", fmt.Sprintf("127.0.0.1:%d", port))
		cat := exec.Command("cat", filepath.Join(m.Dir, "stall"))
		if err := cat.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cat.Process.Kill(); cat.Wait() })
		o.waitStalled(t, "cat of the mount's /stall")
		go func() {
			c := &http.Client{Timeout: time.Minute}
			if resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/stall", port)); err == nil {
				resp.Body.Close()
			}
		}()
		time.Sleep(200 * time.Millisecond) // the GET joins the stuck fetch
		sigtermWithin(t, m.proc, 10*time.Second)
		if isMounted(m.Dir) {
			t.Error("the mount is still there after its process exited")
		}
	})
}

// TestOriginPasswordNeverPrinted: with credentials in the origin URL, nothing
// cachegate prints or logs shows the password: the server's and the mount's logs,
// status, /-/status, cache ls and stat (with and without an owner), and the error of
// an origin that cannot be reached.
func TestOriginPasswordNeverPrinted(t *testing.T) {
	const password = "Pa55w0rd"
	dir := filepath.Join(workDir, "password-origin")
	writeRandom(t, filepath.Join(dir, "d/f.bin"), 100<<10, 19)
	ng := startNginx(t, dir, "json") // no auth_basic: nginx ignores the credentials
	withCreds := strings.Replace(ng.URL, "http://", "http://alice:"+password+"@", 1)
	var printed []string
	show := func(what, out string) {
		printed = append(printed, what+":\n"+out)
	}

	s := startServe(t, withCreds, "", "--log-level", "debug")
	for _, u := range []string{"d/f.bin", "-/status", "nothing-here"} {
		resp, err := http.Get(s.URL + u)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if u != "nothing-here" {
			show("GET /"+u+" headers", fmt.Sprint(resp.Header))
			if u == "-/status" {
				show("GET /-/status", string(b))
			}
		}
	}
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"cache", "ls", "d"}, {"cache", "ls", "--json"}, {"cache", "stat", "d/f.bin"}, {"cache", "stat", "d/f.bin", "--json"}} {
		show(strings.Join(args, " "), cli(t, s.CacheDir, args...))
	}
	sigtermWithin(t, s.proc, 10*time.Second)
	show("serve log", s.logs.String())
	// No owner: the verbs open the cache with the origin the last owner used.
	show("cache stat without an owner", cli(t, s.CacheDir, "cache", "stat", "d/f.bin", "--log-level", "debug"))
	show("status without an owner", cli(t, s.CacheDir, "status", "--json"))

	m := startMount(t, withCreds, "", "--log-level", "debug")
	sha256File(t, filepath.Join(m.Dir, "d/f.bin"))
	sigtermWithin(t, m.proc, 10*time.Second)
	show("mount log", m.logs.String())

	down := fmt.Sprintf("http://alice:%s@127.0.0.1:%d/", password, freePort(t))
	out, code := runCLI(t, "serve", down, "--cache-dir", t.TempDir(), "--origin-timeout", "2s", "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	if code == 0 {
		t.Errorf("serve of an unreachable origin exited 0: %s", out)
	}
	show("serve of an unreachable origin", out)

	for _, p := range printed {
		if strings.Contains(p, password) {
			t.Errorf("the password shows in %s", p)
		}
	}
	if !strings.Contains(strings.Join(printed, "\n"), "alice:xxxxx@") {
		t.Errorf("the origin is never named (redacted) in what was printed:\n%s", strings.Join(printed, "\n"))
	}
}
