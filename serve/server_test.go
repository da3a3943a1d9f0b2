package serve

import (
	"bufio"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/origin"
	"github.com/cachegate/cachegate/internal/zerocopy"
	"golang.org/x/sys/unix"
)

// loopbackPair returns both ends of a TCP connection over loopback, closed when the
// test ends.
func loopbackPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// notsentLowat reads a socket's TCP_NOTSENT_LOWAT.
func notsentLowat(t *testing.T, nc net.Conn) int {
	t.Helper()
	raw, err := nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	raw.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// TestSendQueueBound checks that bound gives a socket the TCP_NOTSENT_LOWAT of the
// method it is asked for (handle asks once, for mainMethod), that "no bound" restores
// the kernel's default, and that TLS takes the bound of writes.
func TestSendQueueBound(t *testing.T) {
	_, nc := loopbackPair(t)
	s := &Server{log: slog.Default(), opts: Options{NotsentLowat: 64 << 10, NotsentLowatSendfile: 32 << 10}}
	c := &conn{s: s, nc: nc, tcp: nc.(*net.TCPConn)}
	for _, step := range []struct {
		m     zerocopy.Method
		tls   bool
		write int // Options.NotsentLowat before the call; 0 leaves it
		want  int
	}{
		{m: zerocopy.Mmap, want: 64 << 10},
		{m: zerocopy.Sendfile, want: 32 << 10},
		{m: zerocopy.Sendfile, want: 32 << 10},
		{m: zerocopy.Copy, want: 64 << 10},
		{m: zerocopy.Sendfile, tls: true, want: 64 << 10},
		{m: zerocopy.Mmap, write: -1, want: 0},
	} {
		if step.write != 0 {
			s.opts.NotsentLowat = step.write
		}
		c.isTLS = step.tls
		c.bound(step.m)
		if got := notsentLowat(t, nc); got != step.want || c.lowat != step.want {
			t.Errorf("after a %v body (tls %v): TCP_NOTSENT_LOWAT %d, conn records %d, want %d", step.m, step.tls, got, c.lowat, step.want)
		}
	}
}

// TestMainMethod pins which method's send-queue bound a connection keeps.
func TestMainMethod(t *testing.T) {
	for _, c := range []struct {
		transfer string
		e        egress
		tls      bool
		want     zerocopy.Method
	}{
		{"auto", egressSG, false, zerocopy.Sendfile},
		{"auto", egressSG, true, zerocopy.Mmap},
		{"auto", egressNoSG, false, zerocopy.Mmap},
		{"auto", egressLoopback, false, zerocopy.Sendfile},
		{"auto", egressLoopback, true, zerocopy.Mmap},
		{"sendfile", egressLoopback, false, zerocopy.Sendfile},
		{"copy", egressSG, false, zerocopy.Copy},
		{"mmap", egressSG, false, zerocopy.Mmap},
	} {
		s, err := New(nil, Options{Transfer: c.transfer})
		if err != nil {
			t.Fatal(err)
		}
		conn := &conn{s: s, egress: c.e, isTLS: c.tls}
		if got := conn.mainMethod(); got != c.want {
			t.Errorf("--transfer %s, %v, tls %v: keeps the bound of %v, want %v", c.transfer, c.e, c.tls, got, c.want)
		}
	}
}

// TestConnKeepsBound serves cached files with --transfer auto to a loopback client
// over one keep-alive connection and checks that the socket keeps sendfile's
// send-queue bound whichever method each body goes by (see mainMethod for why),
// and that X-Transfer names the method auto picked.
func TestConnKeepsBound(t *testing.T) {
	dir := t.TempDir()
	sizes := map[string]int{"small.bin": 4 << 10, "mid.bin": 100 << 10, "big.bin": 2 << 20}
	for name, size := range sizes {
		b := make([]byte, size)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o, err := origin.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(o, cache.Options{Dir: t.TempDir(), Limit: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := New(c, Options{Transfer: "auto", NotsentLowat: 64 << 10, NotsentLowatSendfile: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	client, nc := loopbackPair(t)
	done := make(chan struct{})
	go func() { s.handle(nc, false); close(done) }()
	defer func() { client.Close(); <-done }()

	br := bufio.NewReader(client)
	get := func(name string) string {
		t.Helper()
		if _, err := io.WriteString(client, "GET /"+name+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != int64(sizes[name]) || resp.StatusCode != 200 {
			t.Fatalf("GET /%s: status %d, %d bytes, %v", name, resp.StatusCode, n, err)
		}
		return resp.Header.Get("X-Transfer")
	}
	for name := range sizes {
		get(name) // fill the cache: a file not yet cached goes by copy
	}
	for _, step := range []struct {
		name, transfer string
		lowat          int
	}{
		{"mid.bin", "sendfile", 32 << 10},
		{"small.bin", "mmap", 32 << 10},
		{"big.bin", "sendfile", 32 << 10},
	} {
		if got := get(step.name); got != step.transfer {
			t.Fatalf("GET /%s: X-Transfer %q, want %q", step.name, got, step.transfer)
		}
		if got := notsentLowat(t, nc); got != step.lowat {
			t.Errorf("after /%s by %s: TCP_NOTSENT_LOWAT %d, want %d", step.name, step.transfer, got, step.lowat)
		}
	}
}
