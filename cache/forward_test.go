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
	forwards  bool // what Forwards answers
	gate      chan struct{}
	gated     atomic.Int64 // reads that went to the gate
	noForward atomic.Int64 // reads a peer's request made (origin.NoForward)
	atZero    atomic.Int64 // reads from offset 0, of either kind
}

func (f *forwardingOrigin) Forwards(p, version string, off, n int64) bool { return f.forwards }

func (f *forwardingOrigin) ReadRange(ctx context.Context, p, v string, off, n int64) (io.ReadCloser, error) {
	if off == 0 {
		f.atZero.Add(1)
	}
	if origin.NoForward(ctx) {
		f.noForward.Add(1)
	} else {
		f.gated.Add(1)
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return f.Origin.ReadRange(ctx, p, v, off, n)
}

// startLocalFill opens a cache over a forwardingOrigin answering forwards, and starts
// a local reader's fill of the first chunk of a 1 MiB file, which waits at the gate.
func startLocalFill(t *testing.T, forwards bool) (*Cache, *forwardingOrigin, []byte, <-chan error) {
	f := newFixture(t)
	want := randomFile(t, f.originDir, "big", 1<<20, 7)
	fo := &forwardingOrigin{Origin: f.origin, forwards: forwards, gate: make(chan struct{})}
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
		_, err := local.Fill(context.Background(), 0, 64<<10)
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
	c, fo, want, localDone := startLocalFill(t, true)

	ctx, cancel := context.WithTimeout(origin.WithNoForward(context.Background()), 5*time.Second)
	defer cancel()
	peer, err := c.Open(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
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
	c, fo, want, localDone := startLocalFill(t, false)

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
