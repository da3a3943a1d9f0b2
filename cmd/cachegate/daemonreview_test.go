package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/origin"
	"github.com/cachegate/cachegate/internal/registry"
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

// TestDaemonConfigSameURLTwice: two origins of one URL are refused by --check (the
// daemon's start refused them after --check passed: the mux routes an origin once).
func TestDaemonConfigSameURLTwice(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("cache:\n  dir: "+dir+"/cache\norigins:\n  - name: a\n    url: "+dir+"\n  - name: b\n    url: file://"+dir+"\n"), 0o644)
	_, err := loadDaemonConfig(file)
	var ce *configError
	if !errors.As(err, &ce) || len(ce.problems) != 1 || !strings.HasPrefix(ce.problems[0], file+":7: origin b: url") {
		t.Fatalf("err = %v, want %s:7: origin b: url …", err, file)
	}
}

// TestDaemonReloadSwapsURLs: a reload that swaps the URLs of two origins, or renames
// one, runs what the config says: each route was set while the other still held
// its URL, refused, and the daemon went on believing the new config ran (so the next
// reload of the same file changed nothing).
func TestDaemonReloadSwapsURLs(t *testing.T) {
	dir := t.TempDir()
	x, y := filepath.Join(dir, "x"), filepath.Join(dir, "y")
	os.Mkdir(x, 0o755)
	os.Mkdir(y, 0o755)
	file := filepath.Join(dir, "c.yaml")
	write := func(origins ...string) {
		s := "cache:\n  dir: " + dir + "/cache\n  size: 64MiB\norigins:\n"
		for i := 0; i < len(origins); i += 2 {
			s += "  - name: " + origins[i] + "\n    url: " + origins[i+1] + "\n"
		}
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a", x, "b", y)
	cfg, err := loadDaemonConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{file: file, log: slog.New(slog.DiscardHandler), mux: origin.NewMux("cachegate-daemon"), mounts: map[string]*daemonMount{}, going: map[*daemonMount]bool{}, gone: make(chan *daemonMount, 16), later: make(chan func(), 16)}
	d.served.Store(&map[string]bool{})
	for _, o := range cfg.Origins {
		if err := d.route(o); err != nil {
			t.Fatal(err)
		}
	}
	c, err := cache.Open(d.mux, cache.Options{Dir: cfg.CacheDir, Limit: cfg.CacheSize, ChunkSize: cfg.ChunkSize})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d.c, d.cfg = c, cfg
	urlOf := func(name string) string {
		o, ok := d.mux.Get(name)
		if !ok {
			return ""
		}
		return o.String()
	}
	check := func(when string, want map[string]string) {
		t.Helper()
		for name, u := range want {
			if got := urlOf(name); got != u {
				t.Errorf("%s: origin %s routes to %q, want %q", when, name, got, u)
			}
		}
		if n := len(d.mux.Names()); n != len(want) {
			t.Errorf("%s: routes %v, want %d", when, d.mux.Names(), len(want))
		}
	}
	write("a", y, "b", x)
	d.reload()
	check("swapped", map[string]string{"a": "file://" + y, "b": "file://" + x})
	write("a", y, "c", x)
	d.reload()
	check("renamed", map[string]string{"a": "file://" + y, "c": "file://" + x})
}

// TestDaemonPathOnlyInDaemonCache: NAME:PATH is read as a daemon's origin path only
// for a daemon's cache: with --cache-dir naming a single-origin cache, a path with a
// colon is that origin's path, whatever daemon runs elsewhere (it became NAME/PATH
// as soon as any daemon ran).
func TestDaemonPathOnlyInDaemonCache(t *testing.T) {
	daemonDir, single := t.TempDir(), t.TempDir()
	live := []registry.Entry{{Command: "daemon", CacheDir: realPath(daemonDir)}, {Command: "mount", CacheDir: realPath(single), Mountpoint: "/mnt/x"}}
	for _, tc := range []struct {
		flagDir string
		live    []registry.Entry
		split   bool
	}{
		{"", live, true},
		{daemonDir, live, true},
		{daemonDir + "/", live, true},
		{single, live, false},
		{"", live[1:], false},
	} {
		name, rest, ok := daemonPath("logs:2024/a:b", tc.flagDir, tc.live)
		if ok != tc.split || ok && (name != "logs" || rest != "2024/a:b") {
			t.Errorf("--cache-dir %q, %d live: split %v (%q, %q), want %v", tc.flagDir, len(tc.live), ok, name, rest, tc.split)
		}
	}
}

// slowRoot is an origin whose root answers after a while, counting how many are
// asked at once.
type slowRoot struct {
	name      string
	now, peak *atomic.Int64
}

func (s slowRoot) Stat(ctx context.Context, p string) (origin.Entry, error) {
	n := s.now.Add(1)
	defer s.now.Add(-1)
	for {
		m := s.peak.Load()
		if n <= m || s.peak.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(5 * time.Millisecond)
	return origin.Entry{IsDir: true}, nil
}
func (s slowRoot) List(context.Context, string) ([]origin.Entry, error) { return nil, nil }
func (s slowRoot) ReadRange(context.Context, string, string, int64, int64) (io.ReadCloser, error) {
	return nil, errors.New("no")
}
func (s slowRoot) String() string { return s.name }

// TestDaemonCheckOriginsBounded: the start's check of every origin's root asks a
// bounded number at once (it asked all of a config's origins at once: thousands of
// connections from a big config, most to one host).
func TestDaemonCheckOriginsBounded(t *testing.T) {
	d := &daemon{log: slog.New(slog.DiscardHandler), mux: origin.NewMux("cachegate-daemon")}
	var now, peak atomic.Int64
	var origins []daemonOrigin
	for i := range 200 {
		name := "o" + strconv.Itoa(i)
		if err := d.mux.Set(name, slowRoot{"slow://" + name, &now, &peak}, 0); err != nil {
			t.Fatal(err)
		}
		origins = append(origins, daemonOrigin{Name: name})
	}
	d.checkOrigins(origins)
	if p := peak.Load(); p > maxOriginChecks {
		t.Errorf("%d origins asked at once, want at most %d", p, maxOriginChecks)
	}
}
