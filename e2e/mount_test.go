package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// walkTree lists every file and directory under root as relative paths with their
// types, sizes and mtimes (truncated to the second: HTTP dates have no more).
func walkTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.IsDir() {
			out[rel] = "dir"
		} else {
			out[rel] = fmt.Sprintf("file %d %d", fi.Size(), fi.ModTime().Unix())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

func compareTrees(t *testing.T, want, got map[string]string) {
	t.Helper()
	var diffs []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			diffs = append(diffs, "missing "+p)
		} else if g != w {
			diffs = append(diffs, fmt.Sprintf("%s: %s, want %s", p, g, w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, "extra "+p)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("%d differences, first: %s", len(diffs), strings.Join(diffs[:min(len(diffs), 10)], "; "))
	}
}

// Acceptance 1: find, stat and sha256 of every file equal the origin's, through both
// nginx listing formats.
func TestMountTreeMatchesOrigin(t *testing.T) {
	tr := sharedTree(t)
	want := walkTree(t, tr.Root)
	if len(tr.Sums) < 1000 {
		t.Fatalf("tree has only %d files", len(tr.Sums))
	}
	for _, format := range []string{"json", "html"} {
		t.Run(format, func(t *testing.T) {
			srv := tr.JSON
			if format == "html" {
				srv = tr.HTML
			}
			m := startMount(t, srv.URL, "")
			compareTrees(t, want, walkTree(t, m.Dir))
			// sha256 of every file, eight at a time; the 1 GiB file only once.
			var wg sync.WaitGroup
			sem := make(chan struct{}, 8)
			var mu sync.Mutex
			var bad []string
			for p, sum := range tr.Sums {
				if p == tr.Huge && format == "html" {
					continue
				}
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					if got := sha256File(t, filepath.Join(m.Dir, p)); got != sum {
						mu.Lock()
						bad = append(bad, p)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			if len(bad) > 0 {
				t.Errorf("%d files differ from the origin, e.g. %q", len(bad), bad[0])
			}
		})
	}
}

// Acceptance 2: random preads of a cold 256 MiB file equal the origin's bytes.
func TestRandomPreadsCold(t *testing.T) {
	tr := sharedTree(t)
	want, err := os.ReadFile(filepath.Join(tr.Root, tr.Big))
	if err != nil {
		t.Fatal(err)
	}
	m := startMount(t, tr.JSON.URL, "")
	f, err := os.Open(filepath.Join(m.Dir, tr.Big))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(7, 7))
	buf := make([]byte, 200_000)
	for i := 0; i < 3000; i++ {
		n := 1 + rng.IntN(200_000)
		off := rng.Int64N(int64(len(want)))
		got, err := f.ReadAt(buf[:n], off)
		if err != nil && err != io.EOF {
			t.Fatalf("pread %d bytes at %d: %v", n, off, err)
		}
		if end := min(off+int64(n), int64(len(want))); !bytes.Equal(buf[:got], want[off:end]) {
			t.Fatalf("pread %d bytes at %d differs from the origin", n, off)
		}
	}
}

// Acceptance 3: 16 concurrent readers of one cold file cost the origin at most 1.1x
// the file's size.
func TestConcurrentColdReadersOneFetch(t *testing.T) {
	tr := sharedTree(t)
	// A private nginx, so its access log holds only this test's requests.
	srv := startNginx(t, tr.Root, "json")
	m := startMount(t, srv.URL, "")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := sha256File(t, filepath.Join(m.Dir, tr.Big)); got != tr.Sums[tr.Big] {
				errs <- fmt.Errorf("reader got wrong bytes")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sent := srv.originBytes(t, "/"+tr.Big)
	size := tr.Sizes[tr.Big]
	t.Logf("origin sent %d bytes for a %d-byte file to 16 readers (%.3fx)", sent, size, float64(sent)/float64(size))
	if float64(sent) > 1.1*float64(size) {
		t.Fatalf("origin sent %.2fx the file size", float64(sent)/float64(size))
	}
}

// duBytes is what du reports for dir.
func duBytes(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			total += fi.Sys().(*syscall.Stat_t).Blocks * 512
		}
		return nil
	})
	return total
}

