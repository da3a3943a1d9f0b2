package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Walk (cache ls, cache warm) never follows symlinks, so links that loop make no
// endless walk, and it refuses a tree deeper than maxWalkDepth instead of walking it.
func TestWalkFollowsNoLinksAndIsBounded(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 10; i++ {
		randomFile(t, f.originDir, fmt.Sprintf("f%02d", i), 10, uint64(i))
		randomFile(t, f.originDir, fmt.Sprintf("sub/g%02d", i), 10, uint64(i))
	}
	for l, target := range map[string]string{"loopA": ".", "loopB": ".", "sub/up": "..", "lf": "f00"} {
		if err := os.Symlink(target, filepath.Join(f.originDir, l)); err != nil {
			t.Fatal(err)
		}
	}
	c := f.open()
	defer c.Close()
	_, paths, err := c.Walk(t.Context(), "")
	if err != nil || len(paths) != 20 {
		t.Fatalf("walk of 20 files with looping links: %d paths, %v", len(paths), err)
	}
	for _, p := range paths {
		if strings.Contains(p, "loop") || strings.Contains(p, "up") || p == "lf" {
			t.Errorf("walk went through a link: %s", p)
		}
	}

	deep := "deep"
	for i := 0; i < maxWalkDepth+5; i++ {
		deep += "/d"
	}
	randomFile(t, f.originDir, deep+"/f", 10, 1)
	if _, _, err := c.Walk(t.Context(), "deep"); err == nil || !strings.Contains(err.Error(), "directories deep") {
		t.Errorf("walk of a tree %d levels deep: %v, want an error saying it is too deep", maxWalkDepth+5, err)
	}
}
