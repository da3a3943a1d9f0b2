package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeHostileRequests (issue 19 points 6, 7, 13, 18) runs the real binary
// against requests that used to cost it unbounded work or leak what they should
// not: announced bodies that never come, ranges that multiply the file, an origin
// that fails with its URL and credentials in the error, a file named like a URL.
func TestServeHostileRequests(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	const size = 4 << 20
	sum := writeRandom(t, filepath.Join(dir, "big.bin"), size, 19)
	if err := os.WriteFile(filepath.Join(dir, "javascript:alert(document.domain)"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, dir, "", "--max-conns", "5")
	addr := strings.TrimSuffix(strings.TrimPrefix(srv.URL, "http://"), "/")
	client := &http.Client{Timeout: 10 * time.Second}

	// Point 7: five connections announce a body and send two bytes of it.
	var bad []net.Conn
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /big.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\nab")
		bad = append(bad, c)
	}
	if got, err := hashGet(client, srv.URL+"big.bin"); err != nil || got != sum {
		t.Fatalf("a legitimate request beside five unfinished bodies: %v (sha256 %s, want %s)", err, got, sum)
	}
	for i, c := range bad {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 400 {
			t.Errorf("GET %d with a body: %v %v, want 400", i, resp, err)
		}
	}

	// Point 6: ranges that add up to more than the file get the file, once.
	for _, rng := range []string{"bytes=" + strings.Repeat("0-,", 63) + "0-", "bytes=0-,1-"} {
		req, _ := http.NewRequest("GET", srv.URL+"big.bin", nil)
		req.Header.Set("Range", rng)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || n != size || hex.EncodeToString(h.Sum(nil)) != sum {
			t.Errorf("Range %.40s…: %d, %d bytes (%v), want 200 and the file", rng, resp.StatusCode, n, err)
		}
	}

	// Point 18: a name that looks like a URL scheme stays a relative link.
	body, code := rawGet(t, srv.URL, "/")
	if code != 200 || !strings.Contains(body, `href="./javascript:alert%28document.domain%29"`) || strings.Contains(body, `href="javascript:`) {
		t.Errorf("HTML index (%d):\n%s", code, body)
	}

	// Point 13: an origin failing with its URL, credentials and paths in the error.
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, "[]\n")
			return
		}
		http.Error(w, "failed reading /srv/private/data", http.StatusInternalServerError)
	}))
	t.Cleanup(origin.Close)
	u := strings.Replace(origin.URL, "http://", "http://alice:Pa55w0rd@", 1) + "/"
	bad502 := startServe(t, u, "", "--origin-timeout", "2s")
	body, code = rawGet(t, bad502.URL, "/missing.bin")
	if code != 502 {
		t.Errorf("origin error: %d, want 502", code)
	}
	for _, leak := range []string{"alice", "Pa55w0rd", "127.0.0.1", "/srv/private", "500"} {
		if strings.Contains(body, leak) {
			t.Errorf("502 body %q shows %q", body, leak)
		}
	}
}
