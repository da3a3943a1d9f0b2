package origin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// FileWriter is implemented by range readers that can move their bytes into a file
// without passing them through user memory (splice(2), copy_file_range(2)). The cache
// uses it for the fill path: a cold read then costs one kernel copy per byte instead of
// a socket-to-user copy and a user-to-page-cache copy.
type FileWriter interface {
	// WriteToFile writes the next n bytes of the range to f at off. mu is held
	// around each write into f and never while waiting for the origin: a
	// filesystem like ext4 lets one writer of a file in at a time, and waiters on
	// its inode lock spin in the kernel, where a caller's mutex makes them sleep.
	WriteToFile(f *os.File, off, n int64, mu sync.Locker) error
}

// ConnWriter is implemented by range readers that can move their bytes to a socket
// without passing them through user memory (splice: socket, pipe, socket). The
// server uses it for a read through to a plain-TCP client (--peer-copy owner): the
// bytes then cost no user-space copy on the way in or out.
type ConnWriter interface {
	// WriteToConn moves the next n bytes of the range to dst and returns how many
	// dst took, also on error, so that the caller can go on from there by other
	// means. An error of dst's comes back as a *SinkError: the caller then knows
	// its own connection failed, not the range's source.
	WriteToConn(dst ConnSink, n int64) (int64, error)
}

// ConnSink is the destination of a ConnWriter: a socket that takes bytes from a
// pipe, or from user memory for a source that cannot splice.
type ConnSink interface {
	io.Writer
	// SpliceFrom moves exactly n bytes from the pipe whose read end is fd to the
	// destination, waiting for room as long as the destination's deadlines allow.
	SpliceFrom(fd int, n int64) error
}

// SinkError wraps an error of the destination of a FileWriter or ConnWriter (the
// file or socket written), as against one of the source's: a reader that falls
// over to another source (the peer tier) does so on its source's errors only.
// errors.Is sees through it (the cache looks for ENOSPC).
type SinkError struct{ Err error }

func (e *SinkError) Error() string { return e.Err.Error() }
func (e *SinkError) Unwrap() error { return e.Err }

// RawClient is rawClient for the peer tier: GETs over plain HTTP/1.1 connections it
// owns, whose bodies can splice (FileWriter, ConnWriter). It does not retry beyond
// a pooled connection the server closed, nor check the answer: its caller does.
type RawClient struct{ rc *rawClient }

// NewRawClient returns a client of the plain http:// server at base. timeout bounds
// a dial, the wait for an answer's header, and each read of its body; maxHeader
// (when > 0) bounds the bytes read before an answer's header block ends, so a
// server sending megabytes of header is refused, not held.
func NewRawClient(base *url.URL, timeout time.Duration, maxHeader int64) *RawClient {
	rc := newRawClient(base, timeout)
	rc.maxHeader = maxHeader
	return &RawClient{rc}
}

