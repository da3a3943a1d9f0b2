package cache

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Files in objects/ whose names are not an object's (a short name, a key in the
// wrong directory) neither crash a start nor cost a cached object its data file:
// they are removed, and the cache counts what du sees.
func TestStartSurvivesStrayNamesInObjects(t *testing.T) {
	f := newFixture(t)
	want := []byte("small and indexed")
	if err := os.WriteFile(filepath.Join(f.originDir, "s"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	c := f.open()
	readWhole(t, c, "s")
	key := objectOf(t, c, "s").key
	c.Close()
	objs := filepath.Join(f.cacheDir, "objects")
	wrongDir := "00"
	if key[:2] == wrongDir {
		wrongDir = "01"
	}
	for _, p := range []string{"zz/a.data", "zz/b.meta", wrongDir + "/" + key + ".data"} {
		if err := os.MkdirAll(filepath.Join(objs, filepath.Dir(p)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(objs, p), []byte("stray"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	reads := f.origin.reads.Load()
	c = f.open()
	defer c.Close()
	if _, err := os.Stat(c.objectPath(key, ".data")); err != nil {
		t.Errorf("the indexed object's data file is gone after a start with stray files: %v", err)
	}
	if got := readWhole(t, c, "s"); !bytes.Equal(got, want) {
		t.Fatalf("read %q", got)
	}
	if f.origin.reads.Load() != reads {
		t.Error("a stray file in objects/ cost the indexed object its data file: read from the origin again")
	}
	if used, _ := c.Used(); used != objectsDu(t, c) {
		t.Errorf("cache counts %d bytes, du %d: stray files left uncounted", used, objectsDu(t, c))
	}
}
