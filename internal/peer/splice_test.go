package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/etag"
	"github.com/cachegate/cachegate/internal/origin"
	"github.com/cachegate/cachegate/internal/zerocopy"
	"golang.org/x/sys/unix"
)

// spliceFile fills a temporary file from rc as the cache does (origin.FileWriter,
// a chunk at a time) and returns its bytes.
func spliceFile(t *testing.T, rc io.ReadCloser, n, chunk int64) ([]byte, error) {
	t.Helper()
	fw, ok := rc.(origin.FileWriter)
	if !ok {
		t.Fatalf("the peer reader (%T) is not an origin.FileWriter: a fill copies it through user memory", rc)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var mu sync.Mutex
	for off := int64(0); off < n; off += chunk {
		if err := fw.WriteToFile(f, off, min(chunk, n-off), &mu); err != nil {
			return nil, err
		}
	}
	return os.ReadFile(f.Name())
}

// sockSink is a server's side of a loopback TCP pair as serve's sendThrough uses
// it: a zerocopy.Socket taking bytes from a pipe or from memory.
type sockSink struct {
	*zerocopy.Socket
	spliced int64 // bytes that came by SpliceFrom
}

func (s *sockSink) Write(b []byte) (int, error) { return len(b), s.Writev(b) }

func (s *sockSink) SpliceFrom(fd int, n int64) error {
	s.spliced += n
	return s.Socket.SpliceFrom(fd, n)
}

// spliceConn sends n bytes of rc through a loopback TCP pair by WriteToConn and
// returns what the far end received, and the sink.
func spliceConn(t *testing.T, rc io.ReadCloser, n int64) ([]byte, *sockSink, error) {
	t.Helper()
	cw, ok := rc.(origin.ConnWriter)
	if !ok {
		t.Fatalf("the peer reader (%T) is not an origin.ConnWriter: a read through copies it through user memory", rc)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sock, err := zerocopy.NewSocket(server.(*net.TCPConn), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	sink := &sockSink{Socket: sock}
	w, err := cw.WriteToConn(sink, n)
	server.Close()
	b := <-got
	if int64(len(b)) != w {
		t.Errorf("WriteToConn said %d bytes went, the client got %d", w, len(b))
	}
	return b, sink, err
}

// A healthy plain-http peer's bytes splice: into a file (the fill of --peer-copy
// local) and to a socket (the read through of --peer-copy owner), every byte
// right, from the peer, with only this member's spans from the origin.
func TestPeerReaderSplices(t *testing.T) {
	// Spans larger than the raw client's header buffer (16 KiB), so that most
	// bytes come from the socket, not from what was read with the header.
	const size, span = 4 << 20, 256 << 10
	data := patterned(size)
	for _, mode := range []string{"file", "conn"} {
		t.Run(mode, func(t *testing.T) {
			s := peerServer(t, data, nil)
			g := testGroup(t, []string{"http://127.0.0.1:1", s.URL}, "http://127.0.0.1:1", func(o *Options) {
				o.Span, o.Timeout = span, 5*time.Second
			})
			fo := &fakeOrigin{data: data}
			o := g.Wrap(fo)
			rc, err := o.ReadRange(context.Background(), "f", `"v1"`, 0, size)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			var got []byte
			if mode == "file" {
				got, err = spliceFile(t, rc, size, 64<<10) // chunks of a quarter span
			} else {
				var sink *sockSink
				got, sink, err = spliceConn(t, rc, size)
				if sink.spliced < size/4 {
					t.Errorf("%d bytes went to the socket by splice, want most of the peer's", sink.spliced)
				}
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("got %d bytes, %v; want the data", len(got), err)
			}
			var own int64
			for _, sg := range g.split("f", `"v1"`, 0, size) {
				if sg.m == nil {
					own += sg.n
				}
			}
			peer := g.Members()[1]
			if fo.read != own || peer.bytes.Load() != size-own || !peer.Up() || own == 0 || own == size {
				t.Fatalf("origin read %d bytes (want %d), the peer sent %d (want %d), up %v", fo.read, own, peer.bytes.Load(), size-own, peer.Up())
			}
		})
	}
}

// The peer's body is the raw client's, which splices: a white-box check that the
// bytes above did not go through net/http.
func TestPeerBodyIsRaw(t *testing.T) {
	data := testData()
	s := peerServer(t, data, nil)
	g, _, _ := twoMembers(t, s, data)
	m := g.Members()[1]
	if m.raw == nil {
		t.Fatal("a plain http:// member has no raw client")
	}
	r := &reader{o: &peerOrigin{Origin: &fakeOrigin{data: data}, g: g}, ctx: context.Background(), p: "f", version: `"v1"`, tag: etag.For(`"v1"`)}
	rc, err := r.ask(m, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if !rc.(*peerBody).splices() {
		t.Fatalf("the peer's body (%T) cannot splice", rc.(*peerBody).rc)
	}
}

// Every way a peer can fail is read around in the splice paths too: the bytes come
// from the origin, every one right, and the peer is marked down (a chunked body
// that never ends is not a failure, but must not hold the read).
func TestPeerSpliceFailuresFallBack(t *testing.T) {
	data := testData()
	head := func(w http.ResponseWriter, off, end int64) {
		w.Header().Set("ETag", etag.For(`"v1"`))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, end, len(data)))
		w.Header().Set("Content-Length", fmt.Sprint(end-off+1))
	}
	wait := func(r *http.Request, d time.Duration) {
		select {
		case <-r.Context().Done():
		case <-time.After(d):
		}
	}
	cases := map[string]func(w http.ResponseWriter, r *http.Request, off, end int64) bool{
		"wrong etag": func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
			head(w, off, end)
			w.Header().Set("ETag", `"other"`)
			w.WriteHeader(206)
			w.Write(data[off : end+1])
			return true
		},
		"wrong range": func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
			head(w, off, end)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off+1, end, len(data)))
			w.WriteHeader(206)
			w.Write(data[off : end+1])
			return true
		},
		"short body": func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
			head(w, off, end)
			w.WriteHeader(206)
			w.Write(data[off : off+(end-off)/2])
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
			return true
		},
		"no answer": func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
			wait(r, 5*time.Second)
			return true
		},
		"stall mid-body": func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
			head(w, off, end)
			w.WriteHeader(206)
			w.Write(data[off : off+1])
			w.(http.Flusher).Flush()
			wait(r, 5*time.Second)
			return true
		},
		"trickle": func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
			head(w, off, end)
			w.WriteHeader(206)
			for i := off; i <= end; i++ {
				if _, err := w.Write(data[i : i+1]); err != nil {
					return true
				}
				w.(http.Flusher).Flush()
				wait(r, 50*time.Millisecond)
			}
			return true
		},
		"huge headers": func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
			for i := range 64 {
				w.Header().Set(fmt.Sprintf("X-Junk-%d", i), strings.Repeat("j", 16<<10))
			}
			return false
		},
		"chunked, unending": func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
			w.Header().Set("ETag", etag.For(`"v1"`))
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, end, len(data)))
			w.WriteHeader(206)
			w.Write(data[off : end+1])
			w.(http.Flusher).Flush()
			wait(r, 10*time.Second)
			return true
		},
	}
	for name, answer := range cases {
		for _, mode := range []string{"file", "conn"} {
			t.Run(name+"/"+mode, func(t *testing.T) {
				t.Parallel()
				s := peerServer(t, data, answer)
				g, _, o := twoMembers(t, s, data)
				start := time.Now()
				rc, err := o.ReadRange(context.Background(), "f", `"v1"`, 0, 1000)
				if err != nil {
					t.Fatal(err)
				}
				defer rc.Close()
				var got []byte
				if mode == "file" {
					got, err = spliceFile(t, rc, 1000, 100)
				} else {
					got, _, err = spliceConn(t, rc, 1000)
				}
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("got %d bytes, %v; want the data from the origin", len(got), err)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Fatalf("the failing peer held the read for %v", d)
				}
				if up := g.Members()[1].Up(); up != (name == "chunked, unending") {
					t.Fatalf("peer up: %v after %q", up, name)
				}
			})
		}
	}
}

