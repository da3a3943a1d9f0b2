package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/cachegate/cachegate/fusefs"
	"github.com/cachegate/cachegate/internal/control"
	"github.com/cachegate/cachegate/internal/origin"
)

type demoCmd struct {
	Dir string `env:"CACHEGATE_DEMO_DIR" help:"Where to put the sample files, cache and mount point (default: a new temporary directory, removed on exit)." placeholder:"DIR"`
}

// demoFiles are the sample origin's contents: a few texts, awkward names, and one
// large file that shows the cache filling and then reading at local speed.
var demoFiles = map[string]int64{
	"README.txt":                    -1,
	"docs/zero-copy.txt":            -1,
	"data/small.bin":                64 << 10,
	"data/large.bin":                256 << 20,
	"names/with space.txt":          4 << 10,
	"names/plus+percent%hash#.txt":  4 << 10,
	"names/ünïcødé ✓.txt":           4 << 10,
	"names/[brackets] (parens).txt": 4 << 10,
}

const demoReadme = `This directory is served by a small web server started by "cachegate demo",
and mounted through cachegate's disk cache. The first read of a file fetches it from
the web server in chunks; later reads come from the local cache, at local-disk speed
once the file is complete (FUSE passthrough).
`

const demoZeroCopy = `Moving a file from disk to a socket:
  read+write:  4 context switches, 4 copies (2 by the CPU)
  mmap+write:  4 context switches, 3 copies (1 by the CPU)
  sendfile:    2 context switches, 2 copies (none by the CPU with scatter-gather DMA)
`

func (d *demoCmd) Run(g *globals) error {
	sig := notifyStop() // before mounting: see mountCmd.Run
	defer signal.Stop(sig)
	log := slog.Default()
	base := d.Dir
	if base == "" {
		var err error
		if base, err = os.MkdirTemp("", "cachegate-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(base)
	}
	originDir := filepath.Join(base, "origin")
	mnt := filepath.Join(base, "mnt")
	cacheDir := filepath.Join(base, "cache")
	if err := writeDemoFiles(originDir); err != nil {
		return fmt.Errorf("write sample files: %v", err)
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("start sample origin: %v", err)
	}
	srv := &http.Server{Handler: demoOrigin(originDir), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	originURL := "http://" + ln.Addr().String() + "/"

	flags := cacheFlags{CacheDir: cacheDir, CacheSize: 1 << 30, MinFree: FreeSpace{Pct: 1}, ChunkSize: 1 << 20, Readahead: 64 << 20, MetadataTTL: 10 * time.Second, OriginTimeout: 10 * time.Second}
	c, err := flags.open(originURL, log)
	if err != nil {
		return err
	}
	defer c.Close()
	defer registerInstance("demo", c, mnt, "", log)()
	server, err := fusefs.Mount(mnt, c, fusefs.Options{TTL: flags.MetadataTTL, Logger: log})
	if err != nil {
		return fmt.Errorf("mount %s: %v (FUSE needs /dev/fuse and root or fusermount3)", mnt, err)
	}
	ctl, err := control.Listen(c, nil, log)
	if err != nil {
		server.Unmount()
		return err
	}
	defer ctl.Close()
	q := shellQuote
	fmt.Printf(`
cachegate demo: a web server at %s is mounted at
  %s
with its cache in %s.

Try, in another terminal:
  ls -lR %s
  cat %s/README.txt
  time sha256sum %s/data/large.bin    # cold: fetched from the origin
  time sha256sum %s/data/large.bin    # warm: read from the cache
  ls -ls %s/objects/*/                # the sparse cache files and their sidecars
  %s cache ls --cache-dir %s    # what is cached, from the running demo

Press Ctrl-C to unmount and clean up.
`, originURL, mnt, cacheDir, q(mnt), q(mnt), q(mnt), q(mnt), q(cacheDir), hintCommand(currentHintEnv(), sameFile), q(cacheDir))
	return serveUntilSignal(server, mnt, log, sig)
}

func writeDemoFiles(dir string) error {
	rng := rand.NewChaCha8([32]byte{'c', 'a', 'c', 'h', 'e', 'g', 'a', 't', 'e'})
	for name, size := range demoFiles {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		var data []byte
		switch name {
		case "README.txt":
			data = []byte(demoReadme)
		case "docs/zero-copy.txt":
			data = []byte(demoZeroCopy)
		default:
			data = make([]byte, size)
			rng.Read(data)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// demoOrigin serves dir as nginx does with `autoindex_format json`: files through
// http.FileServer (Last-Modified, ranges), and directory listings, to a client that
// accepts JSON (cachegate does), as JSON entries with their time and size. Go's HTML
// listing has neither, so the mount dated every directory 1 January 1970.
func demoOrigin(dir string) http.Handler {
	files := http.FileServer(http.Dir(dir))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/") || !strings.Contains(r.Header.Get("Accept"), "application/json") {
			files.ServeHTTP(w, r)
			return
		}
		f, err := http.Dir(dir).Open(r.URL.Path) // http.Dir keeps the path inside dir
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		fis, err := f.Readdir(-1) // the demo's own few files
		if err != nil {
			http.NotFound(w, r)
			return
		}
		list := make([]origin.ListingEntry, 0, len(fis))
		for _, fi := range fis {
			size := fi.Size()
			e := origin.ListingEntry{Name: fi.Name(), Type: "file", MTime: fi.ModTime().UTC().Format(http.TimeFormat), Size: &size}
			if fi.IsDir() {
				e.Type, e.Size = "directory", nil
			}
			list = append(list, e)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(list)
	})
}
