package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `--listen 18985` was refused with "missing port in address".
func TestListenAddr(t *testing.T) {
	for _, c := range []struct {
		in, addr string
		exposed  bool
	}{
		{"18985", "127.0.0.1:18985", false},
		{"0", "127.0.0.1:0", false},
		{":18985", ":18985", true},
		{"127.0.0.1:8080", "127.0.0.1:8080", false},
		{"localhost:8080", "localhost:8080", false},
		{"[::1]:8080", "[::1]:8080", false},
		{"0.0.0.0:8080", "0.0.0.0:8080", true},
		{"[::]:8080", "[::]:8080", true},
		{"192.0.2.7:8080", "192.0.2.7:8080", true},
		{"files.example:8080", "files.example:8080", true},
	} {
		addr, exposed, err := listenAddr(c.in)
		if err != nil || addr != c.addr || exposed != c.exposed {
			t.Errorf("listenAddr(%q) = %q, %v, %v; want %q, %v", c.in, addr, exposed, err, c.addr, c.exposed)
		}
	}
	for _, bad := range []string{"", "99999", "host", "127.0.0.1", ":http", "1.2.3.4:-1"} {
		var ue *usageError
		if _, _, err := listenAddr(bad); !errors.As(err, &ue) || !strings.Contains(err.Error(), "use PORT") {
			t.Errorf("listenAddr(%q): %v, want a usage error saying what to use", bad, err)
		}
	}
}

// A relative origin directory was refused; it is resolved against the working
// directory. A missing one or a file is said plainly.
func TestOriginSpec(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "f.txt"), nil, 0o644)
	t.Chdir(dir)
	for in, want := range map[string]string{
		"./data":                  filepath.Join(dir, "data"),
		"data":                    filepath.Join(dir, "data"),
		dir:                       dir,
		"file://" + dir:           "file://" + dir,
		"http://example.com/x/":   "http://example.com/x/",
		"s3://bucket/prefix":      "s3://bucket/prefix",
		"gopher://example.com/x/": "gopher://example.com/x/", // origin.New refuses it
	} {
		if got, err := originSpec(in); err != nil || got != want {
			t.Errorf("originSpec(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"nope":                     "origin directory " + filepath.Join(dir, "nope") + " does not exist",
		"example.com/data":         "needs its scheme",
		"f.txt":                    "is a file, not a directory",
		"file://" + dir + "/f.txt": "is a file, not a directory",
	} {
		var ue *usageError
		if _, err := originSpec(in); !errors.As(err, &ue) || !strings.Contains(err.Error(), want) {
			t.Errorf("originSpec(%q): %v, want a usage error with %q", in, err, want)
		}
	}
}
