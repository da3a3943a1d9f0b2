package main

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/cachegate/cachegate/fusefs"
	"github.com/cachegate/cachegate/internal/control"
)

type demoCmd struct {
	Dir string `help:"Where to put the sample files, cache and mount point (default: a new temporary directory, removed on exit)." placeholder:"DIR"`
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
	srv := &http.Server{Handler: http.FileServer(http.Dir(originDir)), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	originURL := "http://" + ln.Addr().String() + "/"

	flags := cacheFlags{CacheDir: cacheDir, CacheSize: 1 << 30, MinFree: FreeSpace{Pct: 1}, ChunkSize: 1 << 20, Readahead: 64 << 20, MetadataTTL: 10 * time.Second, OriginTimeout: 10 * time.Second}
	c, err := flags.open(originURL, log)
	if err != nil {
		return err
	}
	defer c.Close()
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
  cachegate cache ls --cache-dir %s    # what is cached, from the running demo

Press Ctrl-C to unmount and clean up.
`, originURL, mnt, cacheDir, mnt, mnt, mnt, mnt, cacheDir, cacheDir)
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
