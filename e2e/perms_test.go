package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The cache dir is 0700 and the control socket 0600: another user can neither read
// the cache nor drive its owner.
func TestCacheDirAndSocketPermissions(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(workDir, "perm-origin")
	writeRandom(t, filepath.Join(dir, "f.bin"), 1000, 1)
	srv := startNginx(t, dir, "json")
	cacheDir := filepath.Join(workDir, "perm-parent", "cache") // created by cachegate
	os.MkdirAll(filepath.Dir(cacheDir), 0o755)
	startMount(t, srv.URL, cacheDir)
	for path, want := range map[string]os.FileMode{cacheDir: 0o700, filepath.Join(cacheDir, "control.sock"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	// As nobody: refused, with a one-line error and a non-zero exit.
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", binary, "status", "--cache-dir", cacheDir)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("another user read the status of a cache it does not own:\n%s", out)
	}
	if s := strings.TrimSpace(string(out)); strings.Count(s, "\n") > 0 || !strings.Contains(s, "permission denied") {
		t.Errorf("another user's error: %q", s)
	}
}
