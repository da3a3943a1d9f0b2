package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dataFiles lists the .data files of a cache directory.
func dataFiles(t *testing.T, cacheDir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(cacheDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".data") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// Issue 19, point 1: `cache verify` without --repair used to mark an object verified
// while leaving its bad chunk in place, so the mount served the corrupt byte.
func TestVerifyWithoutRepairStillDropsBadChunks(t *testing.T) {
	dir := filepath.Join(workDir, "verify-norepair-origin")
	sum := writeRandom(t, filepath.Join(dir, "f.bin"), 3<<20, 1901)
	cacheDir := filepath.Join(workDir, "verify-norepair-cache")
	m := startMount(t, dir, cacheDir)
	if got := sha256File(t, filepath.Join(m.Dir, "f.bin")); got != sum {
		t.Fatalf("first read: sha256 %s, want %s", got, sum)
	}
	m.stop(t)

	files := dataFiles(t, cacheDir)
	if len(files) != 1 {
		t.Fatalf("cache holds %d data files, want 1", len(files))
	}
	fd, err := os.OpenFile(files[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	fd.ReadAt(b, 1000)
	b[0] ^= 0xff
	fd.WriteAt(b, 1000)
	fd.Close()

	m = startMount(t, dir, cacheDir)
	out, code := runCLI(t, "cache", "verify", "--cache-dir", cacheDir)
	if code != 1 || !strings.Contains(out, "BAD /f.bin chunk 0") {
		t.Fatalf("cache verify: exit %d, output:\n%s\nwant exit 1 naming chunk 0", code, out)
	}
	if got := sha256File(t, filepath.Join(m.Dir, "f.bin")); got != sum {
		t.Fatalf("read after verify: sha256 %s, want %s (the corrupt chunk was served)", got, sum)
	}
}

// Issue 19, point 3: an evicted object's old size stayed in the kernel for the whole
// --metadata-ttl, so a reader got the first 21 bytes of the new 44-byte file.
func TestEvictRefreshesTheKernelsView(t *testing.T) {
	dir := filepath.Join(workDir, "evict-refresh-origin")
	p := filepath.Join(dir, "f.txt")
	os.MkdirAll(dir, 0o755)
	old := "twenty-one bytes long"
	if err := os.WriteFile(p, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMount(t, dir, "", "--metadata-ttl", "1h")
	if b, err := os.ReadFile(filepath.Join(m.Dir, "f.txt")); err != nil || string(b) != old {
		t.Fatalf("first read: %q, %v", b, err)
	}
	now := "forty-four bytes long, and not twenty-one..."
	if err := os.WriteFile(p, []byte(now), 0o644); err != nil {
		t.Fatal(err)
	}
	cli(t, m.CacheDir, "cache", "evict", filepath.Join(m.Dir, "f.txt"))
	if b, err := os.ReadFile(filepath.Join(m.Dir, "f.txt")); err != nil || string(b) != now {
		t.Fatalf("read after evict: %q (%d bytes), %v; want the new %d bytes", b, len(b), err, len(now))
	}
}

// Issue 19, point 4: with --verify-interval, a running mount's scrub finds a chunk
// changed on disk without any open, and the next read gets the origin's bytes.
func TestScrubFindsCorruptionWhileMounted(t *testing.T) {
	dir := filepath.Join(workDir, "scrub-origin")
	sum := writeRandom(t, filepath.Join(dir, "s.bin"), 2<<20, 1904)
	m := startMount(t, dir, "", "--verify-interval", "200ms")
	if got := sha256File(t, filepath.Join(m.Dir, "s.bin")); got != sum {
		t.Fatalf("first read: sha256 %s, want %s", got, sum)
	}
	files := dataFiles(t, m.CacheDir)
	if len(files) != 1 {
		t.Fatalf("cache holds %d data files, want 1", len(files))
	}
	fd, err := os.OpenFile(files[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd.WriteAt([]byte("not the origin's bytes"), 1<<20+5)
	fd.Close()
	var st struct {
		Chunks        int `json:"chunks"`
		ChunksPresent int `json:"chunks_present"`
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := json.Unmarshal([]byte(cli(t, m.CacheDir, "cache", "stat", "s.bin", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		if st.ChunksPresent == st.Chunks-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the scrub never dropped the changed chunk: %d of %d chunks present", st.ChunksPresent, st.Chunks)
		}
	}
	if got := sha256File(t, filepath.Join(m.Dir, "s.bin")); got != sum {
		t.Fatalf("read after the scrub: sha256 %s, want %s", got, sum)
	}
}