// A client that goes away is not the peer's fault: WriteToConn returns the
// client's error (origin.SinkError) and the peer stays up.
func TestPeerSpliceClientGoneNotPeerDown(t *testing.T) {
	data := testData()
	s := peerServer(t, data, nil)
	g, _, o := twoMembers(t, s, data)
	rc, err := o.ReadRange(context.Background(), "f", `"v1"`, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	gone := errors.New("client gone")
	_, err = rc.(origin.ConnWriter).WriteToConn(failingSink{gone}, 1000)
	var se *origin.SinkError
	if !errors.As(err, &se) || !errors.Is(err, gone) {
		t.Fatalf("WriteToConn to a failing client: %v, want the client's error as an origin.SinkError", err)
	}
	if !g.Members()[1].Up() {
		t.Fatal("a client's failure marked the peer down")
	}
}

type failingSink struct{ err error }

func (f failingSink) Write([]byte) (int, error)        { return 0, f.err }
func (f failingSink) SpliceFrom(fd int, n int64) error { return f.err }

// A client slower than --peer-timeout is not the peer's fault: the peer's stall
// timer stops while the client's socket waits, so the peer stays up and every
// byte comes from it.
func TestPeerSpliceSlowClientNotPeerDown(t *testing.T) {
	const size, span = 4 << 20, 1 << 20
	data := patterned(size)
	s := peerServer(t, data, nil)
	g := testGroup(t, []string{"http://127.0.0.1:1", s.URL}, "http://127.0.0.1:1", func(o *Options) { o.Span = span })
	fo := &fakeOrigin{data: data}
	rc, err := g.Wrap(fo).ReadRange(context.Background(), "f", `"v1"`, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	sink := &slowSink{pause: 400 * time.Millisecond, slow: 3} // the timeout is 300 ms
	if _, err := rc.(origin.ConnWriter).WriteToConn(sink, size); err != nil || !bytes.Equal(sink.buf.Bytes(), data) {
		t.Fatalf("WriteToConn: %v, %d bytes; want the data", err, sink.buf.Len())
	}
	if peer := g.Members()[1]; !peer.Up() || peer.bytes.Load() != size-fo.read || fo.read == size {
		t.Fatalf("a slow client marked the peer down (up %v), or its bytes came from the origin (%d of %d from the peer)", peer.Up(), peer.bytes.Load(), size-fo.read)
	}
}

// slowSink takes its time over its first slow pieces of bytes.
type slowSink struct {
	pause time.Duration
	slow  int
	buf   bytes.Buffer
}

func (s *slowSink) wait() {
	if s.slow > 0 {
		s.slow--
		time.Sleep(s.pause)
	}
}

func (s *slowSink) Write(b []byte) (int, error) {
	s.wait()
	return s.buf.Write(b)
}

func (s *slowSink) SpliceFrom(fd int, n int64) error {
	s.wait()
	b := make([]byte, n)
	for got := 0; got < len(b); {
		k, err := unix.Read(fd, b[got:])
		if err == unix.EAGAIN {
			continue // the pipe is non-blocking and n bytes are in it
		}
		if err != nil {
			return err
		}
		got += k
	}
	s.buf.Write(b)
	return nil
}

// patterned returns size bytes whose pattern does not repeat within a span.
func patterned(size int) []byte {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	return data
}
