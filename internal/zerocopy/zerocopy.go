// Package zerocopy moves file bytes to a socket in the three ways the product is about,
// and counts the system calls each one makes:
//
//   - Copy: pread into a user buffer, then write — 4 context switches and 4 copies, two
//     of them by the CPU.
//   - Mmap: write (writev) straight from a mapping of the file — one CPU copy less.
//   - Sendfile: the kernel moves page-cache pages to the socket — 2 switches, and no CPU
//     copy when the NIC does scatter-gather DMA.
//
// All three put the response header in the same system call as the body where the
// kernel allows it: writev for Copy and Mmap, send with MSG_MORE before sendfile (the
// header then leaves in the same segment as the first body bytes, as TCP_CORK would do,
// without two extra setsockopt calls).
package zerocopy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Method is a way of moving file bytes to a socket.
type Method uint8

const (
	Copy Method = iota
	Mmap
	Sendfile
	NumMethods
)

var methodNames = [...]string{"copy", "mmap", "sendfile"}

func (m Method) String() string {
	if int(m) < len(methodNames) {
		return methodNames[m]
	}
	return fmt.Sprintf("Method(%d)", m)
}

// ParseMethod parses "copy", "mmap" or "sendfile".
func ParseMethod(s string) (Method, error) {
	for i, n := range methodNames {
		if s == n {
			return Method(i), nil
		}
	}
	return 0, fmt.Errorf("unknown transfer method %q: use copy, mmap or sendfile", s)
}

// Counts are system calls made to move bytes, by kind.
type Counts struct {
	Write    int64 `json:"write"` // write and writev
	Send     int64 `json:"send"`  // send (headers ahead of sendfile)
	Sendfile int64 `json:"sendfile"`
	Pread    int64 `json:"pread"`
}

// Total is the number of system calls counted.
func (c Counts) Total() int64 { return c.Write + c.Send + c.Sendfile + c.Pread }

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	c.Write += o.Write
	c.Send += o.Send
	c.Sendfile += o.Sendfile
	c.Pread += o.Pread
}

// Socket writes to a TCP connection through raw system calls, waiting for
// writability through Go's netpoller, so deadlines set on the connection still apply.
type Socket struct {
	raw    syscall.RawConn
	conn   *net.TCPConn
	idle   time.Duration
	Counts Counts
}

// NewSocket wraps c. A write that makes no progress for idle fails with a timeout
// (nginx's send_timeout): a slow or vanished client costs no more than its connection.
func NewSocket(c *net.TCPConn, idle time.Duration) (*Socket, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &Socket{raw: raw, conn: c, idle: idle}, nil
}

// LimitUnsent sets TCP_NOTSENT_LOWAT on c: a send waits while more than n bytes
// in the socket are not yet sent, instead of queueing up to the whole send buffer.
//
// Which process does TCP's work depends on it. Bytes queued beyond what the
// receiver's window allows are transmitted later, when an ACK opens the window,
// in whatever context receives that ACK; on loopback that is the client's receive
// call, and the client pays for the server's transmission and for its own
// delivery. With little queued, the server's next send transmits in its own time.
// On a NIC it also keeps the kernel memory a slow client pins small.
//
// Measured on this project's 2-core VM (2026-11-29; wrk -t1 -c32, servers side by
// side on the same cached files, requests/s, wrk at 100% of a core in every run):
// 1 MiB by sendfile, no bound 1811/1880, 32 KiB 2028/2064, 64 KiB 2054/1899,
// 128 KiB 2041/2028/2038/1756, 256 KiB 1941/1874, 512 KiB 1381/1769; nginx in the
// same rounds 1777-1888. With 128 KiB the server's CPU rose (87 -> 175 ticks in
// 3 s) and wrk's system time fell (2.24 -> 2.09 s). From the mapping
// (serve --transfer auto on loopback), 64 KiB against no bound: 1 MiB 1423-1574/s
// against 1339-1457/s over three rounds (nginx 1496-1571/s), the mixed 1 KiB-8 MiB
// set of BenchmarkServe 1977-2174/s against 1721-1860/s over four. A cached 1 GiB
// file to one curl cost the server the same CPU with or without it (91-141 vs
// 98-153 ticks for two downloads).
func LimitUnsent(c *net.TCPConn, n int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, n)
	}); err != nil {
		return err
	}
	return serr
}

// wait is called when the socket buffer is full: it renews the write deadline, since
// the last call made progress, and tells the netpoller to wait for writability.
func (s *Socket) wait() bool {
	if s.idle > 0 {
		s.conn.SetWriteDeadline(time.Now().Add(s.idle))
	}
	return false
}

// ErrShortFile reports a file that ended before the bytes a response promised: the
// connection must be closed, since its Content-Length cannot be met.
var ErrShortFile = errors.New("file shorter than the response promised")

// each calls step until it reports done or fails, waiting for writability when the
// socket buffer is full (EAGAIN) and retrying interrupted calls.
func (s *Socket) each(step func(fd int) (done bool, err error)) error {
	var werr error
	err := s.raw.Write(func(fd uintptr) bool {
		for {
			done, err := step(int(fd))
			switch {
			case err == unix.EAGAIN:
				return s.wait()
			case err == unix.EINTR:
				continue
			case err != nil:
				werr = err
				return true
			case done:
				return true
			}
		}
	})
	if err != nil {
		return err
	}
	return werr
}

