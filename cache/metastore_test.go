package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
	bolt "go.etcd.io/bbolt"
)

// metaCountingOrigin counts the metadata requests that reach the origin.
type metaCountingOrigin struct {
	origin.Origin
	stats, lists atomic.Int64
}

func (o *metaCountingOrigin) Stat(ctx context.Context, p string) (origin.Entry, error) {
	o.stats.Add(1)
	return o.Origin.Stat(ctx, p)
}

func (o *metaCountingOrigin) List(ctx context.Context, p string) ([]origin.Entry, error) {
	o.lists.Add(1)
	return o.Origin.List(ctx, p)
}

func (o *metaCountingOrigin) calls() int64 { return o.stats.Load() + o.lists.Load() }

// metaFixture is a tree of two directories behind a counting origin that can be
// taken down.
func metaFixture(t *testing.T) (*fixture, *downOrigin, *metaCountingOrigin) {
	f := newFixture(t)
	randomFile(t, f.originDir, "d/a.bin", 1000, 1)
	randomFile(t, f.originDir, "d/b.bin", 2000, 2)
	randomFile(t, f.originDir, "d/sub/c.bin", 3000, 3)
	mc := &metaCountingOrigin{Origin: f.origin}
	return f, &downOrigin{Origin: mc}, mc
}

