package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// daemonOrigin is one entry of a test's daemon config.
type daemonOrigin struct {
	name, url, mount, extra string
	serve                   bool
}

// writeDaemonConfig writes a daemon config to file.
func writeDaemonConfig(t *testing.T, file, cacheDir, size, chunk, listen string, origins []daemonOrigin) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "cache:\n  dir: %s\n  size: %s\n  chunk_size: %s\n  min_free: 0\n", cacheDir, size, chunk)
	if listen != "" {
		fmt.Fprintf(&b, "serve:\n  listen: %s\n", listen)
	}
	b.WriteString("origins:\n")
	for _, o := range origins {
		fmt.Fprintf(&b, "  - name: %s\n    url: %s\n", o.name, o.url)
		if o.mount != "" {
			fmt.Fprintf(&b, "    mount: %s\n", o.mount)
		}
		if o.serve {
			b.WriteString("    serve: true\n")
		}
		b.WriteString(o.extra)
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newMountDir makes an empty mount point.
func newMountDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(workDir, "dmnt-")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// newCacheDir names a cache dir of its own for each run of a test (-count=N): a
// reused one would hold the metadata of the last run's origins, on other ports.
func newCacheDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(workDir, "dcache-")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(dir) // cachegate makes it, with its own mode
	return dir
}