// Writev writes every byte of bufs, in as few writev calls as the socket allows.
func (s *Socket) Writev(bufs ...[]byte) error {
	iov := make([][]byte, 0, len(bufs))
	for _, b := range bufs {
		if len(b) > 0 {
			iov = append(iov, b)
		}
	}
	if len(iov) == 0 {
		return nil
	}
	return s.each(func(fd int) (bool, error) {
		n, err := writev(fd, iov)
		s.Counts.Write++
		if err != nil {
			return false, err
		}
		iov = consume(iov, n)
		return len(iov) == 0, nil
	})
}

func writev(fd int, iov [][]byte) (int, error) {
	if len(iov) == 1 {
		return unix.Write(fd, iov[0])
	}
	if len(iov) > 1024 { // IOV_MAX
		iov = iov[:1024]
	}
	return unix.Writev(fd, iov)
}

// consume drops the first n bytes from iov.
func consume(iov [][]byte, n int) [][]byte {
	for n > 0 && len(iov) > 0 {
		if n >= len(iov[0]) {
			n -= len(iov[0])
			iov = iov[1:]
			continue
		}
		iov[0] = iov[0][n:]
		n = 0
	}
	return iov
}

// SendMmap writes hdr and then mem in writev calls: the kernel copies straight from
// the mapping, and a page it cannot read is an EFAULT error, never a signal.
func (s *Socket) SendMmap(hdr, mem []byte) error {
	return s.Writev(hdr, mem)
}

// SendCopy writes hdr and then n bytes of f from off, read into buf: the baseline.
// The header goes out with the first block in one writev.
func (s *Socket) SendCopy(hdr []byte, f *os.File, off, n int64, buf []byte) error {
	first := true
	for n > 0 || first {
		k := int(min(n, int64(len(buf))))
		m, err := f.ReadAt(buf[:k], off)
		s.Counts.Pread++
		if m < k {
			if err == nil || err == io.EOF {
				err = ErrShortFile
			}
			return err
		}
		if first {
			err = s.Writev(hdr, buf[:m])
			first = false
		} else {
			err = s.Writev(buf[:m])
		}
		if err != nil {
			return err
		}
		off += int64(m)
		n -= int64(m)
	}
	return nil
}

// SendFile sends hdr with MSG_MORE, so it waits for the body, and then n bytes of f
// from off by sendfile with exact counts (a count past the end of the file can stall
// keep-alive connections: golang/go#41513). It returns ErrShortFile when the file
// ends early.
func (s *Socket) SendFile(hdr []byte, f *os.File, off, n int64) error {
	if err := s.SendHeader(hdr, n > 0); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	src := int(f.Fd())
	return s.each(func(fd int) (bool, error) {
		m, err := unix.Sendfile(fd, src, &off, int(min(n, 1<<30)))
		s.Counts.Sendfile++
		if m > 0 {
			n -= int64(m)
		}
		if err != nil {
			return false, err
		}
		if m == 0 {
			return false, ErrShortFile
		}
		return n == 0, nil
	})
}

// SendHeader sends hdr, with MSG_MORE when a body follows (more): the header then
// waits for the body's first bytes and leaves in the same segment.
func (s *Socket) SendHeader(hdr []byte, more bool) error {
	if len(hdr) == 0 {
		return nil
	}
	flags := unix.MSG_NOSIGNAL
	if more {
		flags |= unix.MSG_MORE
	}
	return s.each(func(fd int) (bool, error) {
		m, err := unix.SendmsgN(fd, hdr, nil, nil, flags)
		s.Counts.Send++
		if err != nil {
			return false, err
		}
		hdr = hdr[m:]
		return len(hdr) == 0, nil
	})
}

// SpliceFrom moves exactly n bytes from the pipe whose read end is pipe to the
// socket by splice(2): the pipe's pages are handed to the socket, not copied (a
// read through from a peer, spliced from its socket into the pipe). The calls
// count as writes. A pipe that runs dry early is the caller's error.
func (s *Socket) SpliceFrom(pipe int, n int64) error {
	if n <= 0 {
		return nil
	}
	return s.each(func(fd int) (bool, error) {
		m, err := unix.Splice(pipe, nil, fd, nil, int(min(n, 1<<30)), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		s.Counts.Write++
		if m > 0 {
			n -= m
		}
		if err != nil {
			return false, err
		}
		if m == 0 {
			return false, fmt.Errorf("splice to socket: pipe empty with %d bytes to go", n)
		}
		return n == 0, nil
	})
}

// WriterSend moves bytes to a connection without a raw socket (TLS): Mmap writes
// from the mapping, anything else reads into buf. TLS never uses sendfile: the bytes
// must be encrypted in user space.
func WriterSend(w io.Writer, m Method, hdr []byte, f *os.File, mem []byte, off, n int64, buf []byte) error {
	if len(hdr) > 0 {
		if _, err := w.Write(hdr); err != nil {
			return err
		}
	}
	if m == Mmap && mem != nil {
		_, err := w.Write(mem[off : off+n])
		return err
	}
	for n > 0 {
		k := int(min(n, int64(len(buf))))
		got, err := f.ReadAt(buf[:k], off)
		if got < k {
			if err == nil || err == io.EOF {
				err = ErrShortFile
			}
			return err
		}
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		off += int64(k)
		n -= int64(k)
	}
	return nil
}
