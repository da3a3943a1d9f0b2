package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// soakDuration is how long TestSoak runs: CACHEGATE_SOAK (a Go duration), else one
// minute, or ten seconds with -short.
func soakDuration(t *testing.T) time.Duration {
	if s := os.Getenv("CACHEGATE_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("CACHEGATE_SOAK=%q: %v", s, err)
		}
		return d
	}
	if testing.Short() {
		return 10 * time.Second
	}
	return time.Minute
}

// 64 clients, half reading through the mount and half over HTTP, whole files and
// random ranges, over a working set three times the cache: no wrong byte, no error,
// memory bounded, and descriptors and goroutines back near their baseline after.
func TestSoak(t *testing.T) {
	dir := filepath.Join(workDir, "soak-origin")
	const capBytes = 56 << 20
	var names []string
	var total int64
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; total < 3*capBytes; i++ {
		size := int64(4<<20 + rng.IntN(64<<10))
		if i%2 == 1 {
			size = int64(1 + rng.IntN(256<<10))
		}
		name := fmt.Sprintf("s%d/f%03d.bin", i%4, i)
		writeRandom(t, filepath.Join(dir, name), size, uint64(600+i))
		names = append(names, name)
		total += size
	}
	nx := startNginx(t, dir, "json")
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d/", port)
	m := startMount(t, nx.URL, "", "--cache-size", fmt.Sprint(capBytes), "--serve", fmt.Sprintf("127.0.0.1:%d", port))
	if err := waitPort(port, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	pid := m.cmd.Process.Pid
	var reads, bytesRead, wrong, failed atomic.Int64
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	client := &http.Client{Transport: transport, Timeout: time.Minute}
	// load runs the 64 clients for d.
	load := func(d time.Duration) {
		deadline := time.Now().Add(d)
		var wg sync.WaitGroup
		for c := 0; c < 64; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rr := rand.New(rand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
				viaMount := c%2 == 0
				for time.Now().Before(deadline) {
					name := names[rr.IntN(len(names))]
					want, err := os.ReadFile(filepath.Join(dir, name))
					if err != nil {
						t.Error(err)
						return
					}
					off, n := int64(0), int64(len(want))
					if rr.IntN(2) == 0 { // a random range
						off = rr.Int64N(int64(len(want)))
						n = min(int64(1+rr.IntN(256<<10)), int64(len(want))-off)
					}
					got, err := readRange(client, m.Dir, base, name, off, n, viaMount)
					reads.Add(1)
					bytesRead.Add(int64(len(got)))
					switch {
					case err != nil:
						failed.Add(1)
						t.Errorf("%s [%d,+%d) via mount=%v: %v", name, off, n, viaMount, err)
					case !bytes.Equal(got, want[off:off+n]):
						wrong.Add(1)
						t.Errorf("%s [%d,+%d) via mount=%v: WRONG BYTES", name, off, n, viaMount)
					}
				}
			}()
		}
		wg.Wait()
		transport.CloseIdleConnections()
	}
	// The baseline is taken after a short warm-up of the same load, so that the
	// bounded pools cachegate keeps on purpose are primed: idle origin connections
	// (at most 64 + 32), pipes for splicing (at most 64) and the open-file cache (one
	// descriptor per cached object). A leak grows with the work; those do not.
	cold := statusOf(t, base)
	load(3 * time.Second)
	time.Sleep(time.Second)
	st0 := statusOf(t, base)
	kinds0 := fdKinds(pid)
	reads.Store(0)
	bytesRead.Store(0)

	// Peak resident memory, sampled.
	var peakRSS atomic.Int64
	samplerDone := make(chan struct{})
	stopSampler := make(chan struct{})
	go func() {
		defer close(samplerDone)
		for {
			if rss := rssOf(pid); rss > peakRSS.Load() {
				peakRSS.Store(rss)
			}
			select {
			case <-stopSampler:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	d := soakDuration(t)
	load(d)
	close(stopSampler)
	<-samplerDone
	t.Logf("soak %v: %d reads, %d MiB, %d wrong, %d failed; peak RSS %d MiB (race-detector build)",
		d, reads.Load(), bytesRead.Load()>>20, wrong.Load(), failed.Load(), peakRSS.Load()>>20)
	if peakRSS.Load() > 1<<30 {
		t.Errorf("peak RSS %d MiB: memory is not bounded", peakRSS.Load()>>20)
	}

	// Back to baseline. Goroutines near it. Descriptors by kind: the pools cachegate
	// keeps on purpose may have grown past the warm-up's level but never past their
	// own bounds (pipes: 64 pairs; idle origin connections: 64 for net/http and 32
	// raw, plus the listeners), and everything else (cache files, the FUSE device,
	// the runtime's) is back near the baseline give or take the open-file cache's
	// share, two per cached object (its data file and its sidecar). A leak grows
	// with the work; those do not.
	const maxPipeFDs, maxSockets = 2 * 64, 64 + 32 + 8
	var st map[string]any
	for wait := time.Now().Add(15 * time.Second); ; {
		st = statusOf(t, base)
		kinds := fdKinds(pid)
		g := num(st, "serve.goroutines")
		others, othersBase := kinds.total()-kinds["pipe"]-kinds["socket"], kinds0.total()-kinds0["pipe"]-kinds0["socket"]
		grown := 2 * int(max(0, num(st, "cache.objects")-num(st0, "cache.objects")))
		if g <= num(st0, "serve.goroutines")+16 && kinds["pipe"] <= maxPipeFDs && kinds["socket"] <= maxSockets && others <= othersBase+grown+16 {
			break
		}
		if time.Now().After(wait) {
			t.Errorf("after the soak: %v goroutines (baseline %v); descriptors %v (baseline %v, %v objects cached; pipes at most %d, sockets %d, others baseline + 2 per new object + 16)",
				g, num(st0, "serve.goroutines"), kinds, kinds0, num(st, "cache.objects"), maxPipeFDs, maxSockets)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("goroutines %v cold, %v after warm-up, %v after the soak; descriptors %v, %v, %v (%v then %v objects cached): %v",
		num(cold, "serve.goroutines"), num(st0, "serve.goroutines"), num(st, "serve.goroutines"),
		num(cold, "serve.open_fds"), num(st0, "serve.open_fds"), num(st, "serve.open_fds"),
		num(st0, "cache.objects"), num(st, "cache.objects"), fdKinds(pid))
	if du := duBytes(filepath.Join(m.CacheDir, "objects")); du > capBytes+8<<20 {
		t.Errorf("cache holds %d bytes on disk, cap %d", du, capBytes)
	}
}

// readRange reads n bytes at off of name through the mount or the server.
func readRange(client *http.Client, mnt, base, name string, off, n int64, viaMount bool) ([]byte, error) {
	buf := make([]byte, n)
	if viaMount {
		f, err := os.Open(filepath.Join(mnt, name))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		k, err := f.ReadAt(buf, off)
		if err == io.EOF && int64(k) == n {
			err = nil
		}
		return buf[:k], err
	}
	req, _ := http.NewRequest("GET", base+name, nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 206 && resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	k, err := io.ReadFull(resp.Body, buf)
	if err == nil {
		if extra, _ := io.Copy(io.Discard, resp.Body); extra > 0 {
			err = fmt.Errorf("%d bytes more than asked for", extra)
		}
	}
	return buf[:k], err
}

// rssOf returns a process's resident set size in bytes (0 if it is gone).
func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// fdCounts counts a process's descriptors by kind: "socket", "pipe", "anon_inode",
// or the directory of a file.
type fdCounts map[string]int

func (k fdCounts) total() int {
	n := 0
	for _, c := range k {
		n += c
	}
	return n
}

// fdKinds counts a process's descriptors by kind.
func fdKinds(pid int) fdCounts {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	kinds := fdCounts{}
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		kind, _, _ := strings.Cut(target, ":")
		if strings.HasPrefix(target, "/") {
			kind = filepath.Dir(target)
		}
		kinds[kind]++
	}
	return kinds
}
