package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
)

// forwardingOrigin stands in for the peer tier (Forwarder): reads without
// origin.NoForward "go to a peer" that answers only when gate closes, as a peer
// whose own fetch waits on this member would.
type forwardingOrigin struct {
	origin.Origin
	peer      atomic.Pointer[map[int64]bool] // chunks (of 64 KiB) "asked of a peer" (Forwards)
	gateAll   bool                           // gate the reads with NoForward too
	gate      chan struct{}
	gated     atomic.Int64 // reads that went to the gate
	noForward atomic.Int64 // reads a peer's request made (origin.NoForward)
	atZero    atomic.Int64 // reads from offset 0, of either kind
	atOne     atomic.Int64 // reads from the second chunk
}

func (f *forwardingOrigin) Forwards(p, version string, off, n int64) bool {
	peer := *f.peer.Load()
	for i := off >> 16; i <= (off+n-1)>>16; i++ {
		if peer[i] {
			return true
		}
	}
	return false
}

func (f *forwardingOrigin) ReadRange(ctx context.Context, p, v string, off, n int64) (io.ReadCloser, error) {
	switch off {
	case 0:
		f.atZero.Add(1)
	case 64 << 10:
		f.atOne.Add(1)
	}
	if origin.NoForward(ctx) {
		f.noForward.Add(1)
	}
	if f.gateAll || !origin.NoForward(ctx) {
		f.gated.Add(1)
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return f.Origin.ReadRange(ctx, p, v, off, n)
}

// startLocalFill opens a cache over a forwardingOrigin that asks a peer for the
// chunks in peer, and starts a local reader's fill of the first n bytes of a 1 MiB
// file, which waits at the gate.
func startLocalFill(t *testing.T, peer map[int64]bool, n int64) (*Cache, *forwardingOrigin, []byte, <-chan error) {
	f := newFixture(t)
	want := randomFile(t, f.originDir, "big", 1<<20, 7)
	// A fetch with no chunk asked of a peer reads under NoForward, as a peer's
	// request does: gate those too then, or it would not wait.
	fo := &forwardingOrigin{Origin: f.origin, gate: make(chan struct{}), gateAll: len(peer) == 0}
	fo.peer.Store(&peer)
	c, err := Open(fo, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	local, err := c.Open(context.Background(), "big")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Close() })
	localDone := make(chan error, 1)
	go func() {
		_, err := local.Fill(context.Background(), 0, n)
		localDone <- err
	}()
	t.Cleanup(func() { // first, so that a failed test does not leave the fetch waiting
		select {
		case <-fo.gate:
		default:
			close(fo.gate)
		}
	})
	waitFor(t, "the local reader's fetch to start", func() bool { return fo.gated.Load() > 0 })
	return c, fo, want, localDone
}

// Two members whose lists of the group differ each think the other owns a span.
// A reader on each starts a fetch through the other, and the other's request
// (origin.NoForward) must not wait on that fetch: it reads from the origin itself,
// or both wait until --peer-timeout.
func TestPeerRequestDoesNotWaitOnForwardedFetch(t *testing.T) {
	c, fo, want, localDone := startLocalFill(t, map[int64]bool{0: true}, 64<<10)

	ctx, peer := openAsPeer(t, c)
	if _, err := peer.Fill(ctx, 0, 64<<10); !errors.Is(err, ErrNotKept) {
		t.Fatalf("a peer's Fill of a chunk fetched through a peer: %v, want ErrNotKept (read it through)", err)
	}
	buf := make([]byte, 64<<10)
	if n, err := peer.ReadAt(ctx, buf, 0); err != nil || !bytes.Equal(buf[:n], want[:64<<10]) {
		t.Fatalf("a peer's read waited on the fetch through a peer, or got wrong bytes: %d bytes, %v", n, err)
	}
	if fo.noForward.Load() == 0 {
		t.Fatal("the peer's read did not go to the origin itself")
	}

	close(fo.gate)
	if err := <-localDone; err != nil {
		t.Fatalf("the local reader's fetch: %v", err)
	}
}

