package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/cachegate/cachegate/internal/registry"
)

// TestPickCacheDir: without --cache-dir a verb uses the cache of the mount holding its
// PATH, else that of the one instance running, else the default; with several running
// and no path to choose by, it names them and asks for --cache-dir.
func TestPickCacheDir(t *testing.T) {
	a := registry.Entry{Pid: 10, Command: "mount", CacheDir: "/ca", Mountpoint: "/mnt/a"}
	b := registry.Entry{Pid: 11, Command: "serve", CacheDir: "/cb", Listen: "127.0.0.1:8080"}
	for _, tc := range []struct {
		name    string
		live    []registry.Entry
		mounts  []string
		want    string
		wantErr []string
	}{
		{"none running", nil, nil, "/default", nil},
		{"one running", []registry.Entry{b}, nil, "/cb", nil},
		{"path in a mount", []registry.Entry{a, b}, []string{"/mnt/a"}, "/ca", nil},
		{"paths in one mount", []registry.Entry{a, b}, []string{"/mnt/a", "/mnt/a"}, "/ca", nil},
		{"several running", []registry.Entry{a, b}, nil, "", []string{"2 cachegate instances", "--cache-dir", "/ca (mounted at /mnt/a)", "/cb (serving 127.0.0.1:8080)"}},
		{"unregistered mount", []registry.Entry{b}, []string{"/mnt/old"}, "", []string{"/mnt/old", "--cache-dir"}},
		{"two mounts", []registry.Entry{a, b}, []string{"/mnt/a", "/mnt/b"}, "", []string{"/mnt/a", "/mnt/b"}},
	} {
		got, err := pickCacheDir(tc.live, tc.mounts, "/default")
		if tc.wantErr == nil {
			if err != nil || got != tc.want {
				t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
			}
			continue
		}
		var ue *usageError
		if err == nil || !errors.As(err, &ue) {
			t.Errorf("%s: %q, %v; want a usage error", tc.name, got, err)
			continue
		}
		for _, w := range tc.wantErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tc.name, err, w)
			}
		}
	}
}
