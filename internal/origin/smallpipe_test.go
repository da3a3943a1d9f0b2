package origin

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rawServer answers each request on a connection with what answer gives, in one
// write, so that the client's header buffer holds the first bytes of the body.
func rawServer(t *testing.T, answer func(*http.Request) []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					c.Write(answer(req))
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/"
}

// A pipe that holds less than the body bytes read with the header (a user over
// fs.pipe-user-pages-soft gets 2-slot, 8 KiB pipes, and F_SETPIPE_SZ fails: 64
// pooled 1 MiB pipes are that whole soft limit) must not lose them: WriteToFile
// wrote them into the pipe, took a partial write(2), and let the socket's later
// bytes land in their place, a chunk of wrong bytes with its CRC taken from them.
func TestSmallPipeKeepsHeaderBufferBytes(t *testing.T) {
	body := make([]byte, 256<<10)
	for i := range body {
		body[i] = byte(i*7 + i>>11)
	}
	u, _ := url.Parse(rawServer(t, func(*http.Request) []byte {
		head := fmt.Sprintf("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-%d/%d\r\nContent-Length: %d\r\n\r\n", len(body)-1, len(body), len(body))
		return append([]byte(head), body...)
	}))
	// The pool's next pipe is a small one (as alloc_pipe_info hands out over the soft limit).
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(p[0]), unix.F_SETPIPE_SZ, 8192); err != nil {
		t.Fatal(err)
	}
	putPipe(p)
	c := NewRawClient(u, 2*time.Second, 64<<10)
	req, _ := http.NewRequest("GET", u.String()+"f", nil)
	resp, err := c.Do(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var mu sync.Mutex
	const chunk = 64 << 10
	fw := resp.Body.(FileWriter)
	for off := int64(0); off < int64(len(body)); off += chunk {
		werr := fw.WriteToFile(f, off, chunk, &mu)
		got := make([]byte, chunk)
		f.ReadAt(got, off)
		if werr == nil && !bytes.Equal(got, body[off:off+chunk]) {
			t.Fatalf("WriteToFile of the chunk at %d succeeded with wrong bytes", off)
		}
		if werr != nil {
			t.Fatalf("chunk at %d: %v", off, werr)
		}
	}
}

// A connection whose answer brought bytes past its Content-Length is not pooled:
// they would be taken for the next answer's head. And a client told CloseIdle (a
// member that left) pools nothing more.
func TestRawPoolRefusesDirtyAndClosedConns(t *testing.T) {
	u, _ := url.Parse(rawServer(t, func(req *http.Request) []byte {
		extra := ""
		if req.URL.Path == "/dirty" {
			extra = "HTTP/1.1 200 OK\r\n" // a stray, as a broken server might send
		}
		return []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + extra)
	}))
	c := NewRawClient(u, 5*time.Second, 64<<10)
	get := func(p string) {
		t.Helper()
		req, _ := http.NewRequest("GET", u.String()+p[1:], nil)
		resp, err := c.Do(context.Background(), req, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		b := make([]byte, 5)
		if _, err := resp.Body.Read(b); err != nil && string(b) != "hello" {
			t.Fatalf("GET %s: %q, %v", p, b, err)
		}
		resp.Body.Close()
	}
	pooled := func() int {
		c.rc.mu.Lock()
		defer c.rc.mu.Unlock()
		return len(c.rc.idle)
	}
	get("/clean")
	if n := pooled(); n != 1 {
		t.Fatalf("%d connections pooled after a clean answer, want 1", n)
	}
	get("/dirty")
	if n := pooled(); n != 0 {
		t.Fatalf("%d connections pooled after an answer with bytes past its body, want 0", n)
	}
	get("/clean")
	c.CloseIdle()
	get("/clean")
	if n := pooled(); n != 0 {
		t.Fatalf("%d connections pooled after CloseIdle, want 0", n)
	}
}
