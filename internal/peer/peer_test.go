package peer

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/etag"
	"github.com/cachegate/cachegate/internal/origin"
)

func testGroup(t *testing.T, peers []string, self string, mod func(*Options)) *Group {
	t.Helper()
	o := Options{Peers: peers, Self: self, Span: 100, Timeout: 300 * time.Millisecond, OriginName: "http://origin/"}
	if mod != nil {
		mod(&o)
	}
	g, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

func urls(n int) []string {
	var u []string
	for i := range n {
		u = append(u, fmt.Sprintf("http://10.0.0.%d:8080", i+1))
	}
	return u
}

// Rendezvous ownership spreads keys evenly, and a fourth member takes about a
// quarter of the keys, all of them from the three others (none moves between
// them); removing it gives exactly those back.
func TestRendezvousSpreadAndStability(t *testing.T) {
	const keys = 20000
	three := testGroup(t, urls(3), urls(3)[0], nil)
	four := testGroup(t, urls(4), urls(4)[0], nil)
	count := map[string]int{}
	moved := 0
	for i := range keys {
		k := Key{Path: fmt.Sprintf("dir/file%d", i/16), Version: `"v1"`, Span: int64(i % 16)}
		a, b := three.Owner(k).URL, four.Owner(k).URL
		count[a]++
		if a != b {
			moved++
			if b != urls(4)[3] {
				t.Fatalf("key %v moved from %s to %s, not to the new member", k, a, b)
			}
		}
	}
	for u, n := range count {
		if n < keys/3*9/10 || n > keys/3*11/10 {
			t.Errorf("member %s owns %d of %d keys: not within 10%% of a third", u, n, keys)
		}
	}
	if frac := float64(moved) / keys; frac > 0.35 || frac < 0.15 {
		t.Errorf("a fourth member moved %.1f%% of the keys, want about 25%% (at most 35%%)", 100*frac)
	}
	// Every member computes the same owner whatever its own URL.
	other := testGroup(t, urls(3), urls(3)[2], nil)
	for i := range 1000 {
		k := Key{Path: "f", Version: "v", Span: int64(i)}
		if three.Owner(k).URL != other.Owner(k).URL {
			t.Fatalf("members disagree on the owner of %v", k)
		}
	}
}

// split cuts a range at span boundaries, merging runs of one source; spans this
// member owns, and those of a down member, come from the origin (nil).
func TestSplitAtSpans(t *testing.T) {
	g := testGroup(t, urls(3), urls(3)[0], nil)
	segs := g.split("f", "v", 50, 1000)
	var pos int64 = 50
	for i, s := range segs {
		if s.off != pos || s.n <= 0 {
			t.Fatalf("segment %d = %+v, want it at %d", i, s, pos)
		}
		pos += s.n
		if s.off/100 != (s.off+s.n-1)/100 && s.m != nil {
			// a merged run: every span in it has the same owner
			for sp := s.off / 100; sp <= (s.off+s.n-1)/100; sp++ {
				if g.Owner(Key{"f", "v", sp}) != s.m {
					t.Fatalf("segment %+v merges span %d of another owner", s, sp)
				}
			}
		}
		if s.m != nil && s.m.self {
			t.Fatalf("segment %+v is to be asked of this member itself", s)
		}
		if i > 0 && segs[i-1].m == s.m {
			t.Fatalf("segments %d and %d have one source and were not merged", i-1, i)
		}
	}
	if pos != 1050 {
		t.Fatalf("segments end at %d, want 1050", pos)
	}
	for _, m := range g.Members() {
		if !m.self {
			g.markDown(m, errors.New("test"))
		}
	}
	if segs := g.split("f", "v", 50, 1000); len(segs) != 1 || segs[0].m != nil {
		t.Fatalf("with every peer down: %+v, want one segment from the origin", segs)
	}
}

// fakeOrigin serves data for every path and counts the bytes it was asked for.
type fakeOrigin struct {
	data []byte
	mu   sync.Mutex
	read int64
}

func (f *fakeOrigin) Stat(context.Context, string) (origin.Entry, error) {
	return origin.Entry{Size: int64(len(f.data)), Version: `"v1"`}, nil
}
func (f *fakeOrigin) List(context.Context, string) ([]origin.Entry, error) { return nil, nil }
func (f *fakeOrigin) String() string                                       { return "fake" }
func (f *fakeOrigin) ReadRange(_ context.Context, p, v string, off, n int64) (io.ReadCloser, error) {
	f.mu.Lock()
	f.read += n
	f.mu.Unlock()
	return io.NopCloser(bytes.NewReader(f.data[off : off+n])), nil
}

// peerServer answers span reads as a member would, with answer deciding how.
func peerServer(t *testing.T, data []byte, answer func(w http.ResponseWriter, r *http.Request, off, end int64) bool) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/-/healthz" {
			w.Write([]byte("ok\n"))
			return
		}
		var off, end int64
		fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &off, &end)
		if r.Header.Get(Header) == "" || r.Header.Get("If-Match") != etag.For(`"v1"`) {
			w.WriteHeader(400)
			return
		}
		if answer != nil && answer(w, r, off, end) {
			return
		}
		w.Header().Set("ETag", etag.For(`"v1"`))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, end, len(data)))
		w.Header().Set("Content-Length", fmt.Sprint(end-off+1))
		w.WriteHeader(206)
		w.Write(data[off : end+1])
	}))
	t.Cleanup(s.Close)
	return s
}

