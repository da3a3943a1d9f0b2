// Package e2e tests the real cachegate binary against real servers (nginx from Debian)
// through real FUSE mounts, as root. Every test stops what it starts, also when it
// fails: mounts are unmounted and processes killed in t.Cleanup.
package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	binary  string // the cachegate binary built for this run
	workDir string // shared scratch space, removed at the end
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	workDir, err = os.MkdirTemp("", "cachegate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(workDir)
	os.Chmod(workDir, 0o755) // nginx workers read the trees below it
	binary = filepath.Join(workDir, "cachegate")
	// Tests run the binary with the race detector; benchmarks measure a normal build.
	flag.Parse()
	build := []string{"build", "-race", "-o", binary, "../cmd/cachegate"}
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		build = []string{"build", "-o", binary, "../cmd/cachegate"}
	}
	fmt.Fprintln(os.Stderr, "e2e: go", strings.Join(build, " "))
	out, err := exec.Command("go", build...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build cachegate: %v\n%s", err, out)
		return 1
	}
	code := m.Run()
	sharedOnce.cleanup()
	return code
}

// requireRoot skips tests that need FUSE DirectMount and nginx when not root; CI runs
// as root, so there they always run.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("e2e tests need root (FUSE DirectMount)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("no /dev/fuse: %v", err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// nginx is a real nginx serving a directory with autoindex.
type nginx struct {
	stop      func() // stops it now (it is also stopped when the test ends)
	pid       int    // the master process
	URL       string
	accessLog string
	timedLog  string // each request's end time, bytes, method and URI
	root      string
}

const nginxConf = `daemon off;
user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
  default_type application/octet-stream;
  log_format bytes '$request_method $status $body_bytes_sent $uri';
  log_format timed '$msec $body_bytes_sent $request_method $uri';
  access_log %[5]s;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:%[2]d;
    root %[3]s;
    location / { autoindex on; autoindex_format %[4]s; autoindex_exact_size on; }
  }
}
`

// startNginx serves root with an autoindex in format ("json" or "html") until t ends.
func startNginx(t testing.TB, root, format string) *nginx {
	t.Helper()
	return launchNginx(t, root, format, true, t.Cleanup)
}

// launchNginx starts nginx and hands its stop function to onStop.
func launchNginx(t testing.TB, root, format string, accessLog bool, onStop func(func())) *nginx {
	t.Helper()
	requireRoot(t)
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
	}
	dir, err := os.MkdirTemp(workDir, "nginx-")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	conf := filepath.Join(dir, "nginx.conf")
	logSpec := "off"
	if accessLog {
		// A second log, timed.log, stamps each request's end ($msec): rates
		// measured at the origin (TestBWLimitHoldsAtOrigin).
		logSpec = filepath.Join(dir, "access.log") + " bytes; access_log " + filepath.Join(dir, "timed.log") + " timed"
	}
	os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, port, root, format, logSpec)), 0o644)
	cmd := exec.Command(bin, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx (apt-get install nginx): %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		})
	}
	n := &nginx{stop: stop, pid: cmd.Process.Pid, URL: fmt.Sprintf("http://127.0.0.1:%d/", port), accessLog: filepath.Join(dir, "access.log"), timedLog: filepath.Join(dir, "timed.log"), root: root}
	if err := waitPort(port, 10*time.Second); err != nil {
		stop()
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		t.Fatalf("nginx did not start: %v\n%s", err, log)
	}
	onStop(stop)
	return n
}

