package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// awkwardNames are file names that break naive URL, HTML and JSON handling.
var awkwardNames = []string{
	"with space.txt", "plus+sign.txt", "100%.txt", "%41%2F.txt", "hash#tag.txt",
	`double"quote.txt`, "single'quote.txt", "[brackets].txt", "(parens).txt",
	"ünïcødé-✓.txt", "a&b;c=d.txt", "question?mark.txt", "<angle>.txt",
	"this-name-is-longer-than-fifty-characters-so-nginx-truncates-it-in-html.bin",
}

// testTree is the shared origin tree: over 1,000 files from 0 B to 1 GiB in nested
// directories, with awkward names. Its files' sha256 are recorded while writing.
type testTree struct {
	Root   string
	Sums   map[string]string // origin path -> sha256
	Sizes  map[string]int64
	JSON   *nginx
	HTML   *nginx
	Big    string // a 256 MiB file
	Huge   string // a 1 GiB file
	Medium []string
}

var (
	treeOnce sync.Once
	tree     *testTree
	treeErr  string
)

func sharedTree(t *testing.T) *testTree {
	t.Helper()
	requireRoot(t)
	treeOnce.Do(func() {
		tr := &testTree{Root: filepath.Join(workDir, "tree"), Sums: map[string]string{}, Sizes: map[string]int64{}}
		add := func(p string, size int64, seed uint64) {
			tr.Sums[p] = writeRandom(t, filepath.Join(tr.Root, p), size, seed)
			tr.Sizes[p] = size
		}
		rng := rand.New(rand.NewPCG(42, 42))
		seed := uint64(1)
		sizes := []int64{0, 1, 511, 4095, 4096, 4097, 65536, 1<<20 - 1, 1 << 20, 1<<20 + 1}
		for d := 0; d < 10; d++ {
			for i := 0; i < 100; i++ {
				size := sizes[rng.IntN(len(sizes))]
				if rng.IntN(3) == 0 {
					size = rng.Int64N(300 << 10)
				}
				sub := fmt.Sprintf("d%02d", d)
				if i%4 == 0 {
					sub += "/nested/deeper"
				}
				add(fmt.Sprintf("tree/%s/f%03d.dat", sub, i), size, seed)
				seed++
			}
		}
		for i, n := range awkwardNames {
			add("names/"+n, int64(100+i*1000), seed)
			add("names/dir with "+fmt.Sprint(i)+" ✓/"+n, int64(i), seed+1)
			seed += 2
		}
		for i := 0; i < 8; i++ {
			p := fmt.Sprintf("medium/m%d.bin", i)
			add(p, 24<<20+int64(i)*4096+7, seed)
			tr.Medium = append(tr.Medium, p)
			seed++
		}
		tr.Big = "big/256m.bin"
		add(tr.Big, 256<<20, seed)
		tr.Huge = "big/1g.bin"
		add(tr.Huge, 1<<30, seed+1)
		os.MkdirAll(filepath.Join(tr.Root, "empty-dir"), 0o755)
		tr.JSON = launchNginx(t, tr.Root, "json", true, sharedOnce.add)
		tr.HTML = launchNginx(t, tr.Root, "html", true, sharedOnce.add)
		tree = tr
	})
	if tree == nil {
		t.Fatal("shared test tree could not be built (see the first test's log)")
	}
	return tree
}
