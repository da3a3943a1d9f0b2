package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type lsEntry struct {
	Path        string `json:"path"`
	Origin      string `json:"origin"`
	Size        int64  `json:"size"`
	CachedBytes int64  `json:"cached_bytes"`
	Complete    bool   `json:"complete"`
	Pinned      bool   `json:"pinned"`
	LastAccess  string `json:"last_access"`
	DataFile    string `json:"data_file"`
}

// cli runs a cachegate verb on cacheDir and fails the test on a non-zero exit.
func cli(t *testing.T, cacheDir string, args ...string) string {
	t.Helper()
	out, code := runCLI(t, append(args, "--cache-dir", cacheDir)...)
	if code != 0 {
		t.Fatalf("cachegate %s: exit %d: %s", strings.Join(args, " "), code, out)
	}
	return out
}

func lsJSON(t *testing.T, cacheDir, prefix string) map[string]lsEntry {
	t.Helper()
	var ents []lsEntry
	if err := json.Unmarshal([]byte(cli(t, cacheDir, "cache", "ls", prefix, "--json")), &ents); err != nil {
		t.Fatal(err)
	}
	m := map[string]lsEntry{}
	for _, e := range ents {
		m[e.Path] = e
	}
	return m
}

// Acceptance 1 of the cache CLI issue: warm, ls, evict and pin while a mount runs.
func TestCacheCLIWithMount(t *testing.T) {
	dir := filepath.Join(workDir, "cli-origin")
	sums := map[string]string{}
	for i := 0; i < 500; i++ {
		p := fmt.Sprintf("warm/f%03d.bin", i)
		sums[p] = writeRandom(t, filepath.Join(dir, p), int64(1000+i*97), uint64(5000+i))
	}
	for i := 0; i < 6; i++ {
		p := fmt.Sprintf("big/b%d.bin", i)
		sums[p] = writeRandom(t, filepath.Join(dir, p), 8<<20, uint64(6000+i))
	}
	srv := startNginx(t, dir, "json")
	cacheDir := filepath.Join(workDir, "cli-cache")
	m := startMount(t, srv.URL, cacheDir, "--cache-size", "24MiB")

	cli(t, cacheDir, "cache", "warm", "warm")
	ls := lsJSON(t, cacheDir, "warm")
	if len(ls) != 500 {
		t.Fatalf("cache ls warm lists %d files, want 500", len(ls))
	}
	for p, e := range ls {
		if !e.Complete || e.CachedBytes != e.Size || e.LastAccess == "" {
			t.Fatalf("%s after warm: %+v", p, e)
		}
	}
	// Evict one, by its path inside the mount: 0%, and the mount still reads it right.
	victim := "warm/f123.bin"
	cli(t, cacheDir, "cache", "evict", filepath.Join(m.Dir, victim))
	if e := lsJSON(t, cacheDir, "warm")[victim]; e.CachedBytes != 0 {
		t.Fatalf("after evict: %+v, want 0 bytes cached", e)
	}
	if sha256File(t, filepath.Join(m.Dir, victim)) != sums[victim] {
		t.Fatal("evicted file reads wrong through the mount")
	}
	// Pin one big file; more than the cache holds of other traffic must not evict it.
	cli(t, cacheDir, "cache", "pin", "big/b0.bin")
	for i := 1; i < 6; i++ { // 40 MiB through a 24 MiB cache
		p := fmt.Sprintf("big/b%d.bin", i)
		if sha256File(t, filepath.Join(m.Dir, p)) != sums[p] {
			t.Fatalf("%s differs", p)
		}
	}
	if e := lsJSON(t, cacheDir, "big")["big/b0.bin"]; !e.Pinned || !e.Complete {
		t.Fatalf("pinned file after eviction pressure: %+v", e)
	}
	// Pinning more than the cache holds is refused.
	if out, code := runCLI(t, "cache", "pin", "big", "--cache-dir", cacheDir); code == 0 || !strings.Contains(out, "cannot pin") {
		t.Errorf("pinning 48 MiB in a 24 MiB cache: exit %d, %q", code, out)
	}
	// The pin survives a restart.
	m.stop(t)
	before := srv.originBytes(t, "/big/b0.bin")
	m = startMount(t, srv.URL, cacheDir, "--cache-size", "24MiB")
	if e := lsJSON(t, cacheDir, "big")["big/b0.bin"]; !e.Pinned || !e.Complete {
		t.Fatalf("pin after restart: %+v", e)
	}
	if sha256File(t, filepath.Join(m.Dir, "big/b0.bin")) != sums["big/b0.bin"] {
		t.Fatal("pinned file differs after restart")
	}
	if after := srv.originBytes(t, "/big/b0.bin"); after != before {
		t.Errorf("reading the pinned file after a restart cost %d origin bytes", after-before)
	}
	cli(t, cacheDir, "cache", "unpin", "big/b0.bin")
	if e := lsJSON(t, cacheDir, "big")["big/b0.bin"]; e.Pinned {
		t.Fatal("unpin did not unpin")
	}
	// Unknown paths: "not in the origin" differs from "not cached".
	if out, code := runCLI(t, "cache", "stat", "no/such/file", "--cache-dir", cacheDir); code != 1 || !strings.Contains(out, "not in the origin") {
		t.Errorf("stat of a missing path: exit %d %q", code, out)
	}
	if out, code := runCLI(t, "cache", "stat", "warm/f123.bin", "--cache-dir", cacheDir); code != 1 || !strings.Contains(out, "not cached") {
		t.Errorf("stat of an uncached path: exit %d %q", code, out)
	}
}

