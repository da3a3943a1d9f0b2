package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// countRequests counts the lines of nginx's access log whose method is method.
func (n *nginx) countRequests(t testing.TB, method string) int {
	t.Helper()
	f, err := os.Open(n.accessLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	count := 0
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), method+" ") {
			count++
		}
	}
	return count
}

// Listing a directory whose listing lacks exact sizes (nginx's HTML autoindex
// rounds times to the minute) sends no HEAD per entry: readdirplus gives such
// entries no attributes, and the kernel looks up only what is stat'ed.
func TestListingWithoutExactSizesSendsNoHEADs(t *testing.T) {
	root, err := os.MkdirTemp(workDir, "origin-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(root, 0o755)
	const files = 200
	os.Mkdir(filepath.Join(root, "d"), 0o755)
	for i := range files {
		os.WriteFile(filepath.Join(root, "d", fmt.Sprintf("f%03d", i)), []byte(strings.Repeat("x", i)), 0o644)
	}
	n := startNginx(t, root, "html")
	m := startMount(t, n.URL, "")
	out, err := exec.Command("ls", "-f", filepath.Join(m.Dir, "d")).CombinedOutput()
	if err != nil {
		t.Fatalf("ls -f: %v\n%s", err, out)
	}
	if got := len(strings.Fields(string(out))); got < files || got > files+2 {
		t.Fatalf("ls -f listed %d names, want %d", got, files)
	}
	if heads := n.countRequests(t, "HEAD"); heads != 0 {
		t.Errorf("ls -f of a %d-entry directory sent %d HEADs to the origin, want 0", files, heads)
	}
	// What is stat'ed is looked up, with its exact size.
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(m.Dir, "d", "f123"), &st); err != nil || st.Size != 123 {
		t.Fatalf("stat d/f123: size %d, %v; want 123", st.Size, err)
	}
	// nginx writes its access log a moment after it answers.
	heads := n.countRequests(t, "HEAD")
	for deadline := time.Now().Add(3 * time.Second); heads == 0 && time.Now().Before(deadline); heads = n.countRequests(t, "HEAD") {
		time.Sleep(50 * time.Millisecond)
	}
	if heads != 1 {
		t.Errorf("one stat sent %d HEADs, want 1", heads)
	}
}

// TestTrustedHTMLIndexListsWithoutHEADs: with --trust-html-index, `ls -l` of a
// directory of nginx's HTML index costs its one listing, not a HEAD per file (issue
// 21, goal 5): the sizes are the index's bytes, the times its minutes. A file so listed
// opens on its inode (the origin's second is in the listed minute) and, small, costs
// one GET.
func TestTrustedHTMLIndexListsWithoutHEADs(t *testing.T) {
	root, err := os.MkdirTemp(workDir, "origin-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(root, 0o755)
	const files = 200
	os.Mkdir(filepath.Join(root, "d"), 0o755)
	mtime := time.Date(2026, 11, 26, 0, 55, 37, 0, time.UTC)
	for i := range files {
		p := filepath.Join(root, "d", fmt.Sprintf("f%03d", i))
		os.WriteFile(p, []byte(strings.Repeat("x", i)), 0o644)
		os.Chtimes(p, mtime, mtime)
	}
	n := startNginx(t, root, "html")
	m := startMount(t, n.URL, "", "--trust-html-index", "--prefetch", "0")
	dir := filepath.Join(m.Dir, "d")
	if out, err := exec.Command("ls", "-l", dir).CombinedOutput(); err != nil || strings.Count(string(out), "\n") != files+1 {
		t.Fatalf("ls -l: %v\n%s", err, out)
	}
	for i := range files {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, fmt.Sprintf("f%03d", i)), &st); err != nil || st.Size != int64(i) || st.Mtim.Sec != mtime.Truncate(time.Minute).Unix() {
			t.Fatalf("stat f%03d: size %d, mtime %d, %v; want %d bytes at %d (the index's minute)", i, st.Size, st.Mtim.Sec, err, i, mtime.Truncate(time.Minute).Unix())
		}
	}
	if got, err := os.ReadFile(filepath.Join(dir, "f123")); err != nil || string(got) != strings.Repeat("x", 123) {
		t.Fatalf("read f123: %q, %v", got, err)
	}
	// nginx writes its access log a moment after it answers.
	gets := n.countRequests(t, "GET")
	for deadline := time.Now().Add(3 * time.Second); gets < 4 && time.Now().Before(deadline); gets = n.countRequests(t, "GET") {
		time.Sleep(50 * time.Millisecond)
	}
	if heads := n.countRequests(t, "HEAD"); heads != 0 || gets != 4 {
		log, _ := os.ReadFile(n.accessLog)
		t.Errorf("ls -l and stat of %d files and a read of one sent %d HEADs and %d GETs; want 0 and 4 (the start's check of the root, the root and d/ listings, f123):\n%s", files, heads, gets, log)
	}
}

