package origin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pipeSink is a ConnSink over one end of a socket pair, read by its other end.
type pipeSink struct {
	c       *net.TCPConn
	spliced int64
}

func (s *pipeSink) Write(b []byte) (int, error) { return s.c.Write(b) }

func (s *pipeSink) SpliceFrom(fd int, n int64) error {
	raw, err := s.c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Write(func(sfd uintptr) bool {
		for n > 0 {
			m, err := unix.Splice(fd, nil, int(sfd), nil, int(n), unix.SPLICE_F_NONBLOCK)
			if err == unix.EAGAIN {
				return false
			}
			if err != nil {
				serr = err
				return true
			}
			n -= m
			s.spliced += m
		}
		return true
	})
	if err != nil {
		return err
	}
	return serr
}

// RawClient's answers with a Content-Length splice into a file and to a socket,
// every byte right; the header bound refuses a huge header block; an answer of
// unknown length is read through net/http's body and its connection closed.
func TestRawClientSplices(t *testing.T) {
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i*13 + i>>11)
	}
	var chunked atomic.Bool
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/huge" {
			for i := range 16 {
				w.Header().Set(fmt.Sprintf("X-Junk-%d", i), strings.Repeat("j", 16<<10))
			}
		}
		if !chunked.Load() {
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		}
		w.Write(data)
	}))
	defer s.Close()
	u, _ := url.Parse(s.URL)
	c := NewRawClient(u, 5*time.Second, 64<<10)
	defer c.CloseIdle()
	get := func(p string) (*http.Response, *int64, error) {
		req, _ := http.NewRequest("GET", s.URL+p, nil)
		arrived := new(int64)
		resp, err := c.Do(context.Background(), req, func(n int64) { *arrived += n })
		return resp, arrived, err
	}

	// Into a file, in two pieces.
	resp, arrived, err := get("/f")
	if err != nil {
		t.Fatal(err)
	}
	fw, ok := resp.Body.(FileWriter)
	if !ok {
		t.Fatalf("the body (%T) is not a FileWriter", resp.Body)
	}
	f, _ := os.Create(filepath.Join(t.TempDir(), "f"))
	defer f.Close()
	var mu sync.Mutex
	if err := fw.WriteToFile(f, 0, 1<<20, &mu); err != nil {
		t.Fatal(err)
	}
	if err := fw.WriteToFile(f, 1<<20, int64(len(data))-1<<20, &mu); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if *arrived != int64(len(data)) {
		t.Errorf("progress reported %d bytes of %d", *arrived, len(data))
	}
	if got, _ := os.ReadFile(f.Name()); !bytes.Equal(got, data) {
		t.Fatalf("the file holds %d bytes, not the data", len(got))
	}

	// To a socket, on the connection just pooled.
	resp, _, err = get("/f")
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	far, _ := net.Dial("tcp", ln.Addr().String())
	near, _ := ln.Accept()
	got := make(chan []byte)
	go func() { b, _ := io.ReadAll(far); got <- b }()
	sink := &pipeSink{c: near.(*net.TCPConn)}
	w, err := resp.Body.(ConnWriter).WriteToConn(sink, int64(len(data)))
	near.Close()
	resp.Body.Close()
	if b := <-got; err != nil || w != int64(len(data)) || !bytes.Equal(b, data) {
		t.Fatalf("WriteToConn: %d bytes, %v; the far end got %d bytes, equal %v", w, err, len(b), bytes.Equal(b, data))
	}
	if sink.spliced < int64(len(data))/2 {
		t.Fatalf("only %d bytes went by splice", sink.spliced)
	}

	// A destination's failure is a SinkError.
	resp, _, err = get("/f")
	if err != nil {
		t.Fatal(err)
	}
	gone := errors.New("gone")
	_, err = resp.Body.(ConnWriter).WriteToConn(failSink{gone}, int64(len(data)))
	resp.Body.Close()
	var se *SinkError
	if !errors.As(err, &se) || !errors.Is(err, gone) {
		t.Fatalf("a failing destination gave %v, want a SinkError", err)
	}

	// Headers past the bound.
	if _, _, err := get("/huge"); !errors.Is(err, errHeaderTooLong) {
		t.Fatalf("256 KiB of headers: %v, want refused", err)
	}

	// No Content-Length: net/http's body, read whole, progress unreported.
	chunked.Store(true)
	resp, _, err = get("/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := resp.Body.(ConnWriter); ok {
		t.Fatal("a chunked body claims to splice")
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("chunked: %d bytes, %v", len(b), err)
	}
}

type failSink struct{ err error }

func (f failSink) Write([]byte) (int, error)   { return 0, f.err }
func (f failSink) SpliceFrom(int, int64) error { return f.err }