// The owner's own readers and a peer's request for the same cold chunk share one
// origin fetch: a fetch that reads from the origin itself is joined, not avoided.
func TestPeerRequestJoinsFetchFromTheOrigin(t *testing.T) {
	c, fo, want, localDone := startLocalFill(t, nil, 64<<10)

	ctx := origin.WithNoForward(context.Background())
	peer, err := c.Open(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peerDone := make(chan error, 1)
	buf := make([]byte, 64<<10)
	go func() {
		_, err := peer.ReadAt(ctx, buf, 0)
		peerDone <- err
	}()
	time.Sleep(50 * time.Millisecond) // let it join (a read of its own would show below)
	close(fo.gate)
	if err := <-localDone; err != nil {
		t.Fatal(err)
	}
	if err := <-peerDone; err != nil || !bytes.Equal(buf, want[:64<<10]) {
		t.Fatalf("peer's read: %v (or wrong bytes)", err)
	}
	if n := fo.atZero.Load(); n != 1 {
		t.Fatalf("%d origin reads of the first chunk, want 1 (the peer's request shares the fetch)", n)
	}
}

// A peer's request joins a chunk its member reads from the origin even behind one
// it asks a peer for (waits on ever lower offsets end), and reads a chunk asked of a
// peer itself: a group's owners fetch runs of chunks of several owners, and refusing
// those joins cost the origin a second read of them (TestPeersConcurrentColdReaders).
func TestPeerRequestJoinsChunksFromTheOrigin(t *testing.T) {
	c, fo, want, localDone := startLocalFill(t, map[int64]bool{0: true}, 128<<10) // chunk 0 from a peer, chunk 1 from the origin
	ctx, peer := openAsPeer(t, c)
	if _, err := peer.Fill(ctx, 0, 64<<10); !errors.Is(err, ErrNotKept) {
		t.Fatalf("a peer's Fill of the chunk fetched through a peer: %v, want ErrNotKept", err)
	}
	joined := make(chan error, 1)
	buf := make([]byte, 64<<10)
	go func() {
		_, err := peer.ReadAt(ctx, buf, 64<<10)
		joined <- err
	}()
	time.Sleep(50 * time.Millisecond) // let it join (a read of its own would show below)
	close(fo.gate)
	if err := <-localDone; err != nil {
		t.Fatal(err)
	}
	if err := <-joined; err != nil || !bytes.Equal(buf, want[64<<10:128<<10]) {
		t.Fatalf("peer's read of the second chunk: %v (or wrong bytes)", err)
	}
	if n := fo.atOne.Load(); n != 0 {
		t.Fatalf("%d origin reads from the second chunk, want 0 (the peer's request joins the fetch)", n)
	}
}

// A fetch whose chunks were all to be read from the origin reads them there even if
// a peer comes back up meanwhile: peers' requests may be waiting on it, and a retry
// through that peer could have it wait on them.
func TestFetchMarkedForTheOriginStaysThere(t *testing.T) {
	c, fo, want, localDone := startLocalFill(t, nil, 64<<10) // every chunk from the origin
	fo.peer.Store(&map[int64]bool{0: true})                  // a peer is back: it would be asked now
	close(fo.gate)
	if err := <-localDone; err != nil {
		t.Fatal(err)
	}
	if n := fo.noForward.Load(); n < 1 {
		t.Fatalf("the fetch marked for the origin asked with NoForward %d times, want at least 1", n)
	}
	got, err := readAll(c, "big")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read: %v", err)
	}
}

// openAsPeer opens "big" in c as a peer's request would (origin.NoForward), under a
// context that ends with the test or after 5 s; the handle closes with the test.
func openAsPeer(t *testing.T, c *Cache) (context.Context, *Handle) {
	t.Helper()
	ctx, cancel := context.WithTimeout(origin.WithNoForward(context.Background()), 5*time.Second)
	t.Cleanup(cancel)
	h, err := c.Open(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return ctx, h
}