// Do sends req (a GET to the client's server) and reads the answer's header. An
// answer with a Content-Length and no transfer coding has a body that reads exactly
// that many bytes, fails when they end early, and implements FileWriter and
// ConnWriter; another answer's body is net/http's, over a connection closed after
// it. progress, when not nil, is called with each count of the first kind of
// body's bytes that arrives (read or spliced), from the goroutine reading it.
func (c *RawClient) Do(ctx context.Context, req *http.Request, progress func(int64)) (*http.Response, error) {
	resp, conn, err := c.rc.roundTrip(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength < 0 || len(resp.TransferEncoding) > 0 {
		b := &closeConnBody{ReadCloser: resp.Body, c: conn, idle: c.rc.timeout, ctx: ctx}
		b.stop = context.AfterFunc(ctx, func() {
			b.cancelled.Store(true)
			conn.c.SetDeadline(time.Unix(1, 0))
		})
		resp.Body = b
		return resp, nil
	}
	b := newRawBody(ctx, c.rc, conn, resp.ContentLength, !resp.Close, c.rc.timeout, req.URL.Redacted())
	b.progress = progress
	resp.Body = b
	return resp, nil
}

// CloseIdle closes the pooled connections, and those of bodies still being read
// when they end (a member that left the group): the client pools none after it.
func (c *RawClient) CloseIdle() {
	c.rc.mu.Lock()
	idle := c.rc.idle
	c.rc.idle = nil
	c.rc.closed = true
	c.rc.mu.Unlock()
	for _, conn := range idle {
		conn.c.Close()
	}
}

// closeConnBody is a body of unknown length from a raw connection: the connection
// is closed with it, never pooled (where such a body ends is the server's word).
type closeConnBody struct {
	io.ReadCloser
	c    *rawConn
	idle time.Duration // each read's time to make progress
	// The request's context ends a read: cancelled is set and the deadline moved
	// to the past; stop unhooks that.
	ctx       context.Context
	cancelled atomic.Bool
	stop      func() bool
}

// Read gives each read idle time, as rawBody does: the header's deadline would
// otherwise bound the whole body. The context is checked after the deadline is
// set, so a cancellation racing with it still lands.
func (b *closeConnBody) Read(p []byte) (int, error) {
	b.c.c.SetReadDeadline(time.Now().Add(b.idle))
	if b.cancelled.Load() {
		return 0, context.Cause(b.ctx)
	}
	n, err := b.ReadCloser.Read(p)
	if err != nil && b.cancelled.Load() {
		err = context.Cause(b.ctx)
	}
	return n, err
}

func (b *closeConnBody) Close() error {
	b.stop()
	b.c.c.Close()
	return nil
}

// rawClient sends ranged GETs over plain HTTP/1.1 connections it owns, so that a body
// can be spliced from the socket into a file. net/http's response bodies hide the
// socket, and so force a copy through user memory (measured here: splicing 1 GiB from
// nginx into a cache file took 0.46-0.60 CPU-s, reading and pwriting it 0.52-2.4).
type rawClient struct {
	host    string // host:port to dial
	hostHdr string
	timeout time.Duration
	dialer  net.Dialer
	// maxHeader bounds the bytes read for an answer's header (0: no bound).
	maxHeader int64

	mu     sync.Mutex
	idle   []*rawConn
	closed bool // CloseIdle: pool nothing more
}

const maxIdleRaw = 32

type rawConn struct {
	c     *net.TCPConn
	br    *bufio.Reader // reads through lim
	lim   *capReader
	since time.Time // when it went back to the pool
}

// maxIdleAge is how long a pooled connection is used again: below the 60 s after
// which servers (cachegate's own, nginx's default 75 s) close idle ones, as
// net/http's IdleConnTimeout is set. A connection the server closed meanwhile
// costs a retry, and every dead one in a pool that sat idle would cost one.
const maxIdleAge = 45 * time.Second

// capReader reads from c, failing once left bytes have been read when left >= 0:
// the header bound, lifted once the header is read (net/http's readLimit). Bytes
// of the body read ahead into the buffer count too, so the bound is approximate by
// the buffer's 16 KiB, as net/http's is by its own.
type capReader struct {
	c    net.Conn
	left int64
}

var errHeaderTooLong = errors.New("answer's header block too long")

func (r *capReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, errHeaderTooLong
	}
	if r.left > 0 && int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.c.Read(p)
	if r.left > 0 {
		r.left -= int64(n)
	}
	return n, err
}

func newRawClient(u *url.URL, timeout time.Duration) *rawClient {
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	return &rawClient{host: host, hostHdr: u.Host, timeout: timeout, dialer: net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}}
}

// get returns a pooled connection young enough to be alive, or a new one (always a
// new one with fresh).
func (rc *rawClient) get(ctx context.Context, fresh bool) (*rawConn, bool, error) {
	if !fresh {
		var stale []*rawConn
		rc.mu.Lock()
		// The pool is a stack: the oldest are at the bottom. Drop those too old.
		i := 0
		for i < len(rc.idle) && time.Since(rc.idle[i].since) > maxIdleAge {
			i++
		}
		if i > 0 {
			stale = append(stale, rc.idle[:i]...)
			rc.idle = append(rc.idle[:0], rc.idle[i:]...)
		}
		var c *rawConn
		if n := len(rc.idle); n > 0 {
			c = rc.idle[n-1]
			rc.idle = rc.idle[:n-1]
		}
		rc.mu.Unlock()
		for _, s := range stale {
			s.c.Close()
		}
		if c != nil {
			return c, true, nil
		}
	}
	c, err := rc.dialer.DialContext(ctx, "tcp", rc.host)
	if err != nil {
		return nil, false, err
	}
	lim := &capReader{c: c, left: -1}
	return &rawConn{c: c.(*net.TCPConn), br: bufio.NewReaderSize(lim, 16<<10), lim: lim}, false, nil
}

