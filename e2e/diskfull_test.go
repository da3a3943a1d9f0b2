package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The cache's filesystem, a small tmpfs, is filled by another process: reads through
// the mount and the server keep returning the origin's bytes (uncached), cachegate
// does not crash, no partial chunk is counted as cached, and caching resumes when the
// space comes back.
func TestDiskFull(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(workDir, "diskfull-origin")
	const size = 6<<20 + 777
	sums := map[string]string{}
	for i, name := range []string{"a.bin", "b.bin", "c.bin", "d.bin", "e.bin"} {
		sums[name] = writeRandom(t, filepath.Join(dir, name), size, uint64(400+i))
	}
	nx := startNginx(t, dir, "json")

	fsDir, err := os.MkdirTemp(workDir, "tmpfs-")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", fsDir, "tmpfs", 0, "size=48m,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(fsDir, syscall.MNT_DETACH) }) // after the mount stops
	cacheDir := filepath.Join(fsDir, "cache")
	port := freePort(t)
	m := startMount(t, nx.URL, cacheDir, "--cache-size", "32MiB", "--min-free", "1MiB", "--serve", fmt.Sprintf("127.0.0.1:%d", port))
	if err := waitPort(port, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	viaMount := func(name string) {
		t.Helper()
		if got := sha256File(t, filepath.Join(m.Dir, name)); got != sums[name] {
			t.Fatalf("%s through the mount: wrong bytes", name)
		}
	}
	viaServer := func(name string) {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/%s", port, name))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", name, resp.Status)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || sha(b) != sums[name] {
			t.Fatalf("GET %s: wrong bytes or cut short (%v)", name, err)
		}
	}
	stat := func(name string) (complete bool, cached int64) {
		t.Helper()
		out, code := runCLI(t, "cache", "stat", name, "--json", "--cache-dir", cacheDir)
		if code != 0 {
			return false, 0 // not in the cache
		}
		var e struct {
			Complete    bool  `json:"complete"`
			CachedBytes int64 `json:"cached_bytes"`
		}
		if err := json.Unmarshal([]byte(out), &e); err != nil {
			t.Fatalf("cache stat %s: %v\n%s", name, err, out)
		}
		return e.Complete, e.CachedBytes
	}

	// a.bin is cached and pinned, so the cache cannot evict it to make room: with
	// the disk full there is then truly no space for anything new.
	viaMount("a.bin")
	cli(t, cacheDir, "cache", "pin", "a.bin")
	if complete, _ := stat("a.bin"); !complete {
		t.Fatal("a.bin not cached before the disk filled")
	}

	// Another process takes every free byte.
	filler, err := os.Create(filepath.Join(fsDir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 1<<20)
	for {
		if _, err := filler.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the tmpfs: %v", err)
			}
			break
		}
	}
	filler.Close()

	viaMount("b.bin")
	viaServer("c.bin")
	viaMount("a.bin") // pinned: still read from the cache
	select {
	case <-m.done:
		t.Fatalf("cachegate died with the disk full: %v", m.cmd.ProcessState)
	default:
	}
	var st struct {
		Cache struct {
			Uncached int64 `json:"uncached_reads"`
		} `json:"cache"`
	}
	if err := json.Unmarshal([]byte(cli(t, cacheDir, "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Cache.Uncached == 0 {
		t.Error("status counts no uncached reads although the disk was full")
	}
	for _, name := range []string{"b.bin", "c.bin"} {
		if complete, cached := stat(name); complete || cached > 0 {
			t.Errorf("%s counted as cached (%d bytes) on a full disk", name, cached)
		}
	}
	if !strings.Contains(m.logs.String(), "no room in the cache") {
		t.Error("the log does not say that reads go uncached")
	}
	if out, code := runCLI(t, "cache", "verify", "--cache-dir", cacheDir); code != 0 {
		t.Errorf("cache verify with the disk full: exit %d\n%s", code, out)
	}

	// Space comes back: new reads are cached again.
	os.Remove(filepath.Join(fsDir, "filler"))
	viaMount("d.bin")
	viaServer("e.bin")
	for _, name := range []string{"d.bin", "e.bin"} {
		if complete, _ := stat(name); !complete {
			t.Errorf("%s not cached after the space came back", name)
		}
	}
	if out, code := runCLI(t, "cache", "verify", "--cache-dir", cacheDir); code != 0 {
		t.Errorf("cache verify after the disk emptied: exit %d\n%s", code, out)
	}
}
