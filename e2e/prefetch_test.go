package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// One cat of a directory of small files through a mount that prefetches: every file
// is asked of nginx exactly once (a GET: the prefetched ones are not asked again, and
// none is asked twice when the reader catches up with its prefetch), every byte is
// right, and the prefetches were used. A reader that stops after a few files costs
// at most --prefetch files more.
func TestPrefetchDirectoryOneGETEach(t *testing.T) {
	const files, ahead, stopAfter = 60, 8, 10
	root, err := os.MkdirTemp(workDir, "origin-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(root, 0o755)
	rng := rand.New(rand.NewPCG(7, 7))
	var want []byte
	var all, some []string
	for _, d := range []string{"d", "stop"} {
		os.Mkdir(filepath.Join(root, d), 0o755)
		for i := 0; i < files; i++ {
			b := make([]byte, 1+rng.IntN(40<<10))
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			name := fmt.Sprintf("f%03d", i)
			if err := os.WriteFile(filepath.Join(root, d, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
			if d == "d" {
				want = append(want, b...)
				all = append(all, name)
			} else if i < stopAfter {
				some = append(some, name)
			}
		}
	}
	n := startNginx(t, root, "json")
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	m := startMount(t, n.URL, "", "--prefetch", strconv.Itoa(ahead), "--metadata-ttl", "10m", "--metrics", metrics)

	cat := func(dir string, names []string) []byte {
		args := make([]string, len(names))
		for i, name := range names {
			args[i] = filepath.Join(m.Dir, dir, name)
		}
		out, err := exec.Command("cat", args...).Output()
		if err != nil {
			t.Fatalf("cat %s: %v", dir, err)
		}
		return out
	}
	if got := cat("d", all); !bytes.Equal(got, want) {
		t.Fatalf("cat of %d files through the mount: %d bytes, not the files' %d", files, len(got), len(want))
	}
	cat("stop", some)

	// nginx logs a moment after it answers; prefetches may still be landing.
	var reqs map[string][]string
	for deadline, last := time.Now().Add(5*time.Second), -1; ; time.Sleep(200 * time.Millisecond) {
		reqs = fileRequests(t, n)
		if len(reqs) == last && len(reqs) >= files+stopAfter || time.Now().After(deadline) {
			break
		}
		last = len(reqs)
	}
	for _, name := range all {
		if got := reqs["/d/"+name]; len(got) != 1 || got[0] != "GET" {
			t.Errorf("d/%s: nginx was asked %v, want one GET", name, got)
		}
	}
	stopped := 0
	for uri, got := range reqs {
		if strings.HasPrefix(uri, "/stop/") {
			stopped++
			if len(got) != 1 || got[0] != "GET" {
				t.Errorf("%s: nginx was asked %v, want one GET", uri, got)
			}
		}
	}
	if stopped < stopAfter || stopped > stopAfter+ahead {
		t.Errorf("a reader that stopped after %d files of stop/ cost %d files from nginx, want %d to %d", stopAfter, stopped, stopAfter, stopAfter+ahead)
	}

	// The prefetches happened, and the reader used them.
	resp, err := http.Get("http://" + metrics + "/-/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, kind := range []string{"fetched", "useful"} {
		if v := metricValue(string(body), `cachegate_prefetch_files_total{kind="`+kind+`"}`); v < files/2 {
			t.Errorf("cachegate_prefetch_files_total{kind=%q} = %v, want at least %d of %d files", kind, v, files/2, files)
		}
	}
}

// metricValue returns the value of the Prometheus text line that starts with
// name, or -1.
func metricValue(text, name string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