func (rc *rawClient) put(c *rawConn) {
	c.c.SetDeadline(time.Time{})
	c.since = time.Now()
	rc.mu.Lock()
	if len(rc.idle) < maxIdleRaw && !rc.closed {
		rc.idle = append(rc.idle, c)
		c = nil
	}
	rc.mu.Unlock()
	if c != nil {
		c.c.Close()
	}
}

// roundTrip sends req on a pooled or new connection and reads the response header.
// A pooled connection that the server has closed meanwhile is retried once on a new
// one (not another pooled one, which may be as dead), as net/http does.
func (rc *rawClient) roundTrip(ctx context.Context, req *http.Request) (*http.Response, *rawConn, error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := rc.get(ctx, attempt > 0)
		if err != nil {
			return nil, nil, err
		}
		deadline := time.Now().Add(rc.timeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		c.c.SetDeadline(deadline)
		stop := context.AfterFunc(ctx, func() { c.c.SetDeadline(time.Unix(1, 0)) })
		err = req.Write(c.c)
		var resp *http.Response
		if err == nil {
			if rc.maxHeader > 0 {
				c.lim.left = rc.maxHeader
			}
			resp, err = http.ReadResponse(c.br, req)
			c.lim.left = -1
		}
		stop()
		if err != nil {
			c.c.Close()
			if reused && attempt == 0 && ctx.Err() == nil {
				continue
			}
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, nil, err
		}
		return resp, c, nil
	}
}

// readRange GETs the bytes want names from u (hdr carries the Range, conditional
// and credential headers) and checks the answer against want, retrying transient failures like HTTP.do, and returns a body that can
// splice. sign, when set, finishes each attempt's request (S3 signs it, with a fresh
// date each time).
func (rc *rawClient) readRange(ctx context.Context, u string, hdr http.Header, want rangeWant, sign func(*http.Request) (*http.Request, error)) (io.ReadCloser, error) {
	return retry(ctx, func() (io.ReadCloser, bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, false, err
		}
		req.Header = hdr.Clone()
		req.Header.Set("User-Agent", "cachegate")
		if sign != nil {
			if req, err = sign(req); err != nil {
				return nil, false, err
			}
		}
		resp, c, err := rc.roundTrip(ctx, req)
		if err != nil {
			return nil, true, err
		}
		if err := want.check(resp); err != nil {
			c.c.Close()
			var se *StatusError
			return nil, errors.As(err, &se) && se.Temporary(), err
		}
		return newRawBody(ctx, rc, c, want.n, !resp.Close, rc.timeout, u), false, nil
	})
}

// rawBody reads exactly n body bytes from a connection, returning it to the pool when
// the body is complete and the server keeps the connection open.
type rawBody struct {
	rc        *rawClient
	c         *rawConn
	left      int64
	keepAlive bool
	idle      time.Duration
	url       string
	err       error
	// The request's context ends a read in progress: when it is done, cancelled is
	// set and the connection's deadline moved to the past (stopCtx unhooks that).
	cancelled atomic.Bool
	stopCtx   func() bool
	ctx       context.Context
	// progress, when set, is told of each count of body bytes that arrives
	// (RawClient.Do).
	progress func(int64)
}

func (b *rawBody) arrived(n int64) {
	if n > 0 && b.progress != nil {
		b.progress(n)
	}
}

func newRawBody(ctx context.Context, rc *rawClient, c *rawConn, n int64, keepAlive bool, idle time.Duration, u string) *rawBody {
	b := &rawBody{rc: rc, c: c, left: n, keepAlive: keepAlive, idle: idle, url: u, ctx: ctx}
	b.stopCtx = context.AfterFunc(ctx, func() {
		b.cancelled.Store(true)
		c.c.SetDeadline(time.Unix(1, 0))
	})
	return b
}

