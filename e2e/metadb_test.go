package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lsLR is `ls -lR` of the mount with its mount point cut out and the "total" lines
// (block counts, which change as bytes are cached) dropped.
func lsLR(t *testing.T, m *mount) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ls", "-lR", "--time-style=+%s", m.Dir).CombinedOutput()
	if err != nil {
		t.Fatalf("ls -lR: %v\n%s", err, out)
	}
	var b strings.Builder
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "total ") {
			b.WriteString(strings.ReplaceAll(line, m.Dir, "MNT") + "\n")
		}
	}
	return b.String()
}

// requests counts every request in nginx's access log, waiting a moment for the
// lines nginx writes after it answers.
func (n *nginx) requests(t *testing.T) int {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	b, err := os.ReadFile(n.accessLog)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

// Listings and attributes survive a restart of the mount (index.db): within
// --metadata-ttl the restarted mount answers `ls -lR` without the origin, and with the
// origin down the whole tree browsed before stays browsable, uncached files included.
func TestMetadataSurvivesRestart(t *testing.T) {
	root, err := os.MkdirTemp(workDir, "origin-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(root, 0o755)
	const dirs, files = 10, 20
	for d := range dirs {
		dir := filepath.Join(root, fmt.Sprintf("d%02d", d))
		os.Mkdir(dir, 0o755)
		for f := range files {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", f)), bytes.Repeat([]byte{'a' + byte(d)}, d*100+f), 0o644)
		}
	}
	n := startNginx(t, root, "json")
	cacheDir, err := os.MkdirTemp(workDir, "cache-")
	if err != nil {
		t.Fatal(err)
	}
	ttl := []string{"--metadata-ttl", "10m"}

	m := startMount(t, n.URL, cacheDir, ttl...)
	before := lsLR(t, m)
	if got := strings.Count(before, " f0"); got != dirs*files {
		t.Fatalf("ls -lR shows %d files, want %d:\n%s", got, dirs*files, before)
	}
	cached := filepath.Join("d03", "f007")
	want, err := os.ReadFile(filepath.Join(m.Dir, cached))
	if err != nil {
		t.Fatal(err)
	}
	m.stop(t)

	// Restarted within the TTL: not one request to the origin for the listing (the
	// start checks that the origin's root is a directory, one request).
	sent := n.requests(t)
	m = startMount(t, n.URL, cacheDir, ttl...)
	if got := n.requests(t) - sent; got > 1 {
		t.Errorf("the start sent %d requests to the origin, want at most 1 (its root check)", got)
	}
	sent = n.requests(t)
	if after := lsLR(t, m); after != before {
		t.Errorf("ls -lR after a restart differs:\n%s\nbefore:\n%s", after, before)
	}
	if got := n.requests(t) - sent; got != 0 {
		t.Errorf("ls -lR after a restart within --metadata-ttl sent %d requests to the origin, want 0", got)
	}
	m.stop(t)

	// Restarted with the origin down: the whole tree is browsable.
	n.stop()
	m = startMount(t, n.URL, cacheDir, ttl...)
	if after := lsLR(t, m); after != before {
		t.Errorf("ls -lR with the origin down after a restart differs:\n%s\nbefore:\n%s", after, before)
	}
	if got, err := os.ReadFile(filepath.Join(m.Dir, cached)); err != nil || !bytes.Equal(got, want) {
		t.Errorf("cached file with the origin down: %v (%d bytes, want %d)", err, len(got), len(want))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "cat", filepath.Join(m.Dir, "d05", "f001")).CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "Input/output error") {
		t.Errorf("cat of an uncached file with the origin down: %v, %q; want EIO", err, out)
	}
}
