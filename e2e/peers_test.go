package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// A peer group on one machine: members on distinct ports of 127.0.0.1, each with its
// own cache dir, in front of one nginx whose access log counts the origin's bytes.
// Spans of 4 MiB over 1 MiB chunks stand in for 64 MiB over 1 MiB: a 24 MiB file
// spreads over the three members as a 256 MiB file does with the defaults.

const peerSpanFlag = "4MiB"

type peerGroup struct {
	origin *nginx
	ports  []int
	list   string // the --peers value
}

func newPeerGroup(t testing.TB, root string, n int) *peerGroup {
	g := &peerGroup{origin: startNginx(t, root, "json")}
	var urls []string
	for range n {
		p := freePort(t)
		g.ports = append(g.ports, p)
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d", p))
	}
	g.list = strings.Join(urls, ",")
	return g
}

func (g *peerGroup) url(i int) string { return fmt.Sprintf("http://127.0.0.1:%d/", g.ports[i]) }

func (g *peerGroup) flags(extra ...string) []string {
	return append([]string{"--peers", g.list, "--peer-span", peerSpanFlag, "--chunk-size", "1MiB", "--metadata-ttl", "1h"}, extra...)
}

// serve starts member i as `cachegate serve` on its port with cacheDir.
func (g *peerGroup) serve(t testing.TB, i int, cacheDir string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"serve", g.origin.URL, "--listen", fmt.Sprintf("127.0.0.1:%d", g.ports[i]), "--cache-dir", cacheDir}, g.flags(extra...)...)
	return startProc(t, args, func() bool { return waitPort(g.ports[i], 0) == nil })
}

// peerTree writes a 24 MiB file and a tree of small files under root and returns
// each file's sha256 by origin path, and the set's size.
func peerTree(t *testing.T, root string, files int) (map[string]string, int64) {
	os.Chmod(root, 0o755)
	sums := map[string]string{"big.bin": writeRandom(t, filepath.Join(root, "big.bin"), 24<<20, 23)}
	total := int64(24 << 20)
	for i := range files {
		size := int64(1+i%7) * 9000
		p := fmt.Sprintf("tree/d%d/f%03d", i%4, i)
		sums[p] = writeRandom(t, filepath.Join(root, p), size, uint64(100+i))
		total += size
	}
	return sums, total
}