// startDaemon runs cachegate daemon --config file until every mount in mounts is
// mounted; at the end of the test it is stopped and nothing stays mounted.
func startDaemon(t *testing.T, env []string, file string, mounts ...string) *proc {
	t.Helper()
	requireRoot(t)
	all := func() bool {
		for _, m := range mounts {
			if !isMounted(m) {
				return false
			}
		}
		return true
	}
	p := startProcEnv(t, env, []string{"daemon", "--config", file}, all)
	t.Cleanup(func() { // before the proc's own cleanup
		p.stopWith(func() {
			for _, m := range mounts {
				abortFuse(m)
			}
		})
		for _, m := range mounts {
			if isMounted(m) {
				abortFuse(m)
				syscall.Unmount(m, syscall.MNT_DETACH)
			}
		}
	})
	for deadline := time.Now().Add(20 * time.Second); strings.Count(p.logs.String(), "msg=mounted") < len(mounts); {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon never logged its mounts\n%s", p.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p
}

// pollFor polls cond for up to d.
func pollFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// Issue 22, acceptance 1 (scaled down: an 8 MiB cache, 27 MiB read): one daemon, two
// nginx origins and one S3 origin (versitygw), all mounted and two served, one cache.
// du of the cache dir stays under the cap plus chunks in flight, every byte is right,
// and cache ls NAME: and status --json give per-origin figures. Before it, a cache dir
// of a single-origin mount opens under the daemon with its objects.
func TestDaemonManyOrigins(t *testing.T) {
	requireRoot(t)
	const chunk, files, fileSize = 256 << 10, 3, 3 << 20
	sums := map[string]string{} // by NAME/file
	var roots [2]string
	var nx [2]*nginx
	for i, name := range []string{"pub", "web"} {
		roots[i] = filepath.Join(workDir, "daemon-"+name)
		for j := 0; j < files; j++ {
			f := fmt.Sprintf("d/f%d.bin", j)
			sums[name+"/"+f] = writeRandom(t, filepath.Join(roots[i], f), fileSize, uint64(2200+10*i+j))
		}
		nx[i] = startNginx(t, roots[i], "json")
	}
	v := startVersitygw(t)
	if err := v.client.MakeBucket(context.Background(), "data", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	for j := 0; j < files; j++ {
		b := make([]byte, fileSize)
		for k := range b {
			b[k] = byte(k*7 + j*13 + k/4093)
		}
		key := fmt.Sprintf("d/f%d.bin", j)
		v.put(t, "data", key, b)
		sums["data/"+key] = sha(b)
	}

	// A single-origin mount's cache dir, with one file of pub cached.
	cacheDir := newCacheDir(t)
	m := startMount(t, nx[0].URL, cacheDir, "--chunk-size", "256KiB")
	if sha256File(t, filepath.Join(m.Dir, "d/f0.bin")) != sums["pub/d/f0.bin"] {
		t.Fatal("the single-origin mount read wrong bytes")
	}
	m.stop(t)

	mounts := []string{newMountDir(t), newMountDir(t), newMountDir(t)}
	port := freePort(t)
	file := filepath.Join(t.TempDir(), "cachegate.yaml")
	writeDaemonConfig(t, file, cacheDir, "8MiB", "256KiB", fmt.Sprintf("127.0.0.1:%d", port), []daemonOrigin{
		{name: "pub", url: nx[0].URL, mount: mounts[0], serve: true},
		{name: "web", url: nx[1].URL, mount: mounts[1], serve: true},
		{name: "data", url: "s3://data", mount: mounts[2], extra: "    s3_endpoint: " + v.Endpoint + "\n    s3_region: us-east-1\n"},
	})
	if out, code := runCLI(t, "daemon", "--check", file); code != 0 || !strings.Contains(out, "good: 3 origins (3 mounted, 2 served)") {
		t.Fatalf("daemon --check: %d %s", code, out)
	}
	d := startDaemon(t, nil, file, mounts...)

	// The object the single-origin mount cached is the daemon's, read without pub.
	out, code := runCLI(t, "cache", "ls", "pub:", "--cache-dir", cacheDir, "--cached-only", "--json")
	if code != 0 || !strings.Contains(out, `"path": "pub/d/f0.bin"`) || !strings.Contains(out, `"complete": true`) {
		t.Fatalf("cache ls pub: after the single-origin mount: %d %s", code, out)
	}
	before := nx[0].originBytes(t, "/d/f0.bin")
	if sha256File(t, filepath.Join(mounts[0], "d/f0.bin")) != sums["pub/d/f0.bin"] {
		t.Fatal("pub/d/f0.bin differs")
	}
	if n := nx[0].originBytes(t, "/d/f0.bin") - before; n != 0 {
		t.Fatalf("the file cached by the single-origin mount cost the origin %d bytes under the daemon", n)
	}

	const limit, inFlight = 8 << 20, 8 * chunk
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if du := duBytes(cacheDir); du > peak.Load() {
				peak.Store(du)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	// Every file through its mount, the three mounts at once.
	var rwg sync.WaitGroup
	for i, name := range []string{"pub", "web", "data"} {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for j := 0; j < files; j++ {
				f := fmt.Sprintf("d/f%d.bin", j)
				if got, err := hashFile(filepath.Join(mounts[i], f)); err != nil || got != sums[name+"/"+f] {
					t.Errorf("%s/%s through its mount: wrong bytes (%v)", name, f, err)
				}
			}
		}()
	}
	rwg.Wait()
	// The served origins by HTTP; the unserved one is not there.
	c := &http.Client{Timeout: 20 * time.Second}
	for _, name := range []string{"pub", "web"} {
		if got, err := hashGet(c, fmt.Sprintf("http://127.0.0.1:%d/%s/d/f1.bin", port, name)); err != nil || got != sums[name+"/d/f1.bin"] {
			t.Errorf("GET /%s/d/f1.bin: wrong bytes (%v)", name, err)
		}
	}
	if r, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/data/d/f1.bin", port)); err != nil || r.StatusCode != 404 {
		t.Errorf("GET of the unserved origin: %v %v", r, err)
	} else {
		r.Body.Close()
	}
	close(stop)
	wg.Wait()
	t.Logf("peak du of the cache dir: %d bytes (cap %d)", peak.Load(), limit)
	if peak.Load() > limit+inFlight {
		t.Errorf("cache dir reached %d bytes, over the %d cap plus %d in flight", peak.Load(), limit, inFlight)
	}

	// Per-origin figures.
	out, code = runCLI(t, "status", "--cache-dir", cacheDir, "--json")
	var st struct {
		Cache struct {
			UsedBytes  int64 `json:"used_bytes"`
			LimitBytes int64 `json:"limit_bytes"`
		} `json:"cache"`
		Origins map[string]struct {
			URL          string `json:"url"`
			Objects      int    `json:"objects"`
			CachedBytes  int64  `json:"cached_bytes"`
			BytesFetched int64  `json:"bytes_fetched"`
		} `json:"origins"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status --json: %d %s", code, out)
	}
	if st.Cache.LimitBytes != limit || st.Cache.UsedBytes > limit || len(st.Origins) != 3 {
		t.Fatalf("status --json: %s", out)
	}
	var cached int64
	for _, name := range []string{"pub", "web", "data"} {
		o := st.Origins[name]
		if o.BytesFetched < fileSize || o.URL == "" {
			t.Errorf("origin %s: %+v, want at least a file's bytes fetched", name, o)
		}
		cached += o.CachedBytes
	}
	if cached > limit {
		t.Errorf("the origins' cached bytes add up to %d, over the cap", cached)
	}
	out, code = runCLI(t, "cache", "ls", "web:", "--cache-dir", cacheDir, "--cached-only")
	if code != 0 || strings.Contains(out, "pub/") || strings.Contains(out, "data/") {
		t.Errorf("cache ls web: lists other origins: %d %s", code, out)
	}
	// A path inside a daemon's mount finds the daemon and its origin's NAME/.
	runCLI(t, "cache", "warm", filepath.Join(mounts[2], "d/f2.bin"))
	out, code = runCLI(t, "cache", "ls", filepath.Join(mounts[2], "d"), "--json")
	if code != 0 || !strings.Contains(out, `"path": "data/d/f2.bin"`) {
		t.Errorf("cache ls MOUNT/d: %d %s", code, out)
	}
	if out := d.logs.String(); strings.Contains(out, "level=ERROR") {
		t.Errorf("errors in the daemon's log:\n%s", out)
	}
}

// Issue 22, acceptance 2: SIGHUP adds an origin (mounted) and removes one (unmounted
// once the file held open on it closes), while a reader of an untouched mount reads
// on without error; a broken config is refused and the running one stays.
func TestDaemonReload(t *testing.T) {
	requireRoot(t)
	rootA := filepath.Join(workDir, "reload-a")
	sumA := writeRandom(t, filepath.Join(rootA, "big.bin"), 4<<20, 2211)
	nx := startNginx(t, rootA, "json")
	rootB, rootC := filepath.Join(workDir, "reload-b"), filepath.Join(workDir, "reload-c")
	sumB := writeRandom(t, filepath.Join(rootB, "b.bin"), 300<<10, 2212)
	sumC := writeRandom(t, filepath.Join(rootC, "c.bin"), 300<<10, 2213)
	ma, mb, mc := newMountDir(t), newMountDir(t), newMountDir(t)
	cacheDir := newCacheDir(t)
	// mc is mounted by a reload: make sure it goes too (this runs after the daemon's
	// own cleanup).
	t.Cleanup(func() {
		if isMounted(mc) {
			abortFuse(mc)
			syscall.Unmount(mc, syscall.MNT_DETACH)
		}
	})
	file := filepath.Join(t.TempDir(), "cachegate.yaml")
	a := daemonOrigin{name: "a", url: nx.URL, mount: ma}
	writeDaemonConfig(t, file, cacheDir, "64MiB", "256KiB", "", []daemonOrigin{a, {name: "b", url: rootB, mount: mb}})
	d := startDaemon(t, nil, file, ma, mb)

	// A reader of the untouched mount, halfway through its file.
	fa, err := os.Open(filepath.Join(ma, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	h := newHasher()
	if _, err := io.CopyN(h, fa, 2<<20); err != nil {
		t.Fatal(err)
	}
	// A file held open on the mount to remove.
	fb, err := os.Open(filepath.Join(mb, "b.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()

	// The root's attributes come from the cache's listing of its root (the names):
	// a stat caches it, which the origin added next must not find stale.
	if _, err := os.Stat(ma); err != nil {
		t.Fatal(err)
	}
	writeDaemonConfig(t, file, cacheDir, "64MiB", "256KiB", "", []daemonOrigin{a, {name: "c", url: rootC, mount: mc}})
	d.cmd.Process.Signal(syscall.SIGHUP)
	if !pollFor(10*time.Second, func() bool { return isMounted(mc) }) {
		t.Fatalf("the added origin is not mounted\n%s", d.logs.String())
	}
	if sha256File(t, filepath.Join(mc, "c.bin")) != sumC {
		t.Fatal("c.bin differs")
	}
	// The removed mount stays while its file is open, and reads on.
	time.Sleep(500 * time.Millisecond)
	if !isMounted(mb) || !strings.Contains(d.logs.String(), "mount busy") {
		t.Fatalf("the busy removed mount went (or was not logged busy)\n%s", d.logs.String())
	}
	hb := newHasher()
	if _, err := io.Copy(hb, fb); err != nil || hb.sum() != sumB {
		t.Fatalf("the removed mount's open file: %v", err)
	}
	fb.Close()
	if !pollFor(10*time.Second, func() bool { return !isMounted(mb) }) {
		t.Fatalf("the removed mount stayed after its file closed\n%s", d.logs.String())
	}
	// The untouched mount's reader reads on.
	if _, err := io.Copy(h, fa); err != nil || h.sum() != sumA {
		t.Fatalf("the reader of the untouched mount: %v (sum right: %v)", err, h.sum() == sumA)
	}

	// A broken config is refused; everything stays.
	os.WriteFile(file, []byte("cache:\n  sise: 1GiB\norigins: []\n"), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	if !pollFor(10*time.Second, func() bool { return strings.Contains(d.logs.String(), "config refused") }) {
		t.Fatalf("the broken config was not refused\n%s", d.logs.String())
	}
	if !strings.Contains(d.logs.String(), `:2: unknown key \"sise\"`) {
		t.Errorf("the refusal does not name the line and key:\n%s", d.logs.String())
	}
	if !isMounted(ma) || !isMounted(mc) || sha256File(t, filepath.Join(mc, "c.bin")) != sumC {
		t.Fatal("a refused config changed the mounts")
	}
	out, code := runCLI(t, "cache", "ls", "c:", "--cache-dir", cacheDir, "--cached-only")
	if code != 0 || !strings.Contains(out, "c/c.bin") {
		t.Errorf("cache ls c: %d %s", code, out)
	}

	// A changed origin is remounted with its new settings; the others stay.
	fa2, err := os.Open(filepath.Join(ma, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer fa2.Close()
	writeDaemonConfig(t, file, cacheDir, "64MiB", "256KiB", "", []daemonOrigin{a, {name: "c", url: rootC, mount: mc, extra: "    metadata_ttl: 5s\n"}})
	d.cmd.Process.Signal(syscall.SIGHUP)
	if !pollFor(10*time.Second, func() bool {
		return strings.Contains(d.logs.String(), "origin changed") && strings.Count(d.logs.String(), "msg=mounted origin=c ") == 2 && isMounted(mc)
	}) {
		t.Fatalf("the changed origin was not remounted\n%s", d.logs.String())
	}
	if sha256File(t, filepath.Join(mc, "c.bin")) != sumC {
		t.Fatal("c.bin differs after the change")
	}
	h2 := newHasher()
	if _, err := io.Copy(h2, fa2); err != nil || h2.sum() != sumA {
		t.Fatalf("a file open on the untouched mount across the change: %v", err)
	}
}

// Issue 22, acceptance 4 for the daemon: READY=1 once its mounts answer,
// RELOADING=1 (with MONOTONIC_USEC) then READY=1 around a SIGHUP, STOPPING=1 on
// SIGTERM.
func TestSdNotifyDaemon(t *testing.T) {
	requireRoot(t)
	root := filepath.Join(workDir, "notify-daemon")
	writeRandom(t, filepath.Join(root, "n.bin"), 10000, 2221)
	sock := filepath.Join(t.TempDir(), "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	mnt := newMountDir(t)
	file := filepath.Join(t.TempDir(), "cachegate.yaml")
	writeDaemonConfig(t, file, newCacheDir(t), "64MiB", "1MiB", "", []daemonOrigin{{name: "n", url: root, mount: mnt}})
	p := startProcEnv(t, []string{"NOTIFY_SOCKET=" + sock}, []string{"daemon", "--config", file}, func() bool { return true })
	t.Cleanup(func() {
		p.stopWith(func() { abortFuse(mnt) })
		if isMounted(mnt) {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	buf := make([]byte, 4096)
	until := func(what string, wait time.Duration) string {
		t.Helper()
		for end := time.Now().Add(wait); ; {
			ln.SetReadDeadline(end)
			n, err := ln.Read(buf)
			if err != nil {
				t.Fatalf("no %s within %v\n%s", what, wait, p.logs.String())
			}
			if msg := string(buf[:n]); strings.Contains(msg, what) {
				return msg
			}
		}
	}
	until("READY=1", 20*time.Second)
	if _, err := os.Stat(filepath.Join(mnt, "n.bin")); err != nil {
		t.Fatalf("READY=1 but the mount does not answer: %v", err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	msg := until("RELOADING=1", 10*time.Second)
	if !strings.Contains(msg, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", msg)
	}
	if msg := until("READY=1", 10*time.Second); !strings.Contains(msg, "STATUS=") {
		t.Errorf("READY=1 after the reload without a STATUS=: %q", msg)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	until("STOPPING=1", 10*time.Second)
	select {
	case <-p.done:
		if c := p.cmd.ProcessState.ExitCode(); c != 0 {
			t.Errorf("exit %d after SIGTERM", c)
		}
	case <-time.After(15 * time.Second):
		t.Error("still running 15s after SIGTERM")
	}
}

// hasher is a sha256 written to bit by bit.
type hasher struct{ hash.Hash }

func newHasher() *hasher { return &hasher{sha256.New()} }

func (h *hasher) sum() string { return hex.EncodeToString(h.Sum(nil)) }

// An origin that does not answer at the daemon's start costs a warning, not the
// daemon: the other origins mount and read; the dead one's mount gives errors.
func TestDaemonOriginDown(t *testing.T) {
	requireRoot(t)
	root := filepath.Join(workDir, "down-up")
	sum := writeRandom(t, filepath.Join(root, "u.bin"), 100<<10, 2231)
	up, down := newMountDir(t), newMountDir(t)
	file := filepath.Join(t.TempDir(), "cachegate.yaml")
	writeDaemonConfig(t, file, newCacheDir(t), "64MiB", "1MiB", "", []daemonOrigin{
		{name: "up", url: root, mount: up},
		{name: "down", url: fmt.Sprintf("http://127.0.0.1:%d/", freePort(t)), mount: down, extra: "    metadata_ttl: 1s\n"},
	})
	d := startDaemon(t, nil, file, up, down)
	if sha256File(t, filepath.Join(up, "u.bin")) != sum {
		t.Fatal("u.bin differs")
	}
	if _, err := os.ReadDir(down); err == nil {
		t.Error("listing the dead origin's mount succeeded")
	}
	if !strings.Contains(d.logs.String(), "origin does not answer") {
		t.Errorf("no warning about the dead origin:\n%s", d.logs.String())
	}
}
