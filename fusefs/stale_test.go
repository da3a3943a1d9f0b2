package fusefs

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/origin"
)

// growingOrigin has one file, "f", that its first listing shows as 10 bytes; by the
// time it is opened (HEAD) it has 3 MiB, as an origin does whose file changed between
// the listing and the open.
type growingOrigin struct {
	lists atomic.Int64
	data  []byte
	mtime time.Time
}

func (g *growingOrigin) entry(size int64, version string) origin.Entry {
	return origin.Entry{Name: "f", Size: size, ModTime: g.mtime, Version: version, Exact: true}
}

func (g *growingOrigin) Stat(ctx context.Context, p string) (origin.Entry, error) {
	switch p {
	case "":
		return origin.Entry{IsDir: true, Exact: true}, nil
	case "f":
		return g.entry(int64(len(g.data)), "v2"), nil
	}
	return origin.Entry{}, fs.ErrNotExist
}

func (g *growingOrigin) List(ctx context.Context, p string) ([]origin.Entry, error) {
	if g.lists.Add(1) == 1 {
		return []origin.Entry{g.entry(10, "v1")}, nil
	}
	return []origin.Entry{g.entry(int64(len(g.data)), "v2")}, nil
}

func (g *growingOrigin) ReadRange(ctx context.Context, p, v string, off, n int64) (io.ReadCloser, error) {
	if v != "v2" {
		return nil, origin.ErrChanged
	}
	return io.NopCloser(bytes.NewReader(g.data[off : off+n])), nil
}

func (g *growingOrigin) String() string { return "growing://" }

// Issue 19, point 10: a size that changed between the listing (10 B) and the open
// (3 MiB) is a changed object: the reader gets the new version whole, never part of it
// under the listing's size.
func TestSizeChangedSinceLookupIsANewVersion(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	g := &growingOrigin{data: bytes.Repeat([]byte("0123456789abcdef"), 3<<16), mtime: time.Unix(1_700_000_000, 0)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := cache.Open(g, cache.Options{Dir: t.TempDir(), Limit: 64 << 20, ChunkSize: 64 << 10, TTL: time.Hour, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	srv, _, err := mount(mnt, c, Options{TTL: time.Hour, Logger: log})
	if err != nil {
		c.Close()
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		srv.Unmount()
		c.Close()
	})
	got, err := os.ReadFile(filepath.Join(mnt, "f"))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, g.data) {
		t.Fatalf("read %d bytes, want the whole new version (%d bytes)", len(got), len(g.data))
	}
}