// armDeadline gives the next read idle time to make progress, unless the context
// has ended (checked after the deadline is set, so a cancellation racing with it
// still lands).
func (b *rawBody) armDeadline() error {
	b.c.c.SetReadDeadline(time.Now().Add(b.idle))
	if b.cancelled.Load() {
		return b.fail(context.Cause(b.ctx))
	}
	return nil
}

func (b *rawBody) fail(err error) error {
	if b.err == nil {
		b.err = fmt.Errorf("%s: %w", b.url, err)
	}
	return b.err
}

func (b *rawBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	if err := b.armDeadline(); err != nil {
		return 0, err
	}
	n, err := b.c.br.Read(p)
	if err != nil && b.cancelled.Load() {
		err = context.Cause(b.ctx)
	}
	b.left -= int64(n)
	b.arrived(int64(n))
	if err == io.EOF && b.left > 0 {
		return n, b.fail(fmt.Errorf("body ended %d bytes early: %w", b.left, io.ErrUnexpectedEOF))
	}
	if err != nil && err != io.EOF {
		return n, b.fail(err)
	}
	if b.left == 0 {
		return n, io.EOF
	}
	return n, nil
}

// pipes recycles the pipes that carry spliced bytes from sockets to files.
var pipes = make(chan [2]int, 64)

func getPipe() ([2]int, error) {
	select {
	case p := <-pipes:
		return p, nil
	default:
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return p, err
	}
	// A larger pipe moves more per splice; the default limit allows 1 MiB.
	unix.FcntlInt(uintptr(p[0]), unix.F_SETPIPE_SZ, 1<<20)
	return p, nil
}

func putPipe(p [2]int) {
	select {
	case pipes <- p:
	default:
		unix.Close(p[0])
		unix.Close(p[1])
	}
}

// releasePipe recycles p, or closes it when stuck bytes of a failed transfer are
// still in it: such a pipe cannot be reused.
func releasePipe(p [2]int, stuck int64) {
	if stuck == 0 {
		putPipe(p)
		return
	}
	unix.Close(p[0])
	unix.Close(p[1])
}

// WriteToFile splices the next n body bytes into f at off: socket to pipe, pipe to
// file, never through user memory.
func (b *rawBody) WriteToFile(f *os.File, off, n int64, mu sync.Locker) error {
	if b.err != nil {
		return b.err
	}
	if n > b.left {
		return b.fail(fmt.Errorf("asked for %d bytes, %d left", n, b.left))
	}
	if n == 0 {
		return nil
	}
	// Bytes already read into the header buffer go first, written from there: a
	// pipe may hold as little as 8 KiB (an unprivileged user past
	// pipe-user-pages-soft gets small pipes), and bytes it did not take were lost.
	if k := min(int64(b.c.br.Buffered()), n); k > 0 {
		buf, _ := b.c.br.Peek(int(k))
		mu.Lock()
		_, err := f.WriteAt(buf, off)
		mu.Unlock()
		if err != nil {
			return &SinkError{err}
		}
		b.c.br.Discard(int(k))
		b.left -= k
		b.arrived(k)
		off, n = off+k, n-k
		if n == 0 {
			return nil
		}
	}
	p, err := getPipe()
	if err != nil {
		return b.fail(err)
	}
	inPipe := int64(0)
	defer func() { releasePipe(p, inPipe) }()
	raw, err := b.c.c.SyscallConn()
	if err != nil {
		return b.fail(err)
	}
	fd := int(f.Fd())
	// The pipe fills with all n bytes before they go to the file, when it can hold
	// them: one large write lets the page cache use large folios, which every later
	// read of the file copies faster. Reading a 1 GiB cache file from the page
	// cache took 82-84 ms filled this way and 97-101 ms filled with the socket's
	// pieces as they came. A pipe can run out of slots before bytes (each slot
	// holds one socket buffer fragment); then it is emptied early.
	for n > 0 {
		if inPipe < n {
			got, full, err := b.spliceIn(raw, p[1], n-inPipe, inPipe > 0)
			if err != nil {
				return err
			}
			inPipe += got
			b.left -= got
			b.arrived(got)
			if inPipe < n && !full {
				continue
			}
		}
		// A full pipe is emptied by a power of two, the rest kept for the next
		// write, so that the file's folios stay large and aligned.
		drain := inPipe
		if inPipe < n {
			drain = 1 << (bits.Len64(uint64(inPipe)) - 1)
		}
		mu.Lock()
		for drain > 0 {
			o := off
			m, err := unix.Splice(p[0], nil, fd, &o, int(drain), unix.SPLICE_F_MOVE)
			if err != nil {
				mu.Unlock()
				return &SinkError{err} // a file error (ENOSPC): the caller decides
			}
			off += m
			inPipe -= m
			n -= m
			drain -= m
		}
		mu.Unlock()
	}
	return nil
}

