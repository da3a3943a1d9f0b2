package cache

import (
	"fmt"
	"maps"
	"os"
	"strings"
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
}

// Idle objects keep their files: reading them again opens nothing. (Below the idle
// set's bound: at it, ristretto's admission may turn an object away, which closes its
// files, and the next read opens them again.)
func TestIdleFilesKeptAcrossReads(t *testing.T) {
	f := newFixture(t)
	const files = 20
	for i := 0; i < files; i++ {
		randomFile(t, f.originDir, fmt.Sprintf("d/f%03d", i), 100, uint64(i))
	}
	c := f.open()
	defer c.Close()
	readAll := func() {
		for i := 0; i < files; i++ {
			readWhole(t, c, fmt.Sprintf("d/f%03d", i))
		}
		c.idle.Wait()
	}
	readAll()
	before := fdTargets(t)
	kept := 0
	for _, target := range before {
		if strings.HasPrefix(target, f.cacheDir) && strings.HasSuffix(target, ".data") {
			kept++
		}
	}
	if kept != files {
		t.Fatalf("%d data files open after reading %d files, want all of them kept", kept, files)
	}
	readAll()
	// Only the cache's descriptors: a fetch closes its origin reader just after
	// the reader it served has its bytes, so the origin's may still be open.
	inCache := func(m map[string]string) map[string]string {
		maps.DeleteFunc(m, func(_, target string) bool { return !strings.HasPrefix(target, f.cacheDir) })
		return m
	}
	before = inCache(before)
	if after := inCache(fdTargets(t)); !maps.Equal(after, before) {
		t.Fatalf("reading %d files read just before changed the descriptors open:\nbefore %v\nafter  %v", files, before, after)
	}
}

// fdTargets maps this process's open descriptors to what they name.
func fdTargets(t *testing.T) map[string]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range ents {
		// An entry closed since the listing (ReadDir's own descriptor among them)
		// is held by nobody: only what still resolves counts.
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			m[e.Name()] = target
		}
	}
	return m
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