// Acceptance 2: a flipped byte is named by verify and never served.
func TestCacheVerifyFlippedByte(t *testing.T) {
	dir := filepath.Join(workDir, "verify-origin")
	sum := writeRandom(t, filepath.Join(dir, "v.bin"), 5<<20, 77)
	srv := startNginx(t, dir, "json")
	cacheDir := filepath.Join(workDir, "verify-cache")
	m := startMount(t, srv.URL, cacheDir)
	sha256File(t, filepath.Join(m.Dir, "v.bin"))
	m.stop(t)

	e := lsJSON(t, cacheDir, "")["v.bin"]
	f, err := os.OpenFile(e.DataFile, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	const at = 3<<20 + 12345 // chunk 3
	f.ReadAt(b, at)
	b[0] ^= 0x40
	f.WriteAt(b, at)
	f.Close()

	// No owner: verify names the object and the chunk, exits 1, and drops the chunk.
	out, code := runCLI(t, "cache", "verify", "--cache-dir", cacheDir)
	if code != 1 || !strings.Contains(out, "BAD /v.bin chunk 3") || strings.Count(out, "BAD") != 1 {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
	// A restarted mount never serves the flipped byte, even before --repair.
	m = startMount(t, srv.URL, cacheDir)
	if sha256File(t, filepath.Join(m.Dir, "v.bin")) != sum {
		t.Fatal("the flipped byte was served")
	}
	// With the owner running: verify is clean again (the bad chunk was refetched).
	out = cli(t, cacheDir, "cache", "verify", "--repair")
	if !strings.Contains(out, "0 bad") {
		t.Fatalf("verify after the refetch: %s", out)
	}
}

// Acceptance 3: status --json tells the truth over a scripted sequence.
func TestStatusTellsTheTruth(t *testing.T) {
	dir := filepath.Join(workDir, "status-origin")
	writeRandom(t, filepath.Join(dir, "a.bin"), 3<<20, 1)
	writeRandom(t, filepath.Join(dir, "small.bin"), 2000, 2)
	srv := startNginx(t, dir, "json")
	cacheDir := filepath.Join(workDir, "status-cache")
	port := freePort(t)
	// No prefetch: reading one file would fetch its neighbour too, and the figures
	// checked here are those of the reads themselves.
	m := startMount(t, srv.URL, cacheDir, "--serve", fmt.Sprintf("127.0.0.1:%d", port), "--prefetch", "0")
	base := fmt.Sprintf("http://127.0.0.1:%d/", port)
	status := func() map[string]any {
		var st map[string]any
		if err := json.Unmarshal([]byte(cli(t, cacheDir, "status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	st0 := status()
	sha256File(t, filepath.Join(m.Dir, "a.bin")) // misses
	st1 := status()
	if num(st1, "cache.misses") <= num(st0, "cache.misses") || num(st1, "origin.bytes_fetched")-num(st0, "origin.bytes_fetched") != 3<<20 {
		t.Errorf("after a cold read: %v -> %v", st0["cache"], st1["cache"])
	}
	for _, u := range []string{"a.bin", "small.bin", "small.bin"} {
		resp, err := http.Get(base + u)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	st2 := status()
	if num(st2, "cache.hits") <= num(st1, "cache.hits") {
		t.Errorf("hits did not move: %v -> %v", st1["cache"], st2["cache"])
	}
	bt := func(st map[string]any, k string) float64 { return num(st, "serve.bytes_by_transfer."+k) }
	// On loopback a complete 3 MiB body goes by sendfile, 2000 bytes with their
	// header in one writev from the mapping.
	if bt(st2, "sendfile")-bt(st1, "sendfile") != 3<<20 || bt(st2, "mmap")-bt(st1, "mmap") != 4000 {
		t.Errorf("bytes_by_transfer: %v -> %v", st1["serve"], st2["serve"])
	}
	used := num(st2, "cache.used_bytes")
	du := float64(duBytes(filepath.Join(cacheDir, "objects")))
	if d := used - du; d > 1<<20 || d < -(1<<20) {
		t.Errorf("used_bytes %v, du of the data %v: more than a chunk apart", used, du)
	}
	if num(st2, "cache.limit_bytes") != 10<<30 || num(st2, "cache.objects") != 2 {
		t.Errorf("status: %v", st2["cache"])
	}
}

// Acceptance 4: every verb works with no owner running.
func TestCacheVerbsWithoutOwner(t *testing.T) {
	dir := filepath.Join(workDir, "noowner-origin")
	for i := 0; i < 5; i++ {
		writeRandom(t, filepath.Join(dir, fmt.Sprintf("d/f%d.bin", i)), 1<<20, uint64(i))
	}
	srv := startNginx(t, dir, "json")
	cacheDir := filepath.Join(workDir, "noowner-cache")
	m := startMount(t, srv.URL, cacheDir)
	m.stop(t)
	cli(t, cacheDir, "cache", "warm", "d")
	if ls := lsJSON(t, cacheDir, "d"); len(ls) != 5 || !ls["d/f0.bin"].Complete {
		t.Fatalf("ls after an ownerless warm: %+v", ls)
	}
	cli(t, cacheDir, "cache", "stat", "d/f1.bin")
	cli(t, cacheDir, "cache", "pin", "d/f2.bin")
	cli(t, cacheDir, "cache", "unpin", "d/f2.bin")
	cli(t, cacheDir, "cache", "evict", "d/f3.bin")
	cli(t, cacheDir, "cache", "verify")
	cli(t, cacheDir, "cache", "gc", "--to", "2MiB")
	cli(t, cacheDir, "status")
	if out := cli(t, cacheDir, "cache", "clear", "--yes"); !strings.Contains(out, "cleared") {
		t.Errorf("clear: %s", out)
	}
	if ls := lsJSON(t, cacheDir, "d"); ls["d/f0.bin"].CachedBytes != 0 {
		t.Errorf("after clear: %+v", ls)
	}
}
