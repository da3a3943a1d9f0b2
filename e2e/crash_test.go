package e2e

import (
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
					name := names[rr.IntN(nfiles)]
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