// peerStatus returns the peers part of a member's /-/status, by URL.
func peerStatus(t testing.TB, base string) map[string]map[string]any {
	t.Helper()
	resp, err := http.Get(base + "-/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Serve struct {
			Peers []map[string]any `json:"peers"`
		} `json:"serve"`
		Origin struct {
			BytesFetched int64 `json:"bytes_fetched"`
		} `json:"origin"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{"": {"origin_bytes": float64(st.Origin.BytesFetched)}}
	for _, p := range st.Serve.Peers {
		out[p["url"].(string)] = p
	}
	return out
}

// Acceptance 1: three cold members (two serving HTTP, one a mount that also serves
// its peers), a file and a small tree read through each in turn: every byte right,
// and the origin sends the set's bytes once (at most 1.05x).
func TestPeersColdGroupFetchesEachByteOnce(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	sums, total := peerTree(t, root, 40)
	g := newPeerGroup(t, root, 3)
	for i := range 2 {
		g.serve(t, i, filepath.Join(t.TempDir(), "cache"))
	}
	m := startMount(t, g.origin.URL, filepath.Join(t.TempDir(), "cache"), g.flags("--serve", fmt.Sprintf("127.0.0.1:%d", g.ports[2]))...)
	if err := waitPort(g.ports[2], 10*time.Second); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 60 * time.Second}
	xcache := map[string]int{}
	for i := range 3 {
		for p, want := range sums {
			var got string
			var err error
			switch i {
			case 0:
				got, err = hashGet(client, g.url(i)+p)
			case 1:
				var x string
				got, x, err = hashGetXCache(client, g.url(i)+p)
				xcache[x]++
			case 2:
				got, err = hashFile(filepath.Join(m.Dir, p))
			}
			if err != nil || got != want {
				t.Fatalf("member %d, %s: sha256 %s, %v; want %s", i, p, got, err, want)
			}
		}
	}
	// Member 1 found every file cold; those whose first span another member owns
	// came from it and say so.
	if xcache["PEER"] == 0 || xcache["PEER"] == len(sums) {
		t.Errorf("X-Cache of member 1's reads: %v, want some PEER and some not", xcache)
	}
	got := g.origin.originBytes(t, "")
	t.Logf("origin sent %d bytes for a set of %d (%.3fx)", got, total, float64(got)/float64(total))
	if float64(got) > 1.05*float64(total) {
		t.Errorf("origin sent %d bytes for a set of %d: more than 1.05x", got, total)
	}
	// The second member read the first's spans from it, not from the origin.
	st := peerStatus(t, g.url(1))
	if b, _ := st[strings.TrimSuffix(g.url(0), "/")]["bytes"].(float64); b == 0 {
		t.Errorf("member 1 read no bytes from member 0: %v", st)
	}
}

// Acceptance 3: kill -9 of one member while clients read through the others: no
// client error, every byte right. Restarted, it is probed back into use and serves
// its spans from its cache, without origin bytes.
func TestPeersMemberKilledAndBack(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	os.Chmod(root, 0o755)
	sums := map[string]string{}
	for i, name := range []string{"a.bin", "b.bin"} {
		sums[name] = writeRandom(t, filepath.Join(root, name), 24<<20, uint64(40+i))
	}
	g := newPeerGroup(t, root, 3)
	caches := make([]string, 3)
	procs := make([]*proc, 3)
	for i := range 3 {
		caches[i] = filepath.Join(t.TempDir(), "cache")
		procs[i] = g.serve(t, i, caches[i])
	}
	client := &http.Client{Timeout: 60 * time.Second}
	// Member 2 reads a.bin whole: it holds all of it, the others their own spans.
	if got, err := hashGet(client, g.url(2)+"a.bin"); err != nil || got != sums["a.bin"] {
		t.Fatalf("a.bin through member 2: %s, %v", got, err)
	}

	// Clients on members 0 and 1 read both files while member 2 dies.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 2 {
		for _, name := range []string{"a.bin", "b.bin"} {
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if got, err := hashGet(client, g.url(i)+name); err != nil || got != sums[name] {
						errs <- fmt.Errorf("%s through member %d: sha256 %s, %v", name, i, got, err)
					}
				}()
			}
		}
	}
	time.Sleep(50 * time.Millisecond)
	procs[2].kill9()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	// Back on the same port with the same cache: members 0 and 1 probe it back
	// into use within the probes' backoff.
	self2 := strings.TrimSuffix(g.url(2), "/")
	procs[2] = g.serve(t, 2, caches[2])
	deadline := time.Now().Add(30 * time.Second)
	for _, i := range []int{0, 1} {
		for {
			st := peerStatus(t, g.url(i))[self2]
			if st["state"] == "up" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("member %d still sees member 2 as %v after 30s", i, st)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// Member 0 forgets a.bin and reads it again: member 2's spans come from
	// member 2's cache, which asks the origin for nothing.
	if out, code := runCLI(t, "cache", "evict", "--cache-dir", caches[0], "a.bin"); code != 0 {
		t.Fatalf("cache evict: %d %s", code, out)
	}
	before := peerStatus(t, g.url(0))[self2]["bytes"].(float64)
	if got, err := hashGet(client, g.url(0)+"a.bin"); err != nil || got != sums["a.bin"] {
		t.Fatalf("a.bin through member 0 after the restart: %s, %v", got, err)
	}
	if after := peerStatus(t, g.url(0))[self2]["bytes"].(float64); after <= before {
		t.Errorf("member 0 read nothing from the restarted member 2 (%v bytes before, %v after)", before, after)
	}
	st2 := peerStatus(t, g.url(2))
	if b := st2[""]["origin_bytes"].(float64); b != 0 {
		t.Errorf("the restarted member 2 fetched %v bytes from the origin; its spans were in its cache", b)
	}
	if b, _ := st2[strings.TrimSuffix(g.url(0), "/")]["served_bytes"].(float64); b == 0 {
		t.Errorf("the restarted member 2 counts no bytes served to member 0: %v", st2)
	}
	// `cachegate status` shows the group as member 0 sees it.
	out, code := runCLI(t, "status", "--cache-dir", caches[0])
	if code != 0 || !strings.Contains(out, "peer:        "+self2+" up since") || !strings.Contains(out, "this member") {
		t.Errorf("cachegate status (exit %d) does not show member 2 up and this member:\n%s", code, out)
	}
}

// Acceptance 2: 3 x 4 clients read the same cold file through all three members at
// once: the members' fetches meet in the owners' flights, and the origin sends the
// file about once (at most 1.1x).
func TestPeersConcurrentColdReaders(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	os.Chmod(root, 0o755)
	sum := writeRandom(t, filepath.Join(root, "big.bin"), 24<<20, 77)
	g := newPeerGroup(t, root, 3)
	// With a token: members send it to each other, and require it.
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret-peer-token\n"), 0o600)
	for i := range 3 {
		g.serve(t, i, filepath.Join(t.TempDir(), "cache"), "--auth-token-file", tokenFile)
	}
	if resp, err := http.Get(g.url(0) + "big.bin"); err != nil || resp.StatusCode != 401 {
		t.Fatalf("GET without the token: %v %v, want 401", resp, err)
	}
	client := &http.Client{Timeout: 60 * time.Second, Transport: bearer{"s3cret-peer-token"}}
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 3 {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if got, err := hashGet(client, g.url(i)+"big.bin"); err != nil || got != sum {
					errs <- fmt.Errorf("member %d: sha256 %s, %v", i, got, err)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := g.origin.originBytes(t, "/big.bin")
	t.Logf("origin sent %d bytes for 12 readers of %d (%.3fx)", got, 24<<20, float64(got)/float64(24<<20))
	if float64(got) > 1.1*float64(24<<20) {
		t.Errorf("origin sent %d bytes for a file of %d: more than 1.1x", got, 24<<20)
	}
}

// Acceptance 4, end to end: four members agree on every span's owner (the share
// that moves when the fourth joins is TestRendezvousSpreadAndStability's): read
// through each in turn, a member that disagreed would ask a peer that never fetched
// the span, which would fetch it from the origin a second time.
func TestPeersFourMembersAgree(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	sums, total := peerTree(t, root, 8)
	g := newPeerGroup(t, root, 4)
	for i := range 4 {
		g.serve(t, i, filepath.Join(t.TempDir(), "cache"))
	}
	client := &http.Client{Timeout: 60 * time.Second}
	for i := range 4 {
		for p, want := range sums {
			if got, err := hashGet(client, g.url(i)+p); err != nil || got != want {
				t.Fatalf("member %d, %s: sha256 %s, %v", i, p, got, err)
			}
		}
	}
	if got := g.origin.originBytes(t, ""); float64(got) > 1.05*float64(total) {
		t.Errorf("origin sent %d bytes for a set of %d read through four members: more than 1.05x", got, total)
	}
}

// cachedBytes returns what `cache ls --json` says a member's cache holds of path.
func cachedBytes(t *testing.T, cacheDir, path string) int64 {
	t.Helper()
	out, code := runCLI(t, "cache", "ls", "--json", "--cache-dir", cacheDir)
	if code != 0 {
		t.Fatalf("cache ls: %d %s", code, out)
	}
	var objs []struct {
		Path        string `json:"path"`
		CachedBytes int64  `json:"cached_bytes"`
	}
	if err := json.Unmarshal([]byte(out), &objs); err != nil {
		t.Fatalf("cache ls --json: %v\n%s", err, out)
	}
	var n int64
	for _, o := range objs {
		if strings.TrimPrefix(o.Path, "/") == path {
			n += o.CachedBytes
		}
	}
	return n
}

// Acceptance 5: a member with --peer-copy owner reads other members' spans through
// and keeps only its own: after a full read its cache holds exactly the bytes it did
// not get from peers, and a second read asks the peers again, not the origin.
func TestPeersCopyOwnerKeepsOwnSpans(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	os.Chmod(root, 0o755)
	const size = 24 << 20
	sum := writeRandom(t, filepath.Join(root, "big.bin"), size, 5)
	warmSum := writeRandom(t, filepath.Join(root, "warm.bin"), size, 6)
	g := newPeerGroup(t, root, 3)
	cache0 := filepath.Join(t.TempDir(), "cache")
	// Spans of one chunk: member 0 owns some of the 24 and not all (with 4 MiB
	// spans it owned none of the 6 in about one run in eleven: ownership follows
	// the ports).
	const span = "1MiB"
	g.serve(t, 0, cache0, "--peer-copy", "owner", "--peer-span", span)
	for i := 1; i < 3; i++ {
		g.serve(t, i, filepath.Join(t.TempDir(), "cache"), "--peer-span", span)
	}
	client := &http.Client{Timeout: 60 * time.Second}
	fromPeers := func() (n float64) {
		for u, st := range peerStatus(t, g.url(0)) {
			if u != "" {
				b, _ := st["bytes"].(float64)
				n += b
			}
		}
		return n
	}
	if got, err := hashGet(client, g.url(0)+"big.bin"); err != nil || got != sum {
		t.Fatalf("big.bin through member 0: %s, %v", got, err)
	}
	peers1 := fromPeers()
	kept := cachedBytes(t, cache0, "big.bin")
	if peers1 == 0 || kept == 0 || kept+int64(peers1) != size {
		t.Fatalf("member 0 keeps %d bytes and read %v from peers, want its own spans kept and the others' read through (summing to %d)", kept, peers1, size)
	}
	origin1 := g.origin.originBytes(t, "/big.bin")
	if got, err := hashGet(client, g.url(0)+"big.bin"); err != nil || got != sum {
		t.Fatalf("big.bin through member 0 again: %s, %v", got, err)
	}
	if peers2 := fromPeers(); peers2 != 2*peers1 {
		t.Errorf("the second read took %v bytes from peers, want %v again", peers2-peers1, peers1)
	}
	if kept2 := cachedBytes(t, cache0, "big.bin"); kept2 != kept {
		t.Errorf("member 0 keeps %d bytes after the second read, %d after the first", kept2, kept)
	}
	if origin2 := g.origin.originBytes(t, "/big.bin"); origin2 != origin1 {
		t.Errorf("the second read cost the origin %d bytes", origin2-origin1)
	}
	// A range of a span another member owns says it is read through a peer.
	for off := int64(0); off < size; off += 1 << 20 {
		req, _ := http.NewRequest("GET", g.url(0)+"big.bin", nil)
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+99))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if x := resp.Header.Get("X-Cache"); x == "PEER" {
			break
		} else if off+(1<<20) >= size {
			t.Errorf("no span of big.bin read through member 0 says X-Cache: PEER (last: %s)", x)
		}
	}

	// cache warm on the owner-only member keeps its own spans and reads the others
	// through, so their owners keep them: the group is warm, each span once, and a
	// read through member 0 afterwards costs the origin nothing.
	peersW := fromPeers()
	out, code := runCLI(t, "cache", "warm", "warm.bin", "--json", "--cache-dir", cache0)
	var warmed struct {
		Bytes   int64 `json:"bytes"`
		Done    int64 `json:"bytes_done"`
		NotKept int64 `json:"bytes_not_kept"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &warmed) != nil {
		t.Fatalf("cache warm on member 0: exit %d: %s", code, out)
	}
	keptW := cachedBytes(t, cache0, "warm.bin")
	if warmed.Done != size || warmed.Bytes != size || keptW == 0 || warmed.NotKept == 0 || keptW+warmed.NotKept != size {
		t.Fatalf("cache warm on member 0: %+v, %d bytes kept; want its own spans kept and the others read through (summing to %d)", warmed, keptW, size)
	}
	if got := fromPeers() - peersW; int64(got) != warmed.NotKept {
		t.Errorf("cache warm read %v bytes through peers, says %d were not kept", got, warmed.NotKept)
	}
	originW := g.origin.originBytes(t, "/warm.bin")
	if originW != size {
		t.Errorf("cache warm of the group cost the origin %d bytes, want each byte once (%d)", originW, size)
	}
	if got, err := hashGet(client, g.url(0)+"warm.bin"); err != nil || got != warmSum {
		t.Fatalf("warm.bin through member 0: %s, %v", got, err)
	}
	if n := g.origin.originBytes(t, "/warm.bin") - originW; n != 0 {
		t.Errorf("reading warm.bin after the warm cost the origin %d bytes", n)
	}
	if k := cachedBytes(t, cache0, "warm.bin"); k != keptW {
		t.Errorf("member 0 keeps %d bytes of warm.bin after a read, %d after the warm", k, keptW)
	}
}

