package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// kill -9 during heavy concurrent fills, over and over: after every restart the cache
// verifies clean, its disk use is within the cap, and every byte served (through the
// mount and the server, before the next kill) is the origin's.
func TestCrashLoop(t *testing.T) {
	rounds := 20
	if testing.Short() {
		rounds = 5
	}
	dir := filepath.Join(workDir, "crash-origin")
	const nfiles, size = 16, 6<<20 + 4321
	const capBytes = 40 << 20
	names := make([]string, nfiles)
	sums := map[string]string{}
	for i := range names {
		names[i] = fmt.Sprintf("d%d/f%02d.bin", i%3, i)
		sums[names[i]] = writeRandom(t, filepath.Join(dir, names[i]), size, uint64(500+i))
	}
	// Small files, whose sidecars are records of index.db's object index (one chunk).
	const nsmall = 64
	for i := 0; i < nsmall; i++ {
		name := fmt.Sprintf("s/t%02d", i)
		names = append(names, name)
		sums[name] = writeRandom(t, filepath.Join(dir, name), int64(1+i*97), uint64(900+i))
	}
	nx := startNginx(t, dir, "json")
	cacheDir := filepath.Join(workDir, "crash-cache")
	var served, wrong atomic.Int64
	rng := rand.New(rand.NewPCG(1, 2))

	for round := 1; round <= rounds; round++ {
		port := freePort(t)
		m := startMount(t, nx.URL, cacheDir, "--cache-size", fmt.Sprint(capBytes), "--serve", fmt.Sprintf("127.0.0.1:%d", port))
		if err := waitPort(port, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		// What the last kill left: chunks all verify, the disk holds at most the cap.
		if out, code := runCLI(t, "cache", "verify", "--cache-dir", cacheDir); code != 0 {
			t.Fatalf("round %d: cache verify after kill -9: exit %d\n%s", round, code, out)
		}
		if du := duBytes(filepath.Join(cacheDir, "objects")); du > capBytes {
			t.Fatalf("round %d: cache holds %d bytes on disk after restart, cap %d", round, du, capBytes)
		}
		checkIndexAgrees(t, round, cacheDir)

		// Eight readers, half through the kernel and half over HTTP, fill away.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for r := 0; r < 8; r++ {
			seed := rng.Uint64()
			wg.Add(1)
			go func() {
				defer wg.Done()
				rr := rand.New(rand.NewPCG(seed, uint64(r)))
				client := &http.Client{Timeout: time.Minute}
				for {
					select {
					case <-stop:
						return
					default:
					}
					name := names[rr.IntN(len(names))]
					var sum string
					var err error
					if r%2 == 0 {
						sum, err = hashFile(filepath.Join(m.Dir, name))
					} else {
						sum, err = hashGet(client, fmt.Sprintf("http://127.0.0.1:%d/%s", port, name))
					}
					if err != nil {
						return // the process died under the reader
					}
					served.Add(1)
					if sum != sums[name] {
						wrong.Add(1)
						t.Errorf("round %d: %s read wrong bytes", round, name)
					}
				}
			}()
		}
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
		m.kill9()
		close(stop)
		wg.Wait()
		if out, code := runCLI(t, "unmount", m.Dir); code != 0 {
			t.Fatalf("round %d: cachegate unmount of the dead mount: exit %d: %s", round, code, out)
		}
	}

	// A last, clean run reads everything right.
	m := startMount(t, nx.URL, cacheDir, "--cache-size", fmt.Sprint(capBytes))
	if out, code := runCLI(t, "cache", "verify", "--cache-dir", cacheDir); code != 0 {
		t.Fatalf("cache verify after %d crashes: exit %d\n%s", rounds, code, out)
	}
	for _, name := range names {
		if sha256File(t, filepath.Join(m.Dir, name)) != sums[name] {
			t.Errorf("%s wrong after %d crashes", name, rounds)
		}
	}
	t.Logf("%d kill -9 rounds: %d whole files read before the kills, %d wrong", rounds, served.Load(), wrong.Load())
	if served.Load() == 0 {
		t.Error("no reader ever finished a file: the test measured nothing")
	}
}

// checkIndexAgrees checks, on an idle cache after a restart, that the objects the
// cache knows are exactly the data files on disk, and that it counts what du sees:
// no file outlived a crash uncounted, and no record names a file that is gone.
func checkIndexAgrees(t *testing.T, round int, cacheDir string) {
	t.Helper()
	out, code := runCLI(t, "cache", "ls", "--json", "--cache-dir", cacheDir)
	if code != 0 {
		t.Fatalf("round %d: cache ls: exit %d\n%s", round, code, out)
	}
	var objs []struct {
		DataFile string `json:"data_file"`
	}
	if err := json.Unmarshal([]byte(out), &objs); err != nil {
		t.Fatalf("round %d: cache ls --json: %v\n%s", round, err, out)
	}
	known := map[string]bool{}
	for _, o := range objs {
		known[o.DataFile] = true
	}
	onDisk, _ := filepath.Glob(filepath.Join(cacheDir, "objects", "*", "*.data"))
	for _, p := range onDisk {
		if !known[p] {
			t.Errorf("round %d: data file %s is on disk but not in the cache's index", round, p)
		}
		delete(known, p)
	}
	for p := range known {
		t.Errorf("round %d: the cache lists %s, which is not on disk", round, p)
	}
	out, code = runCLI(t, "status", "--json", "--cache-dir", cacheDir)
	if code != 0 {
		t.Fatalf("round %d: status: exit %d\n%s", round, code, out)
	}
	var st struct {
		Cache struct {
			UsedBytes int64 `json:"used_bytes"`
		} `json:"cache"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("round %d: status --json: %v\n%s", round, err, out)
	}
	if du := duBytes(filepath.Join(cacheDir, "objects")); st.Cache.UsedBytes != du {
		t.Errorf("round %d: after a restart the cache counts %d bytes, du %d", round, st.Cache.UsedBytes, du)
	}
}
