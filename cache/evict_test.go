package cache

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachegate/cachegate/internal/origin"
)

// TestEvictRefusesPinned: evicting a pinned file (or a directory holding one) is
// refused without force, leaving everything cached and the pin in place; with force
// it goes.
func TestEvictRefusesPinned(t *testing.T) {
	f := newFixture(t)
	os.MkdirAll(filepath.Join(f.originDir, "d"), 0o755)
	randomFile(t, f.originDir, "d/pinned", 100<<10, 1)
	randomFile(t, f.originDir, "d/plain", 100<<10, 2)
	c := f.open()
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Warm(ctx, []string{"d/pinned"}, 1, true, nil); err != nil {
		t.Fatal(err)
	}
	readWhole(t, c, "d/plain")
	for _, paths := range [][]string{{"d/pinned"}, {"d"}, {"d/plain", "d/pinned"}} {
		n, err := c.Evict(ctx, paths, false)
		if !errors.Is(err, ErrPinned) || !strings.Contains(err.Error(), "unpin it first, or --force") {
			t.Fatalf("evict %v of a pinned file: %d, %v; want ErrPinned", paths, n, err)
		}
		if got := len(c.Objects("d")); got != 2 || n != 0 {
			t.Fatalf("evict %v refused but %d objects went, %d left", paths, n, got)
		}
	}
	if info, err := c.Object(ctx, "d/pinned"); err != nil || !info.Pinned {
		t.Fatalf("pin lost after a refused evict: %+v, %v", info, err)
	}
	if n, err := c.Evict(ctx, []string{"d"}, true); err != nil || n != 2 {
		t.Fatalf("evict --force: %d, %v; want 2 objects", n, err)
	}
}

// TestEvictUnpinMissing: evicting or unpinning a path with nothing cached is an
// error saying whether the origin has it.
func TestEvictUnpinMissing(t *testing.T) {
	f := newFixture(t)
	randomFile(t, f.originDir, "there", 10<<10, 1)
	randomFile(t, f.originDir, "cached", 10<<10, 2)
	c := f.open()
	defer c.Close()
	ctx := context.Background()
	readWhole(t, c, "cached")
	type verb func([]string) (int, error)
	verbs := map[string]verb{
		"evict": func(p []string) (int, error) { return c.Evict(ctx, p, false) },
		"unpin": func(p []string) (int, error) { return c.Unpin(ctx, p) },
	}
	for name, v := range verbs {
		if _, err := v([]string{"nope"}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "not in the origin") {
			t.Errorf("%s of a path not in the origin: %v", name, err)
		}
		if _, err := v([]string{"there"}); !errors.Is(err, ErrNotCached) {
			t.Errorf("%s of a path not cached: %v", name, err)
		}
		// One bad path refuses the whole request: nothing is done.
		if _, err := v([]string{"cached", "nope"}); err == nil {
			t.Errorf("%s of a cached and a missing path: no error", name)
		}
		if len(c.Objects("cached")) != 1 {
			t.Fatalf("%s of a cached and a missing path evicted the cached one", name)
		}
	}
	if n, err := c.Unpin(ctx, []string{"cached"}); err != nil || n != 0 {
		t.Errorf("unpin of a cached, unpinned file: %d, %v; want 0, nil", n, err)
	}
}

// TestGCToZeroEmpties: gc down to 0 evicts every object that is neither pinned nor
// open, 0-byte ones included.
func TestGCToZeroEmpties(t *testing.T) {
	f := newFixture(t)
	randomFile(t, f.originDir, "a", 200<<10, 1)
	randomFile(t, f.originDir, "b", 200<<10, 2)
	randomFile(t, f.originDir, "p", 100<<10, 3)
	os.WriteFile(filepath.Join(f.originDir, "empty"), nil, 0o644)
	c := f.open()
	defer c.Close()
	ctx := context.Background()
	for _, p := range []string{"a", "b", "empty"} {
		readWhole(t, c, p)
	}
	if _, err := c.Warm(ctx, []string{"p"}, 1, true, nil); err != nil {
		t.Fatal(err)
	}
	freed, n := c.GC(0)
	left := c.Objects("")
	if len(left) != 1 || left[0].Path != "p" || !left[0].Pinned {
		t.Fatalf("gc 0 freed %d bytes in %d objects and left %+v; want only the pinned p", freed, n, left)
	}
	if freed < 400<<10 {
		t.Errorf("gc 0 freed %d bytes, want at least %d", freed, 400<<10)
	}
}

// TestAllObjects: objects another origin left in the cache dir are listed by
// AllObjects and counted per origin, not by Objects.
func TestAllObjects(t *testing.T) {
	f := newFixture(t)
	randomFile(t, f.originDir, "mine", 10<<10, 1)
	other := t.TempDir()
	randomFile(t, other, "theirs", 10<<10, 2)
	lo, err := origin.NewLocal(other)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := Open(lo, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	readWhole(t, oc, "theirs")
	oc.Close()
	c := f.open()
	defer c.Close()
	readWhole(t, c, "mine")
	if got := c.Objects(""); len(got) != 1 || got[0].Path != "mine" {
		t.Fatalf("Objects: %+v", got)
	}
	all := c.AllObjects("")
	if len(all) != 2 {
		t.Fatalf("AllObjects: %+v, want 2", all)
	}
	counts := c.ObjectsByOrigin()
	if len(counts) != 2 || counts[lo.String()] != 1 || counts[f.origin.String()] != 1 {
		t.Fatalf("ObjectsByOrigin: %v", counts)
	}
}