// Acceptance 4: with --cache-size 64MiB, 300 MiB of distinct files read right while du
// of the cache dir stays under the cap plus the chunks in flight.
func TestCacheSizeCapHolds(t *testing.T) {
	dir := filepath.Join(workDir, "cap-origin")
	sums := map[string]string{}
	for i := 0; i < 75; i++ {
		p := fmt.Sprintf("f%02d.bin", i)
		sums[p] = writeRandom(t, filepath.Join(dir, p), 4<<20, uint64(1000+i))
	}
	srv := startNginx(t, dir, "json")
	const limit = 64 << 20
	m := startMount(t, srv.URL, "", "--cache-size", "64MiB")
	const inFlight = 8 << 20 // one span of 8 chunks being written
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if du := duBytes(m.CacheDir); du > peak.Load() {
				peak.Store(du)
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	for p, sum := range sums {
		if got := sha256File(t, filepath.Join(m.Dir, p)); got != sum {
			t.Errorf("%s differs from the origin", p)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("peak du of the cache dir: %d bytes (cap %d)", peak.Load(), limit)
	if peak.Load() > limit+inFlight {
		t.Fatalf("cache dir reached %d bytes, over the %d cap plus %d in flight", peak.Load(), limit, inFlight)
	}
}

// Acceptance 5: a restart keeps the cache; a kill -9 during cold reads leaves a dead
// mount that cachegate unmount clears, even while a file there is still open (a live
// or stopped mount with an open file is refused as busy), and the restarted mount
// reads everything right.
func TestRestartAndKill(t *testing.T) {
	tr := sharedTree(t)
	srv := startNginx(t, tr.Root, "json")
	cacheDir := filepath.Join(workDir, "restart-cache")
	m := startMount(t, srv.URL, cacheDir)
	for _, p := range tr.Medium[:4] {
		if sha256File(t, filepath.Join(m.Dir, p)) != tr.Sums[p] {
			t.Fatalf("%s differs", p)
		}
	}
	m.stop(t)
	before := srv.originBytes(t, "")
	m = startMount(t, srv.URL, cacheDir)
	for _, p := range tr.Medium[:4] {
		if sha256File(t, filepath.Join(m.Dir, p)) != tr.Sums[p] {
			t.Fatalf("%s differs after restart", p)
		}
	}
	if extra := srv.originBytes(t, "") - before; extra != 0 {
		t.Fatalf("re-reading cached files after a restart cost %d origin bytes", extra)
	}

	// A file held open across the kill keeps the mount busy. Another process holds
	// it: a file of the mount open in this one would make every fork here wait on
	// the stopped mount below (exec closes it, and a close asks the mount to flush).
	holder := exec.Command("sh", "-c", "exec sleep 600 < \"$0\"", filepath.Join(m.Dir, tr.Medium[0]))
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	for start := time.Now(); !holdsOpen(holder.Process.Pid, m.Dir); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the holder never opened its file")
		}
	}
	if out, code := runCLI(t, "unmount", m.Dir); code != 1 || !strings.Contains(out, "busy") || !isMounted(m.Dir) {
		t.Errorf("cachegate unmount of a live mount with an open file: exit %d, %q; want exit 1 saying it is busy, still mounted", code, out)
	}
	// Stopped, the process cannot answer: refused too, and said so, without hanging.
	m.cmd.Process.Signal(syscall.SIGSTOP)
	out, code := func() (string, int) {
		defer m.cmd.Process.Signal(syscall.SIGCONT) // also if runCLI fails the test
		return runCLI(t, "unmount", m.Dir)
	}()
	if code != 1 || !strings.Contains(out, "does not answer") || !isMounted(m.Dir) {
		t.Errorf("cachegate unmount of a stopped mount with an open file: exit %d, %q; want exit 1 saying its process does not answer, still mounted", code, out)
	}

	// Eight concurrent cold readers, then kill -9 in the middle.
	var wg sync.WaitGroup
	for _, p := range append(tr.Medium[4:], tr.Big, tr.Medium[0], "names/"+awkwardNames[0], tr.Huge) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Open(filepath.Join(m.Dir, p))
			if err == nil {
				io.Copy(io.Discard, f)
				f.Close()
			}
		}()
	}
	time.Sleep(700 * time.Millisecond)
	m.kill9()
	wg.Wait()
	// statfs always reaches the filesystem; stat of the root may be answered from
	// attributes the kernel cached before the kill.
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(m.Dir, &sfs); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("after kill -9 the mount point should be a dead mount (ENOTCONN), got %v", err)
	}
	if out, code := runCLI(t, "mount", srv.URL, m.Dir, "--cache-dir", filepath.Join(workDir, "unused-cache")); code != 1 || !strings.Contains(out, "cachegate unmount") {
		t.Errorf("mount over a dead mount: exit %d, %q; want exit 1 telling to run cachegate unmount", code, out)
	}
	out, code = runCLI(t, "unmount", m.Dir)
	if code != 0 {
		t.Fatalf("cachegate unmount of a dead mount with a file open: exit %d: %s", code, out)
	}
	if !strings.Contains(out, "detached") {
		t.Errorf("cachegate unmount of a dead, busy mount said %q; want it to say it detached the mount", out)
	}
	if isMounted(m.Dir) {
		t.Fatal("dead mount still mounted after cachegate unmount")
	}
	holder.Process.Kill()
	m = startMount(t, srv.URL, cacheDir)
	for _, p := range append(tr.Medium, tr.Big, tr.Huge) {
		if sha256File(t, filepath.Join(m.Dir, p)) != tr.Sums[p] {
			t.Errorf("%s differs after kill -9 and restart", p)
		}
	}
}

