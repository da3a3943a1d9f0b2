package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCacheVerbsSayWhatHappened (issue 20 point 8), through the real binary on a
// local origin with no owner running: evict refuses a pinned file unless --force;
// evict, unpin and pin of a path the origin lacks, or that is not cached, exit 1
// saying so; counts read "1 object"; gc --to 0 keeps only the pins; objects another
// origin left (warm --origin) are listed by ls --all and counted per origin by
// status; ls prints paths as its JSON does.
func TestCacheVerbsSayWhatHappened(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, f := range []string{"a.txt", "b.txt", "日本語.txt", "sub/c.txt"} {
		writeRandom(t, filepath.Join(a, f), 10<<10, 1)
	}
	writeRandom(t, filepath.Join(b, "other.txt"), 10<<10, 2)
	cacheDir := filepath.Join(t.TempDir(), "cache")
	run := func(want int, args ...string) string {
		t.Helper()
		out, code := runCLI(t, append(args, "--cache-dir", cacheDir)...)
		if code != want {
			t.Errorf("cachegate %s: exit %d, want %d: %s", strings.Join(args, " "), code, want, out)
		}
		return out
	}
	lsJSON := func(args ...string) map[string]lsEntry {
		t.Helper()
		var ents []lsEntry
		out := run(0, append([]string{"cache", "ls", "--json"}, args...)...)
		if err := json.Unmarshal([]byte(out), &ents); err != nil {
			t.Fatalf("ls --json: %v: %s", err, out)
		}
		m := map[string]lsEntry{}
		for _, e := range ents {
			m[e.Path] = e
		}
		return m
	}
	if out := run(0, "cache", "warm", "--origin", a, "a.txt", "b.txt", "sub"); !strings.Contains(out, "warmed 3 files") {
		t.Errorf("warm: %s", out)
	}
	if out := run(0, "cache", "pin", "a.txt"); !strings.Contains(out, "pinned 1 file,") {
		t.Errorf("pin: %s", out)
	}

	// evict of a pinned file is refused, and the pin stays.
	if out := run(1, "cache", "evict", "a.txt"); !strings.Contains(out, "pinned: unpin it first, or --force") {
		t.Errorf("evict of a pinned file: %s", out)
	}
	if e := lsJSON("--cached-only")["a.txt"]; !e.Pinned || e.CachedBytes != 10<<10 {
		t.Errorf("after a refused evict: %+v, want it cached and pinned", e)
	}
	if out := run(0, "cache", "evict", "--force", "a.txt"); strings.TrimSpace(out) != "evicted 1 object" {
		t.Errorf("evict --force: %q", out)
	}

	// Paths the origin lacks, or that are not cached.
	for _, args := range [][]string{{"cache", "evict", "nope.txt"}, {"cache", "unpin", "nope.txt"}, {"cache", "pin", "nope.txt"}} {
		if out := run(1, args...); !strings.Contains(out, "/nope.txt: not in the origin") {
			t.Errorf("%v: %s", args, out)
		}
	}
	for _, args := range [][]string{{"cache", "evict", "日本語.txt"}, {"cache", "unpin", "日本語.txt"}} {
		if out := run(1, args...); !strings.Contains(out, "/日本語.txt: not cached") {
			t.Errorf("%v: %s", args, out)
		}
	}

	// gc --to 0 empties the cache but for the pins.
	run(0, "cache", "pin", "b.txt")
	run(0, "cache", "gc", "--to", "0")
	if ls := lsJSON("--cached-only"); len(ls) != 1 || !ls["b.txt"].Pinned {
		t.Errorf("after gc --to 0: %+v, want only the pinned b.txt", ls)
	}

	// Objects of another origin: counted by status, listed by ls --all only.
	run(0, "cache", "warm", "--origin", b, "other.txt")
	if _, ok := lsJSON("--cached-only")["other.txt"]; ok {
		t.Errorf("ls lists another origin's object without --all")
	}
	all := lsJSON("--all")
	if e, ok := all["other.txt"]; !ok || !strings.Contains(e.Origin, b) || len(all) != 2 {
		t.Errorf("ls --all: %+v, want b.txt and other.txt of %s", all, b)
	}
	var st struct {
		Cache struct {
			Objects int `json:"objects"`
		} `json:"cache"`
		ByOrigin map[string]int `json:"objects_by_origin"`
	}
	if out := run(0, "status", "--json"); json.Unmarshal([]byte(out), &st) != nil || st.Cache.Objects != 2 || len(st.ByOrigin) != 2 {
		t.Errorf("status: %+v: %s", st, out)
	}
	if out := run(0, "status"); !strings.Contains(out, "in 2 objects (1 of ") || !strings.Contains(out, "cache ls --all") {
		t.Errorf("status does not split its count by origin: %s", out)
	}

	// The table's paths are the JSON's: no leading slash.
	out := run(0, "cache", "ls", "--cached-only")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "b.txt ") {
		t.Errorf("ls table:\n%s", out)
	}
	if _, err := os.Stat(cacheDir); err != nil {
		t.Fatal(err)
	}
}