// WriteToConn splices the next n body bytes to dst: socket to pipe, pipe to dst,
// never through user memory. Each piece goes on as soon as it is in the pipe: a
// socket gains nothing from larger writes, as a file's folios do.
func (b *rawBody) WriteToConn(dst ConnSink, n int64) (int64, error) {
	if b.err != nil {
		return 0, b.err
	}
	if n > b.left {
		return 0, b.fail(fmt.Errorf("asked for %d bytes, %d left", n, b.left))
	}
	var written int64
	// Bytes already read into the header buffer go first, from there.
	if k := min(int64(b.c.br.Buffered()), n); k > 0 {
		buf, _ := b.c.br.Peek(int(k))
		if _, err := dst.Write(buf); err != nil {
			return 0, &SinkError{err}
		}
		b.c.br.Discard(int(k))
		b.left -= k
		b.arrived(k)
		written = k
	}
	if written == n {
		return written, nil
	}
	p, err := getPipe()
	if err != nil {
		return written, b.fail(err)
	}
	inPipe := int64(0)
	defer func() { releasePipe(p, inPipe) }()
	raw, err := b.c.c.SyscallConn()
	if err != nil {
		return written, b.fail(err)
	}
	for written < n {
		got, _, err := b.spliceIn(raw, p[1], n-written, false)
		if err != nil {
			return written, err
		}
		inPipe = got
		b.left -= got
		b.arrived(got)
		if err := dst.SpliceFrom(p[0], got); err != nil {
			return written, &SinkError{err}
		}
		inPipe = 0
		written += got
	}
	return written, nil
}

// spliceIn moves up to want body bytes from the socket into the pipe pw, waiting
// for the socket when it has none. With bytes already in the pipe (waited), it
// reports full instead of waiting when the socket has bytes the pipe cannot take.
func (b *rawBody) spliceIn(raw syscall.RawConn, pw int, want int64, waited bool) (got int64, full bool, err error) {
	if err := b.armDeadline(); err != nil {
		return 0, false, err
	}
	var serr error
	rerr := raw.Read(func(s uintptr) bool {
		splice := func() {
			got, serr = unix.Splice(int(s), nil, pw, nil, int(min(want, 1<<20)), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		}
		splice()
		if serr == unix.EAGAIN && waited {
			// Bytes queued on the socket that a second try cannot move either
			// (they may have just arrived) mean the pipe is full.
			if queued, err := unix.IoctlGetInt(int(s), unix.SIOCINQ); err == nil && queued > 0 {
				if splice(); serr == unix.EAGAIN {
					full, got, serr = true, 0, nil
				}
			}
		}
		return serr != unix.EAGAIN
	})
	if rerr != nil {
		if b.cancelled.Load() {
			rerr = context.Cause(b.ctx)
		}
		return 0, false, b.fail(rerr)
	}
	if serr != nil {
		return 0, false, b.fail(serr)
	}
	if got == 0 && !full {
		return 0, false, b.fail(fmt.Errorf("body ended %d bytes early: %w", b.left, io.ErrUnexpectedEOF))
	}
	return got, full, nil
}

func (b *rawBody) Close() error {
	if b.c == nil {
		return nil
	}
	// Bytes past the body already read would be taken for the next answer's.
	if b.stopCtx() && b.left == 0 && b.err == nil && b.keepAlive && b.c.br.Buffered() == 0 {
		b.rc.put(b.c)
	} else {
		b.c.c.Close()
	}
	b.c = nil
	return nil
}
