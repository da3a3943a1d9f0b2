package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type instance struct {
	Pid        int    `json:"pid"`
	Command    string `json:"command"`
	CacheDir   string `json:"cache_dir"`
	Origin     string `json:"origin"`
	Mountpoint string `json:"mountpoint"`
	Listen     string `json:"listen"`
	Started    string `json:"started"`
}

func instances(t *testing.T) []instance {
	t.Helper()
	out, code := runCLI(t, "status", "--json")
	var l []instance
	if err := json.Unmarshal([]byte(out), &l); code != 0 || err != nil {
		t.Fatalf("cachegate status --json: exit %d, %v: %s", code, err, out)
	}
	return l
}

// Issue 20 point 3: a running mount is registered. `cachegate status` with no flags
// lists it (credentials redacted), a cache verb given a path inside the mount finds
// its cache without --cache-dir, and a clean exit removes the entry.
func TestInstanceRegistry(t *testing.T) {
	dir := filepath.Join(workDir, "registry-origin")
	writeRandom(t, filepath.Join(dir, "sub/a.bin"), 10000, 2001)
	writeRandom(t, filepath.Join(dir, "b.bin"), 5000, 2002)
	nx := startNginx(t, dir, "json")
	// nginx ignores the credentials; they are there to be redacted.
	originURL := strings.Replace(nx.URL, "http://", "http://reg-user:reg-secret@", 1)
	cacheDir := filepath.Join(workDir, "registry-cache") // not the default
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	m := startMount(t, originURL, cacheDir, "--serve", listen)
	// Registered by the time the mount appears.
	if out, code := runCLI(t, "cache", "ls", m.Dir, "--cached-only", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("cache ls MOUNT --cached-only as the mount appears: exit %d: %s", code, out)
	}
	if _, err := os.ReadFile(filepath.Join(m.Dir, "sub/a.bin")); err != nil {
		t.Fatal(err)
	}

	// A path inside the mount finds the mount's cache.
	out, code := runCLI(t, "cache", "ls", filepath.Join(m.Dir, "sub"), "--json")
	var ls []lsEntry
	if err := json.Unmarshal([]byte(out), &ls); code != 0 || err != nil || len(ls) != 1 || ls[0].Path != "sub/a.bin" || !ls[0].Complete {
		t.Fatalf("cache ls MOUNT/sub without --cache-dir: exit %d, %v: %s", code, err, out)
	}
	out, code = runCLI(t, "cache", "stat", filepath.Join(m.Dir, "sub/a.bin"))
	if code != 0 || !strings.Contains(out, "complete:      true") {
		t.Errorf("cache stat MOUNT/sub/a.bin without --cache-dir: exit %d: %s", code, out)
	}

	// status lists it.
	var mine *instance
	for _, e := range instances(t) {
		if e.Pid == m.cmd.Process.Pid {
			mine = &e
		}
	}
	if mine == nil || mine.Command != "mount" || mine.CacheDir != cacheDir || mine.Mountpoint != m.Dir || mine.Listen != listen || mine.Started == "" {
		t.Fatalf("status --json: this mount (pid %d) is listed as %+v", m.cmd.Process.Pid, mine)
	}
	if strings.Contains(mine.Origin, "reg-secret") || !strings.Contains(mine.Origin, "127.0.0.1") {
		t.Errorf("status --json: origin %q, want it with the password redacted", mine.Origin)
	}
	out, code = runCLI(t, "status")
	if code != 0 || !strings.Contains(out, m.Dir) || !strings.Contains(out, cacheDir) || !strings.Contains(out, listen) || strings.Contains(out, "reg-secret") {
		t.Errorf("status: exit %d, want the mount listed (password redacted):\n%s", code, out)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/run/cachegate/%d.json", m.cmd.Process.Pid)); err != nil || strings.Contains(string(b), "reg-secret") {
		t.Errorf("registry entry: %v, %s", err, b)
	}

	// A clean exit removes the entry.
	m.stop(t)
	for _, e := range instances(t) {
		if e.Pid == m.cmd.Process.Pid {
			t.Errorf("status --json still lists the stopped mount: %+v", e)
		}
	}
	if _, err := os.Stat(fmt.Sprintf("/run/cachegate/%d.json", m.cmd.Process.Pid)); !os.IsNotExist(err) {
		t.Errorf("the stopped mount's registry entry is still there: %v", err)
	}
}
