package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// httpGet fetches u with a User-Agent and returns the status and body.
func httpGet(t *testing.T, method, u, ua string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", ua)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// waitLines waits until the file at p holds n lines and returns them.
func waitLines(t *testing.T, p string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(p)
		var lines []string
		if len(b) > 0 {
			lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		}
		if len(lines) >= n || time.Now().After(deadline) {
			if len(lines) != n {
				t.Fatalf("%s: %d lines, want %d:\n%s", p, len(lines), n, b)
			}
			return lines
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAccessLogRotate: `serve --access-log FILE` writes one combined line per
// request; after logrotate's rename and SIGHUP new lines go to a new file at the
// path and the renamed one keeps the old lines (issue 20 point 12).
func TestAccessLogRotate(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "a.txt"), []byte("hello\n"), 0o644)
	logPath := filepath.Join(t.TempDir(), "access.log")
	s := startServe(t, root, "", "--access-log", logPath)
	if code, _ := httpGet(t, "GET", s.URL+"a.txt", `probe "one"`); code != 200 {
		t.Fatalf("GET a.txt: %d", code)
	}
	httpGet(t, "HEAD", s.URL+"a.txt", "probe-two")
	httpGet(t, "GET", s.URL+"missing", "probe-three")
	lines := waitLines(t, logPath, 3)
	for i, want := range []string{
		`"GET /a.txt HTTP/1.1" 200 6 "-" "probe \x22one\x22" `,
		`"HEAD /a.txt HTTP/1.1" 200 0 "-" "probe-two" `,
		`"GET /missing HTTP/1.1" 404 `,
	} {
		if !strings.HasPrefix(lines[i], "127.0.0.1 - - [") || !strings.Contains(lines[i], want) {
			t.Errorf("line %d: %q, want it to hold %q", i, lines[i], want)
		}
	}
	if !strings.HasSuffix(lines[0], " MISS copy") && !strings.HasSuffix(lines[0], " MISS mmap") && !strings.HasSuffix(lines[0], " MISS sendfile") {
		t.Errorf("first GET: %q, want X-Cache MISS and a transfer method at the end", lines[0])
	}
	if !strings.HasSuffix(lines[1], " HIT none") {
		t.Errorf("HEAD: %q, want HIT none at the end", lines[1])
	}

	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reopen happens in the background: wait for the new file, then log.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(logPath); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new access log after SIGHUP\n%s", s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	httpGet(t, "GET", s.URL+"a.txt", "after-rotate")
	if l := waitLines(t, logPath, 1); !strings.Contains(l[0], `"after-rotate"`) || !strings.HasSuffix(l[0], " HIT mmap") && !strings.HasSuffix(l[0], " HIT sendfile") {
		t.Errorf("new file: %q", l)
	}
	if old := waitLines(t, logPath+".1", 3); strings.Contains(strings.Join(old, "\n"), "after-rotate") {
		t.Errorf("the rotated file got a new line:\n%s", strings.Join(old, "\n"))
	}
	if s.cmd.ProcessState != nil {
		t.Fatalf("serve exited on SIGHUP")
	}
}
