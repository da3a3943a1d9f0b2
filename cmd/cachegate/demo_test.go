package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
)

// TestDemoHintCommand: the demo's hints name a command the user can run as printed:
// "cachegate" only when that is the binary on PATH, the binary's own path when it is
// not on PATH (or PATH has another one), and `go -C CHECKOUT run ./cmd/cachegate`
// when the demo runs from `go run` (a binary in go-build's temporary directory, gone
// when the demo ends), runnable from any directory of another terminal.
func TestDemoHintCommand(t *testing.T) {
	same := func(a, b string) bool { return a == b }
	for _, tc := range []struct {
		name string
		env  hintEnv
		want string
	}{
		{"installed", hintEnv{exe: "/root/go/bin/cachegate", onPath: "/root/go/bin/cachegate"}, "cachegate"},
		{"not on PATH", hintEnv{exe: "/home/u/src/cachegate/cachegate"}, "/home/u/src/cachegate/cachegate"},
		{"another on PATH", hintEnv{exe: "/opt/new/cachegate", onPath: "/usr/bin/cachegate"}, "/opt/new/cachegate"},
		{"path with a space", hintEnv{exe: "/home/u/my tools/cachegate"}, "'/home/u/my tools/cachegate'"},
		{"go run", hintEnv{exe: "/tmp/go-build123456/b001/exe/cachegate", srcDir: "/home/u/src/cachegate/cmd/cachegate", modRoot: "/home/u/src/cachegate"}, "go -C /home/u/src/cachegate run ./cmd/cachegate"},
		{"go run, GOTMPDIR", hintEnv{exe: "/var/tmp/x/go-build99/b001/exe/cachegate", onPath: "/usr/bin/cachegate", srcDir: "/src/cg/cmd/cachegate", modRoot: "/src/cg"}, "go -C /src/cg run ./cmd/cachegate"},
		{"go run, -trimpath", hintEnv{exe: "/tmp/go-build1/b001/exe/cachegate"}, "go run github.com/cachegate/cachegate/cmd/cachegate@latest"},
	} {
		if got := hintCommand(tc.env, same); got != tc.want {
			t.Errorf("%s: hint command %q, want %q", tc.name, got, tc.want)
		}
	}
	// This test binary is itself one that go built in its temporary directory.
	if got := hintCommand(currentHintEnv(), sameFile); !strings.HasPrefix(got, "go ") {
		t.Errorf("hint command of a binary go built in go-build's directory: %q, want a go run form", got)
	}
}

// TestDemoOriginDates: the demo's origin lists directories with their real times, so
// the mount does not show them dated 1 January 1970.
func TestDemoOriginDates(t *testing.T) {
	dir := t.TempDir()
	if err := writeDemoFiles(dir); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(demoOrigin(dir))
	defer srv.Close()
	o, err := origin.New(srv.URL+"/", origin.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"", "names"} {
		entries, err := o.List(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) == 0 {
			t.Fatalf("listing of %q is empty", p)
		}
		for _, e := range entries {
			fi, err := os.Stat(filepath.Join(dir, p, e.Name))
			if err != nil {
				t.Fatalf("%s/%s: %v", p, e.Name, err)
			}
			if e.ModTime.Before(time.Now().Add(-time.Hour)) || !e.ModTime.Equal(fi.ModTime().Truncate(time.Second)) {
				t.Errorf("%s/%s (dir %v): modified %v through the origin, %v on disk", p, e.Name, e.IsDir, e.ModTime, fi.ModTime())
			}
			if !e.IsDir && e.Size != fi.Size() {
				t.Errorf("%s/%s: size %d, %d on disk", p, e.Name, e.Size, fi.Size())
			}
		}
	}
}