// Acceptance 6: a replaced object is seen whole after --metadata-ttl, and a reader
// that holds the old one never gets bytes of the new one.
func TestReplacedObjectNeverMixed(t *testing.T) {
	dir := filepath.Join(workDir, "replace-origin")
	const size = 32 << 20
	writeRandom(t, filepath.Join(dir, "obj.bin"), size, 1)
	v1, _ := os.ReadFile(filepath.Join(dir, "obj.bin"))
	srv := startNginx(t, dir, "json")
	m := startMount(t, srv.URL, "", "--metadata-ttl", "1s", "--readahead", "1MiB")
	p := filepath.Join(m.Dir, "obj.bin")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}

	time.Sleep(1100 * time.Millisecond) // nginx's ETag has 1 s resolution
	tmp := filepath.Join(dir, "obj.tmp")
	sum2 := writeRandom(t, tmp, size+12345, 2)
	os.Rename(tmp, filepath.Join(dir, "obj.bin"))

	// The open file keeps reading version 1 or fails; never version 2's bytes.
	var errs, ok int
	for off := int64(0); off < size; off += 1 << 20 {
		n, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			errs++
			continue
		}
		if !bytes.Equal(buf[:n], v1[off:off+int64(n)]) {
			t.Fatalf("old handle read bytes at %d that are not version 1's", off)
		}
		ok++
	}
	t.Logf("old handle after replacement: %d reads of version 1, %d errors", ok, errs)
	time.Sleep(1200 * time.Millisecond)
	if got := sha256File(t, p); got != sum2 {
		t.Fatal("after the TTL the new version is not read whole")
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != size+12345 {
		t.Fatalf("stat after replacement: %v %v", fi, err)
	}
}

