package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// With the origin down, what is cached stays readable through the mount and the
// server (the log says it is stale), also after a restart; a miss fails cleanly and
// quickly instead of hanging.
func TestOriginDown(t *testing.T) {
	dir := filepath.Join(workDir, "offline-origin")
	sum := writeRandom(t, filepath.Join(dir, "docs/cached.bin"), 3<<20, 1)
	writeRandom(t, filepath.Join(dir, "docs/uncached.bin"), 1000, 2)
	srv := startNginx(t, dir, "json")
	cacheDir := filepath.Join(workDir, "offline-cache")
	port := freePort(t)
	// No prefetch: reading cached.bin would fetch uncached.bin beside it, which
	// must stay uncached for this test.
	m := startMount(t, srv.URL, cacheDir, "--metadata-ttl", "1s", "--origin-timeout", "3s", "--serve", fmt.Sprintf("127.0.0.1:%d", port), "--prefetch", "0")
	if sha256File(t, filepath.Join(m.Dir, "docs/cached.bin")) != sum {
		t.Fatal("first read differs")
	}
	srv.stop()
	time.Sleep(1500 * time.Millisecond) // past the metadata TTL

	check := func(when string) {
		t.Helper()
		if sha256File(t, filepath.Join(m.Dir, "docs/cached.bin")) != sum {
			t.Fatalf("%s: cached file not readable through the mount", when)
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/docs/cached.bin", port))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: server answered %d for a cached file", when, resp.StatusCode)
		}
		start := time.Now()
		_, err = os.ReadFile(filepath.Join(m.Dir, "docs/uncached.bin"))
		if err == nil {
			t.Fatalf("%s: an uncached file read with the origin down", when)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Fatalf("%s: a miss took %v to fail", when, d)
		}
	}
	check("origin down")
	if !strings.Contains(m.logs.String(), "stale") {
		t.Error("no log line says the metadata is stale")
	}
	m.stop(t)
	// A restart while the origin is still down starts on what is cached.
	port = freePort(t)
	m = startMount(t, srv.URL, cacheDir, "--metadata-ttl", "1s", "--origin-timeout", "3s", "--serve", fmt.Sprintf("127.0.0.1:%d", port))
	check("after a restart")
}