// countingProxy is a reverse proxy in front of an S3 server that counts the body
// bytes of the GETs of one object path (listings and HEADs do not count). It keeps
// the client's Host header, which the request's signature covers.
func countingProxy(t *testing.T, upstream, path string) (string, *atomic.Int64) {
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.Request.Method == "GET" && resp.Request.URL.Path == path {
				resp.Body = &countingBody{ReadCloser: resp.Body, n: &n}
			}
			return nil
		},
	}
	s := httptest.NewServer(rp)
	t.Cleanup(s.Close)
	return s.URL, &n
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	k, err := b.ReadCloser.Read(p)
	b.n.Add(int64(k))
	return k, err
}

// Acceptance 1-2 against S3 (versitygw): three members serving a bucket, 3 x 2
// concurrent cold readers of one object: the store sends it about once.
func TestPeersS3Origin(t *testing.T) {
	requireRoot(t)
	v := startVersitygw(t)
	if err := v.client.MakeBucket(context.Background(), "data", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	const size = 24 << 20
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{9}).Read(data)
	v.put(t, "data", "big.bin", data)
	endpoint, sent := countingProxy(t, v.Endpoint, "/data/big.bin")
	var urls []string
	ports := make([]int, 3)
	for i := range ports {
		ports[i] = freePort(t)
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d", ports[i]))
	}
	for i, p := range ports {
		startProc(t, []string{"serve", "s3://data", "--s3-endpoint", endpoint, "--listen", fmt.Sprintf("127.0.0.1:%d", p),
			"--cache-dir", filepath.Join(t.TempDir(), "cache"), "--peers", strings.Join(urls, ","), "--peer-span", peerSpanFlag, "--chunk-size", "1MiB"},
			func() bool { return waitPort(ports[i], 0) == nil })
	}
	client := &http.Client{Timeout: 60 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := range 3 {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if got, err := hashGet(client, urls[i]+"/big.bin"); err != nil || got != sha(data) {
					errs <- fmt.Errorf("member %d: sha256 %s, %v", i, got, err)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := sent.Load()
	t.Logf("the S3 store sent %d bytes for 6 readers of %d (%.3fx)", got, size, float64(got)/size)
	if float64(got) > 1.1*size {
		t.Errorf("the S3 store sent %d bytes for an object of %d: more than 1.1x", got, size)
	}
}

// hashGetXCache is hashGet that also returns the answer's X-Cache.
func hashGetXCache(c *http.Client, u string) (string, string, error) {
	resp, err := c.Get(u)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", "", errors.New(resp.Status)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return "", "", err
	}
	return hex.EncodeToString(h.Sum(nil)), resp.Header.Get("X-Cache"), nil
}

// bearer adds a bearer token to every request.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// Through a mount, a member with --peer-copy owner reads another member's spans
// with one stream per run for a sequential reader, not one peer request per FUSE
// read (up to 1 MiB each, 128 KiB without CAP_SYS_ADMIN); and keeps none of them.
func TestPeersCopyOwnerMountStreamsOthersSpans(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	os.Chmod(root, 0o755)
	const size = 32 << 20 // 8 spans of 4 MiB: member 0 owns all of them once in 6561 runs
	sum := writeRandom(t, filepath.Join(root, "big.bin"), size, 8)
	g := newPeerGroup(t, root, 3)
	for i := 1; i < 3; i++ {
		g.serve(t, i, filepath.Join(t.TempDir(), "cache"))
	}
	cache0 := filepath.Join(t.TempDir(), "cache")
	m := startMount(t, g.origin.URL, cache0, g.flags("--serve", fmt.Sprintf("127.0.0.1:%d", g.ports[0]), "--peer-copy", "owner", "--prefetch", "0")...)
	if err := waitPort(g.ports[0], 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, err := hashFile(filepath.Join(m.Dir, "big.bin")); err != nil || got != sum {
		t.Fatalf("big.bin through the mount: %s, %v", got, err)
	}
	var reqs, bytes float64
	for u, st := range peerStatus(t, g.url(0)) {
		if u != "" {
			r, _ := st["requests"].(float64)
			b, _ := st["bytes"].(float64)
			reqs, bytes = reqs+r, bytes+b
		}
	}
	kept := cachedBytes(t, cache0, "big.bin")
	t.Logf("member 0 keeps %d bytes, read %v bytes from peers in %v requests", kept, bytes, reqs)
	// A read whose predecessors never came skips to its offset (the bytes between
	// read twice): a kernel readahead's worth more than the others' spans per skip.
	if others := size - kept; bytes == 0 || int64(bytes) < others || int64(bytes) > others+others/2 {
		t.Fatalf("member 0 keeps %d bytes and read %v from peers, want its own spans kept and the others' (%d bytes) read through", kept, bytes, others)
	}
	// How many requests that took depends on the order in which the kernel's
	// readahead reads arrive, so on the load: 8-14 for 12-29 MiB on a quiet
	// machine, 16 for 12 MiB on a busy one, against about two per MiB with a
	// request per read. The count is asserted where it is deterministic
	// (TestSequentialNotKeptReadStreams, cache), and logged here.
	t.Logf("%v MiB of others' spans cost %v peer requests", bytes/(1<<20), reqs)
}
