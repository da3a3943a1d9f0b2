package peer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/etag"
)

// A healthy peer whose server closed the raw client's idle pooled connections (its
// 60 s idle timeout, a restart) must not be marked down on the next read: net/http
// expires idle connections (IdleConnTimeout 50 s) and retries a dead one; the raw
// pool kept them forever and retried only once, onto the next dead one.
func TestStalePooledConnsKeepPeerUp(t *testing.T) {
	data := testData()
	var started sync.WaitGroup
	gate := make(chan struct{})
	var arrived atomic.Int32
	s := peerServer(t, data, func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
		arrived.Add(1)
		<-gate // hold the answers so that the reads below use one connection each
		return false
	})
	g := testGroup(t, []string{"http://127.0.0.1:1", s.URL}, "http://127.0.0.1:1", func(o *Options) { o.Timeout = 3 * time.Second })
	o := g.Wrap(&fakeOrigin{data: data})
	const conns = 4
	// A span the peer owns (ownership hangs on the server's port).
	off := int64(-1)
	for sp := int64(0); sp < 10 && off < 0; sp++ {
		if segs := g.split("f", `"v1"`, sp*100, 100); segs[0].m != nil {
			off = sp * 100
		}
	}
	if off < 0 {
		t.Skip("no span owned by the peer")
	}
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			rc, err := o.ReadRange(context.Background(), "f", `"v1"`, off, 100) // the peer's span
			if err != nil {
				t.Error(err)
				return
			}
			io.ReadAll(rc)
			rc.Close()
		}()
	}
	started.Wait()
	for deadline := time.Now().Add(2 * time.Second); arrived.Load() < conns && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	close(gate)
	wg.Wait()
	if !g.Members()[1].Up() {
		t.Fatal("peer down before the test")
	}
	// The peer's server closes its idle connections (as cachegate's does after
	// --idle 60 s of nothing).
	s.CloseClientConnections()
	time.Sleep(50 * time.Millisecond)
	rc, err := o.ReadRange(context.Background(), "f", `"v1"`, off, 100)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data[off:off+100]) {
		t.Fatalf("read: %v", err)
	}
	if m := g.Members()[1]; !m.Up() {
		m.mu.Lock()
		why := m.lastErr
		m.mu.Unlock()
		t.Fatalf("a healthy peer was marked down because its idle pooled connections were closed: %s", why)
	}
}

// sendThrough to a TLS client (no zerocopy.Socket) and to any client when the
// reader is not a ConnWriter (--bwlimit's pacedReader hides it) reads the peer's
// body with Read and writes each buffer to the client: the peer's stall timer must
// hold while the client is slow, or a client slower than --peer-timeout marks a
// healthy peer down there.
func TestSlowClientReadPathKeepsPeerUp(t *testing.T) {
	const size, span = 4 << 20, 1 << 20
	data := patterned(size)
	s := peerServer(t, data, nil)
	g := testGroup(t, []string{"http://127.0.0.1:1", s.URL}, "http://127.0.0.1:1", func(o *Options) { o.Span = span })
	fo := &fakeOrigin{data: data}
	off := peerSpan(t, g, span, size/span)
	rc, err := g.Wrap(fo).ReadRange(context.Background(), "f", `"v1"`, off, span)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got bytes.Buffer
	buf := make([]byte, 256<<10) // serve's copy buffer
	for slow := 3; ; slow-- {
		k, err := io.ReadFull(rc, buf[:min(len(buf), span-got.Len())])
		got.Write(buf[:k])
		if err != nil || got.Len() == span {
			break
		}
		if slow > 0 {
			time.Sleep(400 * time.Millisecond) // the client's write takes longer than the 300 ms timeout
		}
	}
	if !bytes.Equal(got.Bytes(), data[off:off+span]) {
		t.Fatalf("got %d bytes", got.Len())
	}
	if peer := g.Members()[1]; !peer.Up() {
		t.Fatal("a slow client (read path) marked the peer down")
	}
}

// A peer body without a Content-Length (chunked: a proxy between members, another
// implementation) is read on the raw connection with the deadline roundTrip set
// for the header: each read gets --peer-timeout, as on net/http's path (the doc
// says --peer-timeout per 64 KiB), not the whole body one timeout from the request,
// which marked a healthy, steady peer down.
func TestChunkedSteadyPeerStaysUp(t *testing.T) {
	const size, span = 1 << 20, 1 << 20
	data := patterned(8 * size)
	s := peerServer(t, data, func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
		w.Header().Set("ETag", etag.For(`"v1"`))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, end, len(data)))
		w.WriteHeader(206) // no Content-Length: chunked
		for i := off; i <= end; i += 128 << 10 {
			w.Write(data[i:min(i+128<<10, end+1)])
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond) // 2.5 MiB/s, 128 KiB per 50 ms: far above the floor
		}
		return true
	})
	g := testGroup(t, []string{"http://127.0.0.1:1", s.URL}, "http://127.0.0.1:1", func(o *Options) { o.Span = span })
	fo := &fakeOrigin{data: data}
	off := peerSpan(t, g, span, 8)
	rc, err := g.Wrap(fo).ReadRange(context.Background(), "f", `"v1"`, off, span)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, data[off:off+span]) {
		t.Fatalf("read: %v", err)
	}
	if m := g.Members()[1]; !m.Up() {
		m.mu.Lock()
		why := m.lastErr
		m.mu.Unlock()
		t.Fatalf("a steady chunked peer was marked down: %s", why)
	}
}

// peerSpan returns the offset of a span of size span that the peer (member 1) owns.
func peerSpan(t *testing.T, g *Group, span, spans int64) int64 {
	for sp := int64(0); sp < spans; sp++ {
		if segs := g.split("f", `"v1"`, sp*span, span); segs[0].m != nil {
			return sp * span
		}
	}
	t.Skip("no span owned by the peer")
	return 0
}