// The mount behaves like a read-only local filesystem for mmap, writes and errors.
func TestMountSemantics(t *testing.T) {
	tr := sharedTree(t)
	m := startMount(t, tr.JSON.URL, "")
	p := filepath.Join(m.Dir, tr.Medium[0])
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size := tr.Sizes[tr.Medium[0]]
	mem, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	want, _ := os.ReadFile(filepath.Join(tr.Root, tr.Medium[0]))
	if !bytes.Equal(mem, want) {
		t.Error("mmap of a cold file differs from the origin")
	}
	syscall.Munmap(mem)

	if err := os.WriteFile(filepath.Join(m.Dir, "new.txt"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("create: %v, want EROFS", err)
	}
	if _, err := os.OpenFile(p, os.O_WRONLY, 0); !errors.Is(err, syscall.EROFS) {
		t.Errorf("open for write: %v, want EROFS", err)
	}
	if err := os.Remove(p); !errors.Is(err, syscall.EROFS) {
		t.Errorf("remove: %v, want EROFS", err)
	}
	if _, err := os.Stat(filepath.Join(m.Dir, "no-such-file")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat of a missing file: %v, want ENOENT", err)
	}
	out, err := exec.Command("cp", "-r", filepath.Join(m.Dir, "names"), filepath.Join(workDir, "names-copy")).CombinedOutput()
	if err != nil {
		t.Fatalf("cp -r: %v %s", err, out)
	}
	compareTrees(t, walkTree(t, filepath.Join(tr.Root, "names")), walkTreeSizes(t, filepath.Join(workDir, "names-copy"), walkTree(t, filepath.Join(tr.Root, "names"))))
}

// walkTreeSizes walks a copy, whose mtimes are new, and reports them as the
// original's so that only names and sizes are compared.
func walkTreeSizes(t *testing.T, root string, orig map[string]string) map[string]string {
	got := walkTree(t, root)
	for p, v := range got {
		if o, ok := orig[p]; ok && strings.HasPrefix(v, "file ") {
			f, g := strings.Fields(v), strings.Fields(o)
			if len(f) == 3 && len(g) == 3 && f[1] == g[1] {
				got[p] = o
			}
		}
	}
	return got
}

// Bad input: one-line errors, the right exit codes, nothing left mounted.
func TestMountBadInput(t *testing.T) {
	requireRoot(t)
	mp := filepath.Join(workDir, "bad-input-mnt")
	os.MkdirAll(mp, 0o755)
	cacheDir := filepath.Join(workDir, "bad-input-cache")
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown scheme", []string{"mount", "gopher://x/", mp}, 2, "unsupported origin scheme"},
		// A relative origin is resolved against the working directory (TestRelativeOriginAndWarmIntoNewCacheDir).
		{"missing relative origin", []string{"mount", "some/dir", mp}, 2, "does not exist"},
		{"unreachable", []string{"mount", fmt.Sprintf("http://127.0.0.1:%d/", freePort(t)), mp, "--origin-timeout", "2s"}, 1, "cannot reach origin"},
		{"missing mountpoint", []string{"mount", workDir, filepath.Join(workDir, "nope", "mnt")}, 2, "does not exist"},
		{"bad size", []string{"mount", workDir, mp, "--cache-size", "lots"}, 2, "invalid size"},
		{"unknown flag", []string{"mount", workDir, mp, "--no-such-flag"}, 2, "unknown flag"},
	}
	for _, c := range cases {
		out, code := runCLI(t, append(c.args, "--cache-dir", cacheDir)...)
		if code != c.code || !strings.Contains(out, c.want) || strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Errorf("%s: exit %d, output %q; want exit %d and one line containing %q", c.name, code, out, c.code, c.want)
		}
		if isMounted(mp) {
			t.Fatalf("%s left %s mounted", c.name, mp)
		}
	}

	local := filepath.Join(workDir, "bad-input-origin")
	writeRandom(t, filepath.Join(local, "a.bin"), 1000, 1)
	m := startMount(t, "file://"+local, cacheDir)
	out, code := runCLI(t, "mount", workDir, m.Dir, "--cache-dir", filepath.Join(workDir, "other-cache"))
	if code != 1 || !strings.Contains(out, "already a mount point") {
		t.Errorf("mount on a mounted dir: exit %d, %q", code, out)
	}
	out, code = runCLI(t, "mount", workDir, mp, "--cache-dir", cacheDir)
	if code != 1 || !strings.Contains(out, fmt.Sprintf("pid %d", m.cmd.Process.Pid)) {
		t.Errorf("second owner of a cache dir: exit %d, %q; want exit 1 naming pid %d", code, out, m.cmd.Process.Pid)
	}
	if isMounted(mp) {
		t.Fatal("refused mount left something mounted")
	}
}

// holdsOpen reports whether process pid has a file under dir open.
func holdsOpen(pid int, dir string) bool {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(target, dir+"/") {
			return true
		}
	}
	return false
}
