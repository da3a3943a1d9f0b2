package zerocopy

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return s.(*net.TCPConn), c.(*net.TCPConn)
}

func TestMethodsSendExactBytes(t *testing.T) {
	data := make([]byte, 3<<20+17)
	rand.NewChaCha8([32]byte{1}).Read(data)
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, data, 0o644)
	f, _ := os.Open(path)
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, len(data), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	hdr := []byte("HEADER\r\n\r\n")
	// Every case with the kernel's unbounded send queue and with LimitUnsent's
	// bound, under which sends stop short far more often.
	for _, lowat := range []int{0, 16 << 10} {
		for m := Method(0); m < NumMethods; m++ {
			for _, r := range [][2]int64{{0, int64(len(data))}, {4095, 1}, {1 << 20, 2<<20 + 17}, {5, 0}} {
				sendExact(t, data, f, mem, hdr, m, r[0], r[1], lowat)
			}
		}
	}
}

// sendExact sends n bytes of f (whose bytes are data, mapped at mem) from off after
// hdr by method m, over a loopback connection whose server end has TCP_NOTSENT_LOWAT
// set to lowat (when above 0), and checks what the client received.
func sendExact(t *testing.T, data []byte, f *os.File, mem, hdr []byte, m Method, off, n int64, lowat int) {
	t.Helper()
	srv, cli := pair(t)
	if lowat > 0 {
		if err := LimitUnsent(srv, lowat); err != nil {
			t.Fatal(err)
		}
		raw, _ := srv.SyscallConn()
		var got int
		raw.Control(func(fd uintptr) { got, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT) })
		if got != lowat {
			t.Fatalf("TCP_NOTSENT_LOWAT is %d after LimitUnsent(%d)", got, lowat)
		}
	}
	sock, err := NewSocket(srv, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(cli)
		got <- b
	}()
	switch m {
	case Copy:
		err = sock.SendCopy(hdr, f, off, n, make([]byte, 64<<10))
	case Mmap:
		err = sock.SendMmap(hdr, mem[off:off+n])
	case Sendfile:
		err = sock.SendFile(hdr, f, off, n)
	}
	if err != nil {
		t.Fatalf("%v %d+%d (lowat %d): %v", m, off, n, lowat, err)
	}
	srv.Close()
	b := <-got
	want := append(append([]byte{}, hdr...), data[off:off+n]...)
	if !bytes.Equal(b, want) {
		t.Fatalf("%v %d+%d (lowat %d): received %d bytes, want %d", m, off, n, lowat, len(b), len(want))
	}
	if m == Sendfile && n > 0 && (sock.Counts.Sendfile == 0 || sock.Counts.Write != 0) {
		t.Errorf("sendfile counted %+v", sock.Counts)
	}
	if m == Mmap && sock.Counts.Pread != 0 {
		t.Errorf("mmap counted %+v", sock.Counts)
	}
}

// A file shorter than promised must fail, never pad or hang.
func TestSendFileShortFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "short")
	os.WriteFile(path, []byte("12345"), 0o644)
	f, _ := os.Open(path)
	defer f.Close()
	srv, _ := pair(t)
	sock, _ := NewSocket(srv, time.Second)
	if err := sock.SendFile(nil, f, 0, 10); !errors.Is(err, ErrShortFile) {
		t.Fatalf("SendFile of a short file: %v, want ErrShortFile", err)
	}
	if err := sock.SendCopy(nil, f, 0, 10, make([]byte, 4)); !errors.Is(err, ErrShortFile) {
		t.Fatalf("SendCopy of a short file: %v, want ErrShortFile", err)
	}
}

// A client that stops reading costs a bounded wait, not a stuck goroutine.
func TestSendTimeoutOnStalledClient(t *testing.T) {
	data := make([]byte, 64<<20)
	path := filepath.Join(t.TempDir(), "big")
	os.WriteFile(path, data, 0o644)
	f, _ := os.Open(path)
	defer f.Close()
	srv, _ := pair(t) // the client never reads
	sock, _ := NewSocket(srv, 300*time.Millisecond)
	srv.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	start := time.Now()
	err := sock.SendFile(nil, f, 0, int64(len(data)))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled client: %v, want a deadline error", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %v to give up", time.Since(start))
	}
}

func TestParseMethod(t *testing.T) {
	for m := Method(0); m < NumMethods; m++ {
		if got, err := ParseMethod(m.String()); err != nil || got != m {
			t.Errorf("ParseMethod(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMethod("splice"); err == nil {
		t.Error("ParseMethod(splice) succeeded")
	}
}
