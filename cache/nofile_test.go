package cache

import (
	"fmt"
	"os"
	"testing"
)

// TestIdleFilesBoundedByDescriptorLimit: objects keep their files open after their
// last handle closes (so a hot small file costs no open), but never more than half
// of the process's descriptor limit: reading many more files than that leaves
// the descriptor count within the bound.
func TestIdleFilesBoundedByDescriptorLimit(t *testing.T) {
	const limit = 1024 // pretended RLIMIT_NOFILE
	old := noFileLimit
	noFileLimit = func() uint64 { return limit }
	t.Cleanup(func() { noFileLimit = old })
	f := newFixture(t)
	const files = 600 // 1,200 descriptors if all stayed open
	for i := 0; i < files; i++ {
		randomFile(t, f.originDir, fmt.Sprintf("d/f%03d", i), 100, uint64(i))
	}
	before := openFDs(t)
	c := f.open()
	defer c.Close()
	for i := 0; i < files; i++ {
		readWhole(t, c, fmt.Sprintf("d/f%03d", i))
	}
	c.idle.Wait()
	// The lock file and the origin's directory are open too: a few to spare.
	if got, bound := openFDs(t)-before, limit/2+8; got > bound {
		t.Fatalf("%d descriptors open after reading %d files with RLIMIT_NOFILE %d; want at most %d", got, files, limit, bound)
	}
	// Idle objects do keep their files: reading them again opens nothing. (The
	// idle set may still close a few it evicts meanwhile: ristretto applies its
	// sets and evictions in the background, so fewer is no failure.)
	readWhole(t, c, "d/f599")
	c.idle.Wait()
	n := openFDs(t)
	readWhole(t, c, "d/f599")
	if got := openFDs(t); got > n {
		t.Fatalf("reading a file read just before opened descriptors: %d open before, %d after", n, got)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
