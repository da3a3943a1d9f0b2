package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startNginxRequiringToken serves root like startNginx but answers 403 to every
// request (listings, HEADs, ranged GETs) whose X-Token header is not "secret". The
// directives ride in the autoindex_format slot of nginxConf (the location's last
// directive, whose ";" the trailing set consumes).
func startNginxRequiringToken(t *testing.T, root string) *nginx {
	t.Helper()
	return launchNginx(t, root, `json; if ($http_x_token != "secret") { return 403; } set $token_checked 1`, false, t.Cleanup)
}

// TestMountOriginHeader: a mount of an origin that requires a header works with
// --origin-header, and a rotated --origin-header-file token takes effect without a
// restart.
func TestMountOriginHeader(t *testing.T) {
	root := t.TempDir()
	for _, n := range []string{"a", "b", "c"} {
		os.WriteFile(filepath.Join(root, n), []byte("file "+n), 0o644)
	}
	ng := startNginxRequiringToken(t, root)

	m := startMount(t, ng.URL, "", "--origin-header", "X-Token: secret")
	if b, err := os.ReadFile(filepath.Join(m.Dir, "a")); err != nil || string(b) != "file a" {
		t.Fatalf("read through --origin-header = %q, %v", b, err)
	}
	m.stop(t)

	hf := filepath.Join(t.TempDir(), "headers")
	os.WriteFile(hf, []byte("# rotated by a cron job\nX-Token: secret\n"), 0o600)
	m = startMount(t, ng.URL, "", "--origin-header-file", hf, "--metadata-ttl", "1ms")
	if b, err := os.ReadFile(filepath.Join(m.Dir, "a")); err != nil || string(b) != "file a" {
		t.Fatalf("read through --origin-header-file = %q, %v", b, err)
	}
	// A wrong token is used once the file changes: the origin refuses.
	os.WriteFile(hf, []byte("X-Token: expired\n"), 0o600)
	waitFor(t, func() bool { _, err := os.ReadFile(filepath.Join(m.Dir, "b")); return err != nil })
	// The right one again, without a restart.
	os.WriteFile(hf, []byte("X-Token: secret\n"), 0o600)
	waitFor(t, func() bool {
		b, err := os.ReadFile(filepath.Join(m.Dir, "c"))
		return err == nil && string(b) == "file c"
	})
}

// TestOriginHeaderBadInput: a malformed or forbidden header is a usage error (exit
// 2) naming the flag and the header, never its value.
func TestOriginHeaderBadInput(t *testing.T) {
	dir := t.TempDir()
	for h, name := range map[string]string{"X-Token secretvalue": "header 1 has no colon", "Host: secretvalue": "Host", "If-Match: secretvalue": "If-Match", "X-A: secret\rvalue": "X-A"} {
		out, code := runCLI(t, "mount", "http://127.0.0.1:1/", dir, "--cache-dir", dir+"/c", "--origin-header", h)
		if code != 2 || !strings.Contains(out, "--origin-header") || !strings.Contains(out, name) || strings.Contains(out, "secretvalue") {
			t.Errorf("--origin-header %q: exit %d, output:\n%s\nwant exit 2 naming the flag and not the value", h, code, out)
		}
	}
	// The environment carries one header per line.
	cmd := exec.Command(binary, "mount", "http://127.0.0.1:1/", dir, "--cache-dir", dir+"/c")
	cmd.Env = append(os.Environ(), "CACHEGATE_ORIGIN_HEADER=X-A: 1\nConnection: secretvalue")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "Connection") || strings.Contains(string(out), "secretvalue") {
		t.Errorf("CACHEGATE_ORIGIN_HEADER with a bad second line: %v, output:\n%s\nwant exit 2 naming Connection", err, out)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestNetrcOrigin: a $NETRC entry for the origin's host is sent as Basic auth; a
// wrong password fails at start with the 401 said plainly; the password shows in
// neither the log nor status.
func TestNetrcOrigin(t *testing.T) {
	root, err := os.MkdirTemp(workDir, "origin-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(root, 0o755)
	os.WriteFile(filepath.Join(root, "a"), []byte("netrc file"), 0o644)
	hostPath := startAuthNginx(t, root)
	nrc := filepath.Join(t.TempDir(), "netrc")

	os.WriteFile(nrc, []byte("# the test origin\nmachine 127.0.0.1\n  login alice\n  password Pa55w0rd\n"), 0o600)
	t.Setenv("NETRC", nrc) // the mount inherits it
	m := startMount(t, "http://"+hostPath, "")
	if b, err := os.ReadFile(filepath.Join(m.Dir, "a")); err != nil || string(b) != "netrc file" {
		t.Fatalf("read through a netrc-authenticated origin: %q, %v\n%s", b, err, m.logs.String())
	}
	status, code := runCLI(t, "status", "--cache-dir", m.CacheDir)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, status)
	}
	if strings.Contains(status+m.logs.String(), "Pa55w0rd") {
		t.Errorf("the netrc password shows in status or the log:\n%s\n%s", status, m.logs.String())
	}
	m.stop(t)

	os.WriteFile(nrc, []byte("machine 127.0.0.1 login alice password WrongPa55\n"), 0o600)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "mnt"), 0o755)
	out, code := runCLITimeout(t, dir, "mount", "http://"+hostPath, filepath.Join(dir, "mnt"), "--cache-dir", filepath.Join(dir, "c"))
	t.Logf("wrong netrc password:\n%s", out)
	if code == 0 || !strings.Contains(out, "401") || !strings.Contains(out, "netrc") || strings.Contains(out, "WrongPa55") {
		t.Errorf("mount with a wrong netrc password: exit %d, output:\n%s\nwant a failure saying 401 without the password", code, out)
	}
}
