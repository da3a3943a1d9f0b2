package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// faultOutcome is what a read through a broken origin must come to.
type faultOutcome int

const (
	mustSucceed faultOutcome = iota // the fault is transient: retries hide it
	mustFail                        // the fault persists: a clean error, soon
)

// Through the mount and the server of one cachegate, an origin that misbehaves in
// each way below yields the origin's bytes or a clean error (EIO, 502, a response cut
// short of its Content-Length) — never wrong bytes — and errors come within
// --origin-timeout. When the origin heals, every file reads right.
func TestFaultyOrigin(t *testing.T) {
	const originTimeout = 3 * time.Second
	cases := []struct {
		name    string
		f       fault
		outcome faultOutcome
	}{
		{"delay", fault{kind: faultDelay, delay: 300 * time.Millisecond}, mustSucceed},
		{"503-once", fault{kind: faultStatus, status: 503, once: true}, mustSucceed},
		{"reset-once", fault{kind: faultReset, once: true}, mustSucceed},
		{"truncate-once", fault{kind: faultTruncate, once: true}, mustSucceed},
		{"badlength-once", fault{kind: faultBadLength, once: true}, mustSucceed},
		{"trickle", fault{kind: faultTrickle}, mustSucceed},
		{"500-always", fault{kind: faultStatus, status: 500}, mustFail},
		{"stall-always", fault{kind: faultStall, delay: 30 * time.Second}, mustFail},
	}
	dir := filepath.Join(workDir, "fault-origin")
	const size = 3<<20 + 12345
	sums := map[string]string{}
	for i, c := range cases {
		for j, name := range []string{"m0", "m1", "s0", "s1"} {
			p := c.name + "/" + name + ".bin"
			sums[p] = writeRandom(t, filepath.Join(dir, p), size, uint64(100+10*i+j))
		}
	}
	nx := startNginx(t, dir, "json")
	px := startFaultProxy(t, nx.URL)
	port := freePort(t)
	m := startMount(t, px.URL, "", "--metadata-ttl", "1s", "--origin-timeout", originTimeout.String(), "--serve", fmt.Sprintf("127.0.0.1:%d", port))
	if err := waitPort(port, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	serveURL := fmt.Sprintf("http://127.0.0.1:%d/", port)
	client := &http.Client{Timeout: time.Minute}

	// read reads file p through the mount (names m*) or the server (s*) and says
	// whether it read the right bytes; a clean error is ok=false with why set; wrong
	// bytes or an unclean error fail the test.
	read := func(t *testing.T, p string) (ok bool, why string) {
		if strings.HasPrefix(filepath.Base(p), "m") {
			b, err := os.ReadFile(filepath.Join(m.Dir, p))
			if err != nil {
				if !errors.Is(err, syscall.EIO) {
					t.Errorf("%s through the mount: %v, want EIO", p, err)
				}
				return false, err.Error()
			}
			if sha(b) != sums[p] {
				t.Errorf("%s through the mount: WRONG BYTES (%d bytes read)", p, len(b))
			}
			return true, ""
		}
		resp, err := client.Get(serveURL + p)
		if err != nil {
			t.Errorf("GET %s: %v", p, err)
			return false, err.Error()
		}
		defer resp.Body.Close()
		switch resp.StatusCode {
		case 200:
		case 502:
			return false, "502"
		default:
			t.Errorf("GET %s: status %d, want 200 or 502", p, resp.StatusCode)
			return false, resp.Status
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err != nil { // cut short of the Content-Length: the client knows
			return false, fmt.Sprintf("body cut after %d bytes: %v", n, err)
		}
		if hex.EncodeToString(h.Sum(nil)) != sums[p] {
			t.Errorf("GET %s: WRONG BYTES (%d bytes)", p, n)
		}
		return true, ""
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			px.set(c.f)
			defer px.set(fault{})
			before := px.injected.Load()
			var wg sync.WaitGroup
			for _, name := range []string{"m0", "m1", "s0", "s1"} {
				p := c.name + "/" + name + ".bin"
				wg.Add(1)
				go func() {
					defer wg.Done()
					start := time.Now()
					ok, why := read(t, p)
					took := time.Since(start)
					t.Logf("%s: ok=%v %s (%v)", p, ok, why, took.Round(time.Millisecond))
					switch {
					case c.outcome == mustSucceed && !ok:
						t.Errorf("%s: failed (%s) though retries should hide a %s origin", p, why, c.name)
					case c.outcome == mustFail && ok:
						t.Errorf("%s: read although the origin always fails (%s)", p, c.name)
					case c.outcome == mustFail && took > originTimeout+3*time.Second: // slack for a loaded machine
						t.Errorf("%s: took %v to fail, with --origin-timeout %v", p, took, originTimeout)
					}
				}()
			}
			wg.Wait()
			if px.injected.Load() == before {
				t.Errorf("the proxy never injected %s", c.name)
			}
		})
	}

	// The origin heals: after the metadata TTL everything reads right, through both.
	px.set(fault{})
	time.Sleep(1200 * time.Millisecond)
	for _, c := range cases {
		for _, name := range []string{"m0", "m1", "s0", "s1"} {
			p := c.name + "/" + name + ".bin"
			if ok, why := read(t, p); !ok {
				t.Errorf("%s after the origin healed: %s", p, why)
			}
		}
	}
	if !strings.Contains(m.logs.String(), "origin read failed") {
		t.Error("the log never said why reads failed")
	}
	// No chunk of a failed fetch was counted as cached.
	if out, code := runCLI(t, "cache", "verify", "--cache-dir", m.CacheDir); code != 0 {
		t.Errorf("cache verify after the faults: exit %d\n%s", code, out)
	}
}