func mustOpen(t *testing.T, o origin.Origin, opts Options) *Cache {
	t.Helper()
	c, err := Open(o, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func browse(t *testing.T, c *Cache) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	got := map[string]int64{}
	for _, dir := range []string{"", "d", "d/sub"} {
		l, err := c.List(ctx, dir)
		if err != nil {
			t.Fatalf("list /%s: %v", dir, err)
		}
		for _, e := range l.Entries {
			got[origin.Join(dir, e.Name)] = e.Size
		}
	}
	e, err := c.Stat(ctx, "d/a.bin")
	if err != nil || e.Size != 1000 {
		t.Fatalf("stat d/a.bin: %+v, %v", e, err)
	}
	return got
}

// Listings and attributes fetched before a restart are answered after it without
// the origin, until the TTL since they were fetched.
func TestMetaPersistsAcrossReopen(t *testing.T) {
	f, d, mc := metaFixture(t)
	c := mustOpen(t, d, f.opts)
	before := browse(t, c)
	c.Close()
	n := mc.calls()
	if n == 0 {
		t.Fatal("the first browse asked the origin nothing")
	}
	c = mustOpen(t, d, f.opts)
	defer c.Close()
	after := browse(t, c)
	if mc.calls() != n {
		t.Errorf("after a restart within the TTL the origin was asked %d more times, want 0", mc.calls()-n)
	}
	if len(after) != len(before) || len(after) != 5 {
		t.Errorf("browse after restart %v, before %v", after, before)
	}
}

// A persisted listing keeps the TTL left since its fetch, not a fresh one.
func TestMetaPersistedKeepsRemainingTTL(t *testing.T) {
	f, d, mc := metaFixture(t)
	f.opts.TTL = time.Second
	c := mustOpen(t, d, f.opts)
	if _, err := c.List(context.Background(), "d"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	n := mc.lists.Load()
	time.Sleep(500 * time.Millisecond)
	c = mustOpen(t, d, f.opts)
	defer c.Close()
	if _, err := c.List(context.Background(), "d"); err != nil {
		t.Fatal(err)
	}
	if mc.lists.Load() != n {
		t.Fatal("a listing persisted within its TTL was fetched again after a restart")
	}
	time.Sleep(700 * time.Millisecond) // 1.2 s since the fetch, 0.7 s since the restart
	if _, err := c.List(context.Background(), "d"); err != nil {
		t.Fatal(err)
	}
	if mc.lists.Load() != n+1 {
		t.Fatalf("a listing past its TTL since its fetch was not asked again (%d origin lists, want %d)", mc.lists.Load(), n+1)
	}
}

// With the origin down after a restart, the whole previously browsed tree is
// served from the store, files without cached bytes included.
func TestMetaPersistedServedOffline(t *testing.T) {
	f, d, _ := metaFixture(t)
	f.opts.TTL = 50 * time.Millisecond
	c := mustOpen(t, d, f.opts)
	before := browse(t, c)
	c.Close()
	time.Sleep(100 * time.Millisecond) // past the TTL
	d.down.Store(true)
	c = mustOpen(t, d, f.opts)
	defer c.Close()
	after := browse(t, c)
	if len(after) != 5 {
		t.Fatalf("offline browse after restart: %v, want %v", after, before)
	}
	for p, s := range before {
		if after[p] != s {
			t.Errorf("%s: size %d offline, %d before", p, after[p], s)
		}
	}
	if _, err := c.Open(context.Background(), "d/b.bin"); err == nil {
		t.Error("a file with no cached bytes opened with the origin down")
	}
}

// Invalidate and evict remove the persisted entries too: a restart does not
// resurrect them.
func TestMetaInvalidateRemovesStored(t *testing.T) {
	f, d, mc := metaFixture(t)
	c := mustOpen(t, d, f.opts)
	browse(t, c)
	readWhole(t, c, "d/sub/c.bin")
	c.Invalidate("d/a.bin") // d/a.bin's attributes and d's listing
	if _, err := c.Evict(context.Background(), []string{"d/sub/c.bin"}, false); err != nil {
		t.Fatal(err)
	}
	c.Close()
	lists, stats := mc.lists.Load(), mc.stats.Load()
	c = mustOpen(t, d, f.opts)
	defer c.Close()
	ctx := context.Background()
	if _, err := c.List(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if mc.lists.Load() != lists+1 {
		t.Error("an invalidated listing was answered from the store after a restart")
	}
	if _, err := c.Stat(ctx, "d/a.bin"); err != nil {
		t.Fatal(err)
	}
	if mc.stats.Load() != stats+1 {
		t.Error("invalidated attributes were answered from the store after a restart")
	}
	if _, err := c.List(ctx, "d/sub"); err != nil {
		t.Fatal(err)
	}
	if mc.lists.Load() != lists+2 {
		t.Error("the listing of an evicted file's directory was answered from the store after a restart")
	}
	if _, err := c.List(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if mc.lists.Load() != lists+2 {
		t.Error("an untouched listing was not kept across the restart")
	}
}

// Clear empties the store.
func TestMetaClearEmptiesStore(t *testing.T) {
	f, d, mc := metaFixture(t)
	c := mustOpen(t, d, f.opts)
	browse(t, c)
	c.Clear()
	c.Close()
	n := mc.lists.Load()
	c = mustOpen(t, d, f.opts)
	defer c.Close()
	if _, err := c.List(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if mc.lists.Load() != n+1 {
		t.Error("a listing survived a clear and a restart")
	}
}

// lockedBuffer is a log destination safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A corrupt or truncated index.db does not stop a start: it is logged, moved aside,
// and the cache starts with an empty store that works.
func TestMetaCorruptIndexStarts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, p string)
	}{
		{"garbage", func(t *testing.T, p string) {
			os.WriteFile(p, bytes.Repeat([]byte("not a bolt file "), 4096), 0o600)
		}},
		{"truncated", func(t *testing.T, p string) {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, st.Size()/3); err != nil {
				t.Fatal(err)
			}
		}},
		{"zeroed meta", func(t *testing.T, p string) {
			fh, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			fh.WriteAt(make([]byte, 8192), 0)
			fh.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, d, mc := metaFixture(t)
			c := mustOpen(t, d, f.opts)
			browse(t, c)
			c.Close()
			p := filepath.Join(f.cacheDir, "index.db")
			tc.spoil(t, p)
			var logs lockedBuffer
			f.opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			c, err := Open(d, f.opts)
			if err != nil {
				t.Fatalf("start with a spoilt index.db: %v", err)
			}
			n := mc.calls()
			browse(t, c)
			if mc.calls() == n {
				t.Error("a spoilt store answered")
			}
			c.Close()
			if !strings.Contains(logs.String(), "index.db") {
				t.Errorf("nothing logged about the spoilt index.db: %q", logs.String())
			}
			if _, err := os.Stat(p + ".corrupt"); err != nil {
				t.Errorf("spoilt index.db not moved aside: %v", err)
			}
			// The fresh store works.
			f.opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			c = mustOpen(t, d, f.opts)
			defer c.Close()
			n = mc.calls()
			browse(t, c)
			if mc.calls() != n {
				t.Error("the store made after a spoilt one does not persist")
			}
		})
	}
}

// A record, hostile or damaged, decodes to an error or to entries that encode back
// to the same bytes; never a panic or an allocation beyond its own size.
func FuzzMetaRecord(f *testing.F) {
	mtime := time.Unix(1_780_000_000, 123)
	f.Add(encodeMetaRecord(mtime, nil))
	f.Add(encodeMetaRecord(mtime, []origin.Entry{{Name: "a.bin", Size: 1000, ModTime: mtime, Version: `"abc"`, Exact: true}}))
	f.Add(encodeMetaRecord(mtime, []origin.Entry{{Name: "d", IsDir: true}, {Name: "l", Symlink: "../x", HasOwner: true, Uid: 1, Gid: 2, Perm: 0o644}}))
	f.Add([]byte{metaFormat, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, rec []byte) {
		fetched, entries, err := decodeMetaRecord(rec)
		if err != nil {
			return
		}
		if len(entries)*minEntryBytes > len(rec) {
			t.Fatalf("%d entries from %d bytes", len(entries), len(rec))
		}
		if again := encodeMetaRecord(fetched, entries); !bytes.Equal(again, rec) {
			// Varints have one canonical form each; anything else is not ours.
			_, entries2, err := decodeMetaRecord(again)
			if err != nil || len(entries2) != len(entries) {
				t.Fatalf("re-encoded record does not decode alike: %v", err)
			}
		}
	})
}

// The store keeps at most its cap, dropping what was fetched longest ago.
func TestMetaStoreCap(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := openMetaStore(dir, "o", 4096, log)
	base := time.Now()
	for i := range 200 {
		s.put(kindStat, fmt.Sprintf("f%03d", i), base.Add(time.Duration(i)*time.Millisecond), []origin.Entry{{Name: fmt.Sprintf("f%03d", i), Size: int64(i)}})
	}
	s.close()
	s = openMetaStore(dir, "o", 4096, log)
	defer s.close()
	if _, _, ok := s.get(kindStat, "f000"); ok {
		t.Error("the oldest record survived past the cap")
	}
	if _, e, ok := s.get(kindStat, "f199"); !ok || e[0].Size != 199 {
		t.Error("the newest record was dropped")
	}
	var n int64
	s.db.View(func(tx *bolt.Tx) error {
		n = int64(binary.BigEndian.Uint64(tx.Bucket([]byte("o")).Get(keyBytes)))
		return nil
	})
	if n > 4096 || n <= 0 {
		t.Errorf("store holds %d bytes, cap 4096", n)
	}
}

// HasMetadata tells a start with the origin down that a tree was listed before
// (cmd starts then, without any cached bytes).
func TestMetaHasMetadata(t *testing.T) {
	f, d, _ := metaFixture(t)
	c := mustOpen(t, d, f.opts)
	if c.HasMetadata() {
		t.Error("a new cache claims stored metadata")
	}
	browse(t, c)
	c.Close()
	c = mustOpen(t, d, f.opts)
	defer c.Close()
	if !c.HasMetadata() {
		t.Error("the root's stored listing is not seen after a restart")
	}
}

// The records waiting for the writer are bounded in bytes, not only in number: a
// record past the bound is dropped (and counted), and the bound frees as the writer
// commits.
func TestMetaStoreQueueBoundedByBytes(t *testing.T) {
	s := openMetaStore(t.TempDir(), "o", 1<<20, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer s.close()
	e := []origin.Entry{{Name: "f", Size: 1, Exact: true}}
	s.queued.Add(metaStoreQueueBytes - 4) // as if big listings were waiting
	s.put(kindStat, "a", time.Now(), e)
	if s.dropped.Load() != 1 {
		t.Fatalf("a record past the queue's bytes was not dropped (dropped %d)", s.dropped.Load())
	}
	s.queued.Add(-(metaStoreQueueBytes - 4))
	s.put(kindStat, "b", time.Now(), e)
	waitFor(t, "the writer never committed b, or its bytes stayed counted as queued", func() bool {
		_, _, ok := s.get(kindStat, "b")
		return ok && s.queued.Load() == 0
	})
	if s.dropped.Load() != 1 {
		t.Errorf("dropped %d records, want 1", s.dropped.Load())
	}
}

// InvalidateTree forgets a directory and everything below it, in memory at once and
// in the store after a restart, and nothing beside it: a daemon's route that now
// leads to another origin must not answer from the old one's tree.
func TestMetaInvalidateTree(t *testing.T) {
	f, d, mc := metaFixture(t)
	randomFile(t, f.originDir, "dx/e.bin", 10, 4) // a sibling whose name starts as d's
	c := mustOpen(t, d, f.opts)
	browse(t, c)
	ctx := context.Background()
	if _, err := c.List(ctx, "dx"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"d/a.bin", "d/sub/c.bin", "dx/e.bin"} {
		if _, err := c.Stat(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	c.InvalidateTree("d")
	lists, stats := mc.lists.Load(), mc.stats.Load()
	// In memory: the tree is asked again at once.
	if _, err := c.List(ctx, "d/sub"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, "d/a.bin"); err != nil {
		t.Fatal(err)
	}
	if mc.lists.Load() != lists+1 || mc.stats.Load() != stats+1 {
		t.Fatalf("after InvalidateTree: %d listings and %d stats asked, want 1 and 1", mc.lists.Load()-lists, mc.stats.Load()-stats)
	}
	c.InvalidateTree("d")
	c.Close()
	// In the store: after a restart too, and the sibling stays (the parent's
	// listing, which names the tree, goes with it).
	lists, stats = mc.lists.Load(), mc.stats.Load()
	c = mustOpen(t, d, f.opts)
	defer c.Close()
	if _, err := c.List(ctx, "dx"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, "dx/e.bin"); err != nil {
		t.Fatal(err)
	}
	if mc.lists.Load() != lists || mc.stats.Load() != stats {
		t.Fatalf("records beside the forgotten tree were lost: %d listings and %d stats asked again", mc.lists.Load()-lists, mc.stats.Load()-stats)
	}
	for _, p := range []string{"d", "d/sub"} {
		if _, err := c.List(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"d/a.bin", "d/sub/c.bin"} {
		if _, err := c.Stat(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if mc.lists.Load() != lists+2 || mc.stats.Load() != stats+2 {
		t.Errorf("the forgotten tree was answered from the store after a restart: %d listings and %d stats asked, want 2 and 2",
			mc.lists.Load()-lists, mc.stats.Load()-stats)
	}
}