// twoMembers is a group of this member and the peer at s, and the test data.
func twoMembers(t *testing.T, s *httptest.Server, data []byte) (*Group, *fakeOrigin, origin.Origin) {
	g := testGroup(t, []string{"http://127.0.0.1:1", s.URL}, "http://127.0.0.1:1", nil)
	fo := &fakeOrigin{data: data}
	return g, fo, g.Wrap(fo)
}

func testData() []byte {
	d := make([]byte, 1000)
	for i := range d {
		d[i] = byte(i * 7)
	}
	return d
}

// A healthy peer answers its spans: the bytes are right, the origin is asked only
// for this member's spans, and the read is noted as a peer's.
func TestReadThroughPeer(t *testing.T) {
	data := testData()
	s := peerServer(t, data, nil)
	g, fo, o := twoMembers(t, s, data)
	var note atomicBool
	ctx := origin.WithPeerNote(context.Background(), &note.b)
	mustRead(t, ctx, o, data)
	var own int64
	for _, sg := range g.split("f", `"v1"`, 0, 1000) {
		if sg.m == nil {
			own += sg.n
		}
	}
	if fo.read != own || own == 1000 {
		t.Fatalf("origin read %d bytes, want %d (this member's spans; not all of them)", fo.read, own)
	}
	if !note.b.Load() {
		t.Error("a read with a peer's bytes was not noted")
	}
	// A peer's own request (no-forward) never goes to a peer.
	fo.read = 0
	rc, _ := o.ReadRange(origin.WithNoForward(context.Background()), "f", `"v1"`, 0, 1000)
	io.ReadAll(rc)
	rc.Close()
	if fo.read != 1000 {
		t.Fatalf("a no-forward read took %d bytes from the origin, want all 1000", fo.read)
	}
}