// nginxAuthConf is an nginx that asks for Basic credentials on every request.
const nginxAuthConf = `daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; }
http {
  access_log %[1]s/access.log;
  client_body_temp_path %[1]s/body;
  server {
    listen 127.0.0.1:%[2]d;
    root %[3]s;
    auth_basic "cachegate test";
    auth_basic_user_file %[1]s/htpasswd;
    location / { autoindex on; autoindex_format json; }
  }
}
`

// startAuthNginx serves root behind auth_basic for alice:Pa55w0rd until t ends.
func startAuthNginx(t testing.TB, root string) (url string) {
	t.Helper()
	requireRoot(t)
	dir, err := os.MkdirTemp(workDir, "nginx-auth-")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("alice:{PLAIN}Pa55w0rd\n"), 0o644)
	port := freePort(t)
	runNginxConf(t, dir, fmt.Sprintf(nginxAuthConf, dir, port, root), port)
	return fmt.Sprintf("127.0.0.1:%d/", port)
}

// runNginxConf runs nginx with the configuration conf (written to dir, which also
// holds its error log) until t ends, and waits until it listens on port.
func runNginxConf(t testing.TB, dir, conf string, port int) {
	t.Helper()
	path := filepath.Join(dir, "nginx.conf")
	os.WriteFile(path, []byte(conf), 0o644)
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
	}
	cmd := exec.Command(bin, "-c", path, "-e", filepath.Join(dir, "error.log"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }) }
	t.Cleanup(stop)
	if err := waitPort(port, 10*time.Second); err != nil {
		stop()
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		t.Fatalf("nginx did not start: %v\n%s", err, log)
	}
}

// An nginx with auth_basic is a working origin when the URL carries the
// credentials: ranged GETs send them too. The password appears nowhere cachegate
// prints the origin: mount table, status, error bodies.
func TestAuthBasicOriginCredentialsNeverShown(t *testing.T) {
	root, err := os.MkdirTemp(workDir, "origin-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(root, 0o755)
	want := writeRandom(t, filepath.Join(root, "big.bin"), 3<<20, 19)
	hostPath := startAuthNginx(t, root)
	if resp, err := http.Get("http://" + hostPath + "big.bin"); err != nil || resp.StatusCode != 401 {
		t.Fatalf("origin without credentials: %v %v; want 401", resp, err)
	}
	spec := "http://alice:Pa55w0rd@" + hostPath

	m := startMount(t, spec, "")
	if got := sha256File(t, filepath.Join(m.Dir, "big.bin")); got != want {
		t.Fatalf("read through the mount: sha256 %s, want %s\n%s", got, want, m.logs.String())
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), "Pa55w0rd") {
		t.Error("the mount table shows the origin's password")
	}

	s := startServe(t, spec, "")
	c := &http.Client{Timeout: 30 * time.Second}
	if got, err := hashGet(c, s.URL+"big.bin"); err != nil || got != want {
		t.Fatalf("read through the server: %s, %v; want %s", got, err, want)
	}
	for _, u := range []string{s.URL + "-/status", s.URL + "missing-dir/"} {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), "Pa55w0rd") {
			t.Errorf("%s (%s) shows the origin's password: %s", u, resp.Status, body)
		}
	}
	if strings.Contains(m.logs.String()+s.logs.String(), "Pa55w0rd") {
		t.Error("the log shows the origin's password")
	}
}

// A directory with more entries than --max-dir-entries (or CACHEGATE_MAX_DIR_ENTRIES)
// is an error that says so in the log: EIO through the mount, 502 from the server.
func TestMaxDirEntries(t *testing.T) {
	root, err := os.MkdirTemp(workDir, "origin-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(root, 0o755)
	for dir, files := range map[string]int{"small": 10, "big": 11} {
		os.Mkdir(filepath.Join(root, dir), 0o755)
		for i := range files {
			os.WriteFile(filepath.Join(root, dir, fmt.Sprint(i)), []byte("x"), 0o644)
		}
	}
	n := startNginx(t, root, "json")
	m := startMount(t, n.URL, "", "--max-dir-entries", "10")
	if ents, err := os.ReadDir(filepath.Join(m.Dir, "small")); err != nil || len(ents) != 10 {
		t.Fatalf("10-entry directory: %d entries, %v", len(ents), err)
	}
	if _, err := os.ReadDir(filepath.Join(m.Dir, "big")); !errors.Is(err, syscall.EIO) {
		t.Errorf("11-entry directory with --max-dir-entries 10: %v, want EIO", err)
	}
	// The log reaches the buffer through a pipe: give it a moment.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(m.logs.String(), "max-dir-entries"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("no log line names --max-dir-entries:\n%s", m.logs.String())
			break
		}
	}
	t.Setenv("CACHEGATE_MAX_DIR_ENTRIES", "10")
	s := startServe(t, n.URL, "")
	for dir, want := range map[string]int{"small/": 200, "big/": 502} {
		resp, err := http.Get(s.URL + dir)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET /%s: %s, want %d", dir, resp.Status, want)
		}
	}
}
