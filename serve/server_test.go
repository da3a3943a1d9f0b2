package serve

import (
	"log/slog"
	"net"
	"testing"

	"github.com/cachegate/cachegate/internal/zerocopy"
	"golang.org/x/sys/unix"
)

// TestSendQueueBound checks that a connection's TCP_NOTSENT_LOWAT follows the method
// of the body it sends, that "no bound" restores the kernel's default, and that TLS
// keeps the bound of writes.
func TestSendQueueBound(t *testing.T) {
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
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	lowat := func() int {
		raw, _ := nc.(*net.TCPConn).SyscallConn()
		var v int
		var gerr error
		raw.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT) })
		if gerr != nil {
			t.Fatal(gerr)
		}
		return v
	}
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
		if got := lowat(); got != step.want || c.lowat != step.want {
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
		{"auto", egressLoopback, false, zerocopy.Mmap},
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