// Every way a peer can fail is taken from the origin instead, the reader never sees
// it, and the peer is marked down, then probed back into use.
func TestPeerFailuresFallBack(t *testing.T) {
	data := testData()
	cases := map[string]func(w http.ResponseWriter, r *http.Request, off, end int64) bool{
		"wrong etag": func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
			w.Header().Set("ETag", `"other"`)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, end, len(data)))
			w.WriteHeader(206)
			w.Write(data[off : end+1])
			return true
		},
		"wrong total": func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
			w.Header().Set("ETag", etag.For(`"v1"`))
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, end, end))
			w.WriteHeader(206)
			w.Write(data[off : end+1])
			return true
		},
		"200 not 206": func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
			w.Header().Set("ETag", etag.For(`"v1"`))
			w.WriteHeader(200)
			w.Write(data)
			return true
		},
		"short body": func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
			w.Header().Set("ETag", etag.For(`"v1"`))
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, end, len(data)))
			w.Header().Set("Content-Length", fmt.Sprint(end-off+1))
			w.WriteHeader(206)
			w.Write(data[off : off+(end-off)/2])
			if hj, ok := w.(http.Hijacker); ok {
				c, _, _ := hj.Hijack()
				c.Close()
			}
			return true
		},
		"timeout": func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return true
		},
		"stall mid-body": func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
			w.Header().Set("ETag", etag.For(`"v1"`))
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, end, len(data)))
			w.Header().Set("Content-Length", fmt.Sprint(end-off+1))
			w.WriteHeader(206)
			w.Write(data[off : off+1])
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return true
		},
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			var broken sync.Mutex
			isBroken := true
			s := peerServer(t, data, func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
				broken.Lock()
				b := isBroken
				broken.Unlock()
				return b && answer(w, r, off, end)
			})
			g, _, o := twoMembers(t, s, data)
			g.Start()
			mustRead(t, context.Background(), o, data)
			peer := g.Members()[1]
			if peer.self || peer.Up() {
				t.Fatalf("peer %s still up after failing", peer.URL)
			}
			// Healed, it is probed back into use.
			broken.Lock()
			isBroken = false
			broken.Unlock()
			deadline := time.Now().Add(5 * time.Second)
			for !peer.Up() {
				if time.Now().After(deadline) {
					t.Fatal("peer not probed back into use within 5s")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// A peer with another version (412) is read around, but not marked down.
func TestPeerOtherVersionNotDown(t *testing.T) {
	data := testData()
	s := peerServer(t, data, func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
		w.WriteHeader(412)
		return true
	})
	g, _, o := twoMembers(t, s, data)
	rc, _ := o.ReadRange(context.Background(), "f", `"v1"`, 0, 1000)
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if !g.Members()[1].Up() {
		t.Fatal("a peer with another version was marked down")
	}
}

// A dns+ group takes its members from the name's addresses, again every
// ReResolve, and keeps them when a lookup fails.
func TestDNSReResolution(t *testing.T) {
	var mu sync.Mutex
	addrs := []string{"10.0.0.1", "10.0.0.2"}
	fail := false
	g := testGroup(t, []string{"dns+http://peers.example:8080"}, "http://10.0.0.1:8080", func(o *Options) {
		o.ReResolve = 50 * time.Millisecond
		o.Resolver = func(ctx context.Context, host string) ([]string, error) {
			mu.Lock()
			defer mu.Unlock()
			if host != "peers.example" {
				return nil, fmt.Errorf("asked for %q", host)
			}
			if fail {
				return nil, errors.New("SERVFAIL")
			}
			return addrs, nil
		}
	})
	g.Start()
	list := func() string {
		var u []string
		for _, m := range g.Members() {
			u = append(u, m.URL)
		}
		return strings.Join(u, ",")
	}
	if got := list(); got != "http://10.0.0.1:8080,http://10.0.0.2:8080" {
		t.Fatalf("members %s", got)
	}
	mu.Lock()
	addrs = []string{"10.0.0.3", "10.0.0.1", "10.0.0.2"}
	mu.Unlock()
	waitFor(t, func() bool { return list() == "http://10.0.0.1:8080,http://10.0.0.2:8080,http://10.0.0.3:8080" })
	mu.Lock()
	fail = true
	mu.Unlock()
	time.Sleep(200 * time.Millisecond)
	if got := list(); !strings.Contains(got, "10.0.0.3") {
		t.Fatalf("a failed lookup changed the members to %s", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOptionsChecked(t *testing.T) {
	for _, o := range []Options{
		{Peers: urls(2), Self: "http://10.0.0.9:8080"},           // self not in the list
		{Peers: urls(2), Self: "http://0.0.0.0:8080"},            // unreachable self
		{Peers: []string{"ftp://x:1"}, Self: "http://x:1"},       // not http
		{Peers: []string{"dns+http://name"}, Self: "http://x:1"}, // no port
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

type atomicBool struct{ b atomic.Bool }

// An https peer is trusted through --peer-ca; without it, its certificate is
// refused and its spans come from the origin.
func TestHTTPSPeerWithCA(t *testing.T) {
	data := testData()
	s := httptest.NewUnstartedServer(peerServer(t, data, nil).Config.Handler)
	s.StartTLS()
	t.Cleanup(s.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, withCA := range []bool{true, false} {
		g := testGroup(t, []string{"http://127.0.0.1:1", s.URL}, "http://127.0.0.1:1", func(o *Options) {
			if withCA {
				o.CAFile = ca
			}
		})
		fo := &fakeOrigin{data: data}
		mustRead(t, context.Background(), g.Wrap(fo), data)
		peer := g.Members()[1]
		if withCA && (peer.bytes.Load() == 0 || !peer.Up()) {
			t.Errorf("with --peer-ca: %d bytes from the https peer, up %v", peer.bytes.Load(), peer.Up())
		}
		if !withCA && (peer.bytes.Load() != 0 || peer.Up()) {
			t.Errorf("without --peer-ca: %d bytes from a peer whose certificate no one trusts, up %v", peer.bytes.Load(), peer.Up())
		}
	}
}

// With --peer-copy owner, KeepRun answers runs: kept exactly where this member owns
// the span (or its owner is down), each run ending where that changes.
func TestOwnerOnlyKeepRun(t *testing.T) {
	g := testGroup(t, urls(3), urls(3)[0], func(o *Options) { o.OwnerOnly = true })
	k := g.Wrap(&fakeOrigin{}).(ownerOnly)
	ownedBy := func(off int64) bool { return g.Owner(Key{"f", `"v1"`, off / 100}).self }
	for off := int64(0); off < 3000; {
		kept, until := k.KeepRun("f", `"v1"`, off, 3000)
		if until <= off || until > 3000 {
			t.Fatalf("KeepRun(%d) ends at %d", off, until)
		}
		for b := off; b < until; b += 50 {
			if ownedBy(b) != kept {
				t.Fatalf("KeepRun(%d) = %v up to %d, but byte %d is owned here: %v", off, kept, until, b, ownedBy(b))
			}
		}
		if until < 3000 && ownedBy(until) == kept {
			t.Fatalf("run from %d ends at %d, where nothing changes", off, until)
		}
		off = until
	}
	// A version without a tag is never read from peers: kept whole.
	if kept, until := k.KeepRun("f", "size:10", 0, 3000); !kept || until != 3000 {
		t.Fatalf("size-only version: %v until %d", kept, until)
	}
	// Local copy (the default) offers no Keeper at all.
	if _, ok := testGroup(t, urls(3), urls(3)[0], nil).Wrap(&fakeOrigin{}).(interface {
		KeepRun(string, string, int64, int64) (bool, int64)
	}); ok {
		t.Fatal("--peer-copy local keeps only some spans")
	}
}

// Forwards (cache.Forwarder) answers whether a read would ask a peer: a span this
// member owns, or whose owner is down, or a version without a tag, is read from the
// origin, and a peer's request may wait on such a fetch; any other may not.
func TestForwardsMatchesOwnership(t *testing.T) {
	g := testGroup(t, urls(3), urls(3)[0], func(o *Options) { o.Span = 100 })
	o := g.Wrap(&fakeOrigin{}).(*peerOrigin)
	var own, other int64 = -1, -1
	for s := int64(0); s < 30 && (own < 0 || other < 0); s++ {
		if g.Owner(Key{"f", `"v1"`, s}).self {
			own = s
		} else {
			other = s
		}
	}
	if own < 0 || other < 0 {
		t.Fatal("30 spans all on one side")
	}
	if o.Forwards("f", `"v1"`, own*100, 100) {
		t.Error("a span this member owns is forwarded")
	}
	if !o.Forwards("f", `"v1"`, other*100+30, 50) {
		t.Error("another member's span is not forwarded")
	}
	if !o.Forwards("f", `"v1"`, min(own, other)*100, (max(own, other)-min(own, other)+1)*100) {
		t.Error("a range over both is not forwarded")
	}
	if o.Forwards("f", "size:3000", other*100, 100) {
		t.Error("a version without a tag is forwarded")
	}
	g.markDown(g.Owner(Key{"f", `"v1"`, other}), errors.New("test"))
	if o.Forwards("f", `"v1"`, other*100, 100) {
		t.Error("a span whose owner is down is forwarded")
	}
}

// mustRead reads all of "f" (version "v1") through o under ctx, failing the test on
// an error or on bytes other than data.
func mustRead(t *testing.T, ctx context.Context, o origin.Origin, data []byte) {
	t.Helper()
	rc, err := o.ReadRange(ctx, "f", `"v1"`, 0, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v; want the data", len(got), err)
	}
}