// An object that changes at the origin in the middle of a read (new ETag, new bytes,
// conditionals ignored) is never mixed: a handle opened on the old version reads old
// bytes or fails, and after the metadata TTL the new version reads whole, through the
// mount and the server.
func TestOriginChangesMidFile(t *testing.T) {
	dir := filepath.Join(workDir, "change-origin")
	const size = 24 << 20
	writeRandom(t, filepath.Join(dir, "m.bin"), size, 300)
	writeRandom(t, filepath.Join(dir, "s.bin"), size, 301)
	v1 := map[string][]byte{}
	v2 := map[string][]byte{}
	for _, name := range []string{"m.bin", "s.bin"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		v1[name] = b
		x := make([]byte, len(b))
		for i := range b {
			x[i] = b[i] ^ changedXOR
		}
		v2[name] = x
	}
	nx := startNginx(t, dir, "json")
	px := startFaultProxy(t, nx.URL)
	port := freePort(t)
	m := startMount(t, px.URL, "", "--metadata-ttl", "1s", "--origin-timeout", "3s", "--serve", fmt.Sprintf("127.0.0.1:%d", port))
	if err := waitPort(port, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	serveURL := fmt.Sprintf("http://127.0.0.1:%d/", port)
	const late = 20 << 20 // an offset no readahead of the first read reaches
	buf := make([]byte, 128<<10)

	// Through the mount: one handle across the change.
	f, err := os.Open(filepath.Join(m.Dir, "m.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != string(v1["m.bin"][:len(buf)]) {
		t.Fatalf("first read: %v", err)
	}
	px.change("/m.bin", true)
	n, err := f.ReadAt(buf, late)
	switch {
	case err == nil && string(buf[:n]) == string(v1["m.bin"][late:late+n]):
		t.Log("mount: the old handle read old bytes (already cached)")
	case err == nil:
		t.Errorf("mount: a handle opened on the old version read other bytes at %d: MIXED", late)
	case errors.Is(err, syscall.EIO):
		t.Log("mount: the old handle got EIO after the change, as it should")
	default:
		t.Errorf("mount: read after the change: %v, want old bytes or EIO", err)
	}
	f.Close()

	// Through the server: one response before, one right after the change.
	get := func(name, rng string) (int, string, []byte) {
		req, _ := http.NewRequest("GET", serveURL+name, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return -1, "", nil // cut short: the client sees it
		}
		return resp.StatusCode, resp.Header.Get("ETag"), b
	}
	code, etag1, b := get("s.bin", "bytes=0-131071")
	if code != 206 || string(b) != string(v1["s.bin"][:131072]) {
		t.Fatalf("server before the change: %d", code)
	}
	px.change("/s.bin", true)
	code, etag, b := get("s.bin", fmt.Sprintf("bytes=%d-%d", late, late+131071))
	switch {
	case code == 502 || code == -1:
		t.Logf("server: %d right after the change", code)
	case code == 206 && etag == etag1 && string(b) == string(v1["s.bin"][late:late+131072]):
		t.Log("server: old version, labelled old")
	case code == 206 && etag == changedETag && string(b) == string(v2["s.bin"][late:late+131072]):
		t.Log("server: new version, labelled new")
	default:
		t.Errorf("server after the change: status %d, ETag %s, bytes of neither version under that label: MIXED", code, etag)
	}

	// After the TTL the new version reads whole.
	time.Sleep(1200 * time.Millisecond)
	if got, err := os.ReadFile(filepath.Join(m.Dir, "m.bin")); err != nil || string(got) != string(v2["m.bin"]) {
		t.Errorf("mount after the TTL: %v, new version whole = %v", err, err == nil && string(got) == string(v2["m.bin"]))
	}
	if code, etag, b := get("s.bin", ""); code != 200 || etag != changedETag || string(b) != string(v2["s.bin"]) {
		t.Errorf("server after the TTL: %d %s, new version whole = %v", code, etag, string(b) == string(v2["s.bin"]))
	}
	// And back: the old version again, never a mix of the cached halves.
	px.change("/m.bin", false)
	px.change("/s.bin", false)
	time.Sleep(1200 * time.Millisecond)
	if got, err := os.ReadFile(filepath.Join(m.Dir, "m.bin")); err != nil || string(got) != string(v1["m.bin"]) {
		t.Errorf("mount after changing back: %v", err)
	}
	if code, _, b := get("s.bin", ""); code != 200 || string(b) != string(v1["s.bin"]) {
		t.Errorf("server after changing back: %d", code)
	}
}