func waitPort(port int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// originBytes sums the body bytes nginx sent for GETs of the file uri (e.g.
// "/big.bin"), or of every file when uri is empty. Directory listings do not count.
func (n *nginx) originBytes(t testing.TB, uri string) int64 {
	t.Helper()
	f, err := os.Open(n.accessLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var total int64
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.SplitN(s.Text(), " ", 4)
		if len(fields) == 4 && fields[0] == "GET" && !strings.HasSuffix(fields[3], "/") && (uri == "" || fields[3] == uri) {
			b, _ := strconv.ParseInt(fields[2], 10, 64)
			total += b
		}
	}
	return total
}

// proc is a cachegate process running in the background.
type proc struct {
	cmd  *exec.Cmd
	logs *lockedBuffer
	done chan struct{}
}

// startProc runs cachegate with args until ready reports true, and stops it when t
// ends (its log is printed if t failed).
func startProc(t testing.TB, args []string, ready func() bool) *proc {
	t.Helper()
	return startProcEnv(t, nil, args, ready)
}

// startProcEnv is startProc with env added to the test's environment.
func startProcEnv(t testing.TB, env []string, args []string, ready func() bool) *proc {
	t.Helper()
	p := &proc{logs: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("cachegate %s log:\n%s", args[0], p.logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !ready() {
		select {
		case <-p.done:
			t.Fatalf("cachegate %s exited: %v\n%s", args[0], p.cmd.ProcessState, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("cachegate %s not ready after 20s\n%s", args[0], p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// stop asks cachegate to exit (SIGTERM) and kills it if it does not.
func (p *proc) stop() { p.stopWith(nil) }

// stopWith is stop with a way to unstick a process that does not exit even when
// killed (a thread waiting in the kernel on a FUSE request nobody will answer).
func (p *proc) stopWith(unstick func()) {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(15 * time.Second):
	}
	p.cmd.Process.Kill()
	select {
	case <-p.done:
		return
	case <-time.After(5 * time.Second):
	}
	if unstick != nil {
		unstick()
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// kill9 kills the process without letting it clean up.
func (p *proc) kill9() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// mount is a running `cachegate mount`.
type mount struct {
	*proc
	Dir      string
	CacheDir string
}

// startMount runs cachegate mount ORIGIN on a new mount point with extra flags. When
// cacheDir is empty a new one is made.
func startMount(t testing.TB, originURL, cacheDir string, flags ...string) *mount {
	t.Helper()
	requireRoot(t)
	dir, err := os.MkdirTemp(workDir, "mnt-")
	if err != nil {
		t.Fatal(err)
	}
	if cacheDir == "" {
		cacheDir = dir + "-cache"
	}
	m := &mount{Dir: dir, CacheDir: cacheDir}
	args := append([]string{"mount", originURL, dir, "--cache-dir", cacheDir}, flags...)
	m.proc = startProc(t, args, func() bool { return isMounted(dir) })
	t.Cleanup(func() { m.stop(t) }) // runs before the proc's cleanup
	// The mount shows in mountinfo before go-fuse's poll hack has opened a file on it
	// from inside the process; a kill -9 then would leave that thread waiting in the
	// kernel for an answer only the dead process could give. "mounted" is logged after.
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(m.logs.String(), "msg=mounted"); {
		if time.Now().After(deadline) {
			t.Fatalf("cachegate mount never logged mounted\n%s", m.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return m
}

// kill9 kills the mount's process without letting it clean up, aborting its FUSE
// connection if a thread of it stays stuck on a request to its own mount.
func (m *mount) kill9() {
	m.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		abortFuse(m.Dir)
		<-m.done
	}
}

// stop stops the mount's process and makes sure nothing stays mounted, aborting the
// FUSE connection if the process hangs on it.
func (m *mount) stop(t testing.TB) {
	m.proc.stopWith(func() { abortFuse(m.Dir) })
	if isMounted(m.Dir) {
		abortFuse(m.Dir)
		syscall.Unmount(m.Dir, syscall.MNT_DETACH)
	}
}

// abortFuse aborts the FUSE connection mounted at dir (found by its device number in
// mountinfo, without touching the mount, which may hang), so that every request
// waiting on it fails instead of waiting forever.
func abortFuse(dir string) {
	// The fusectl filesystem is not always mounted; EBUSY when it is.
	syscall.Mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, "")
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			if _, minor, ok := strings.Cut(f[2], ":"); ok {
				os.WriteFile("/sys/fs/fuse/connections/"+minor+"/abort", []byte("1"), 0)
			}
		}
	}
}

// server is a running `cachegate serve`.
type server struct {
	*proc
	URL      string
	CacheDir string
}

// startServe runs cachegate serve ORIGIN on a free loopback port.
func startServe(t testing.TB, originURL, cacheDir string, flags ...string) *server {
	t.Helper()
	if cacheDir == "" {
		d, err := os.MkdirTemp(workDir, "serve-cache-")
		if err != nil {
			t.Fatal(err)
		}
		cacheDir = d
	}
	port := freePort(t)
	s := &server{URL: fmt.Sprintf("http://127.0.0.1:%d/", port), CacheDir: cacheDir}
	args := append([]string{"serve", originURL, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--cache-dir", cacheDir}, flags...)
	s.proc = startProc(t, args, func() bool { return waitPort(port, 0) == nil })
	return s
}

// lockedBuffer collects a process's stdout and stderr, written from two goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func isMounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// runCLI runs cachegate with args and returns its combined output and exit code.
func runCLI(t testing.TB, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatal(err)
	}
	return string(out), 0
}

// writeRandom writes size pseudo-random bytes (seeded) to path and returns their
// sha256.
func writeRandom(t testing.TB, path string, size int64, seed uint64) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 7})
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		rng.Read(buf[:n])
		f.Write(buf[:n])
		h.Write(buf[:n])
		left -= n
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sha256File(t testing.TB, path string) string {
	t.Helper()
	sum, err := hashFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return sum
}

// hashFile hashes a file, reporting read errors instead of failing.
func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 256<<10)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashGet hashes a GET's body, reporting errors (a status other than 200, a body cut
// short) instead of failing.
func hashGet(c *http.Client, u string) (string, error) {
	resp, err := c.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", errors.New(resp.Status)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// shared holds fixtures built once per run and torn down after every test.
type shared struct {
	mu  sync.Mutex
	fns []func()
}

var sharedOnce shared

func (s *shared) add(f func()) {
	s.mu.Lock()
	s.fns = append(s.fns, f)
	s.mu.Unlock()
}

func (s *shared) cleanup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.fns) - 1; i >= 0; i-- {
		s.fns[i]()
	}
}
