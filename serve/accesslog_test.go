package serve

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cachegate/cachegate/cache"
)

// combinedRE is one line of the combined format plus request time, X-Cache and
// X-Transfer. Quoted fields hold no bare quote: escaped bytes are \xHH.
var combinedRE = regexp.MustCompile(`^(\S+) - - \[(\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "((?:[^"\\]|\\x[0-9A-F]{2})*)" (\d{3}) (\d+) "((?:[^"\\]|\\x[0-9A-F]{2})*)" "((?:[^"\\]|\\x[0-9A-F]{2})*)" (\d+\.\d{3}) (\S+) (\S+)$`)

// unescapeLog undoes the \xHH escapes of a logged field.
func unescapeLog(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// accessLogLines waits until the log at p has n lines and returns them.
func accessLogLines(t *testing.T, al *AccessLog, p string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		al.flush()
		b, _ := os.ReadFile(p)
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if len(b) > 0 && len(lines) >= n || time.Now().After(deadline) {
			if len(b) == 0 {
				lines = nil
			}
			if len(lines) != n {
				t.Fatalf("%d access log lines, want %d:\n%s", len(lines), n, b)
			}
			return lines
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hostile are requests whose line or User-Agent try to forge log lines or fields:
// quotes closing the field early, CR and escape sequences, a backslash, non-ASCII.
var hostile = []struct{ target, ua string }{
	{"/f", "curl/8"},
	{`/x" 200 1 "-" "forged`, `ua" 200 "x`},
	{"/a\rb\x1b[2Jc", "ua\r\x1b[31mred\\\x7f\xff"},
	{"/nope", ""},
}

// TestAccessLogCombined: one line per request, in nginx's combined format plus
// request time, X-Cache and X-Transfer; a hostile request line or User-Agent
// cannot break a line or a field (issue 20 point 12).
func TestAccessLogCombined(t *testing.T) {
	p := filepath.Join(t.TempDir(), "access.log")
	al, err := OpenAccessLog(p, "combined", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	ts := startTestServer(t, &stubOrigin{files: map[string][]byte{"f": []byte("hello")}}, cache.Options{}, Options{AccessLog: al})
	// Each line is waited for before the next request: the server logs after it
	// answers, so lines of requests on different connections may come in any order.
	for i, h := range hostile {
		raw := "GET " + h.target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nReferer: http://r/\r\n"
		if h.ua != "" {
			raw += "User-Agent: " + h.ua + "\r\n"
		}
		ts.do(t, raw+"\r\n")
		accessLogLines(t, al, p, i+1)
	}
	ts.do(t, "HEAD /f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	lines := accessLogLines(t, al, p, len(hostile)+1)
	for i, l := range lines {
		m := combinedRE.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("line %d is not in the combined format: %q", i, l)
			continue
		}
		if i == len(hostile) {
			if m[3] != "HEAD /f HTTP/1.1" || m[4] != "200" || m[5] != "0" || m[9] != "HIT" || m[10] != "none" {
				t.Errorf("HEAD line: %q", l)
			}
			continue
		}
		h := hostile[i]
		if got := unescapeLog(m[3]); got != "GET "+h.target+" HTTP/1.1" {
			t.Errorf("line %d: request %q, want %q", i, got, "GET "+h.target+" HTTP/1.1")
		}
		ua := h.ua
		if ua == "" {
			ua = "-"
		}
		if got := unescapeLog(m[7]); got != ua {
			t.Errorf("line %d: User-Agent %q, want %q", i, got, ua)
		}
		if m[1] != "127.0.0.1" || m[6] != "http://r/" {
			t.Errorf("line %d: client %q, referer %q", i, m[1], m[6])
		}
	}
	if m := combinedRE.FindStringSubmatch(lines[0]); m != nil && (m[4] != "200" || m[5] != "5" || m[9] != "MISS" || m[10] == "none" || m[10] == "-") {
		t.Errorf("first GET: %q", lines[0])
	}
	if m := combinedRE.FindStringSubmatch(lines[3]); m != nil && (m[4] != "404" || m[9] != "-" || m[10] != "-") {
		t.Errorf("404: %q", lines[3])
	}
}

// TestAccessLogJSON: --access-log-format json writes one JSON object per line with
// stable field names, the hostile values intact.
func TestAccessLogJSON(t *testing.T) {
	p := filepath.Join(t.TempDir(), "access.log")
	al, err := OpenAccessLog(p, "json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	ts := startTestServer(t, &stubOrigin{files: map[string][]byte{"f": []byte("hello")}}, cache.Options{}, Options{AccessLog: al})
	for i, h := range hostile[:2] {
		ts.do(t, "GET "+h.target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nUser-Agent: "+h.ua+"\r\n\r\n")
		accessLogLines(t, al, p, i+1)
	}
	lines := accessLogLines(t, al, p, 2)
	for i, l := range lines {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %d: %v: %q", i, err, l)
		}
		for _, k := range []string{"time", "remote_addr", "method", "uri", "protocol", "status", "body_bytes_sent", "referer", "user_agent", "request_time", "x_cache", "x_transfer"} {
			if _, ok := e[k]; !ok {
				t.Errorf("line %d lacks %q: %s", i, k, l)
			}
		}
		if e["uri"] != hostile[i].target || e["user_agent"] != hostile[i].ua || e["method"] != "GET" {
			t.Errorf("line %d: uri %q, user_agent %q", i, e["uri"], e["user_agent"])
		}
	}
	var first map[string]any
	json.Unmarshal([]byte(lines[0]), &first)
	if first["status"] != float64(200) || first["body_bytes_sent"] != float64(5) || first["x_cache"] != "MISS" {
		t.Errorf("first line: %s", lines[0])
	}
}

// TestAccessLogReopen: after the file is renamed, reopen sends new lines to a new
// file at the configured path and the old file keeps what was written before.
func TestAccessLogReopen(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "access.log")
	al, err := OpenAccessLog(p, "combined", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	ts := startTestServer(t, &stubOrigin{files: map[string][]byte{"f": []byte("hello")}}, cache.Options{}, Options{AccessLog: al})
	ts.get(t, "/f")
	accessLogLines(t, al, p, 1)
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatal(err)
	}
	ts.get(t, "/f?before")
	accessLogLines(t, al, p+".1", 2)
	if err := al.Reopen(); err != nil {
		t.Fatal(err)
	}
	ts.get(t, "/f?after")
	lines := accessLogLines(t, al, p, 1)
	if !strings.Contains(lines[0], "/f?after") {
		t.Errorf("new file: %q", lines)
	}
	old, _ := os.ReadFile(p + ".1")
	if strings.Count(string(old), "\n") != 2 || !strings.Contains(string(old), "/f?before") {
		t.Errorf("rotated file:\n%s", old)
	}
}

// TestAccessLogBounded: a writer that does not keep up makes lines be dropped and
// counted, never the request wait: logging stays fast while the disk is stuck.
func TestAccessLogBounded(t *testing.T) {
	stuck := make(chan struct{})
	al := newAccessLog(stuckWriter{stuck}, "", false, nil)
	defer func() { close(stuck); al.Close() }()
	e := &accessEntry{start: time.Now(), remote: "127.0.0.1", method: "GET", target: "/" + strings.Repeat("x", 1000), proto: "HTTP/1.1", status: 200}
	start := time.Now()
	for i := 0; i < 5000; i++ {
		al.log(e)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("5000 lines took %v with the writer stuck", d)
	}
	if al.Dropped() == 0 {
		t.Errorf("no line dropped with the writer stuck and %d bytes pending", al.pendingBytes())
	}
	if n := al.pendingBytes(); n > maxPendingLog {
		t.Errorf("%d bytes pending, more than the bound %d", n, maxPendingLog)
	}
}

// stuckWriter is a disk that takes nothing until its channel is closed.
type stuckWriter struct{ stuck chan struct{} }

func (w stuckWriter) Write(p []byte) (int, error) { <-w.stuck; return len(p), nil }

// TestAccessLogClientGone: a client that leaves before its answer is logged with
// nginx's 499, not a status the server never sent.
func TestAccessLogClientGone(t *testing.T) {
	p := filepath.Join(t.TempDir(), "access.log")
	al, err := OpenAccessLog(p, "combined", nil)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	o := &stubOrigin{files: map[string][]byte{"slow": []byte("hello")}, gate: func(ctx context.Context, p string, off, n int64) { <-release }}
	ts := startTestServer(t, o, cache.Options{}, Options{AccessLog: al})
	t.Cleanup(func() { close(release) })
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(nc, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	deadline := time.Now().Add(5 * time.Second)
	for o.readCount() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	nc.Close()
	l := accessLogLines(t, al, p, 1)
	if m := combinedRE.FindStringSubmatch(l[0]); m == nil || m[4] != "499" || m[5] != "0" {
		t.Errorf("line %q: want status 499, 0 bytes", l[0])
	}
}
