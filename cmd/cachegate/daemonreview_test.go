package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDaemonConfigRouteNameNotServerPath: an origin named "-" would be served under
// /-/, the server's own paths (/-/status, /-/metrics), and a name starting with '-'
// is read as a flag by the cache verbs' NAME:PATH.
func TestDaemonConfigRouteNameNotServerPath(t *testing.T) {
	for _, name := range []string{"-", "-x", "--help"} {
		cfg := "origins:\n  - name: \"" + name + "\"\n    url: http://a/\n"
		_, err := parseDaemonConfig("c.yaml", []byte(cfg))
		var ce *configError
		if !errors.As(err, &ce) || len(ce.problems) != 1 || !strings.HasPrefix(ce.problems[0], "c.yaml:2: origin name") {
			t.Errorf("name %q: err = %v, want c.yaml:2: origin name …", name, err)
		}
	}
}

// TestDaemonConfigMountsApart: a mount point inside another origin's, or holding or
// inside the cache dir, or the same directory as another through a symlink, is
// refused with its line: stacked mounts hide one another, and a mount over the cache
// dir would make the cache read its own files through itself.
func TestDaemonConfigMountsApart(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"cache", "m", "m/sub", "cache/in", "real"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	head := "cache:\n  dir: " + dir + "/cache\norigins:\n  - name: a\n    url: http://a/\n    mount: %s\n  - name: b\n    url: http://b/\n    mount: %s\n"
	for _, tc := range []struct{ a, b, want string }{
		{"m", "m/sub", "c.yaml:9: origin b: mount"},
		{"m/sub", "m", "c.yaml:9: origin b: mount"},
		{"real", "link", "c.yaml:9: origin b: mount"},
		{"m", "cache/in", "c.yaml:9: origin b: mount"},
		{"m", "", "c.yaml:9: origin b: mount"}, // the dir holding the cache dir
	} {
		a, b := filepath.Join(dir, tc.a), filepath.Join(dir, tc.b)
		file := filepath.Join(dir, "c.yaml")
		os.WriteFile(file, []byte(strings.Replace(strings.Replace(head, "%s", a, 1), "%s", b, 1)), 0o644)
		_, err := loadDaemonConfig(file)
		var ce *configError
		if !errors.As(err, &ce) || len(ce.problems) != 1 || !strings.HasPrefix(ce.problems[0], strings.Replace(tc.want, "c.yaml", file, 1)) {
			t.Errorf("mounts %s and %s: err = %v, want %s", tc.a, tc.b, err, tc.want)
		}
	}
	// Apart, they pass.
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte(strings.Replace(strings.Replace(head, "%s", filepath.Join(dir, "m"), 1), "%s", filepath.Join(dir, "real"), 1)), 0o644)
	if _, err := loadDaemonConfig(file); err != nil {
		t.Errorf("mounts apart: %v", err)
	}
}
