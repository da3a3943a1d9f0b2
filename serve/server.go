// Package serve is cachegate's HTTP/1.1 server: it serves the cache's namespace,
// filling the cache on a miss, and moves file bytes with sendfile, mmap+write or
// read+write, chosen per file and per connection (see choose). It parses requests and
// writes responses on the raw socket itself, because net/http adds a write per header,
// hides the socket behind wrappers that silently fall back to copying, and cost 2.9x
// nginx's CPU per GiB here (NOTES.md).
package serve

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/origin"
	"github.com/cachegate/cachegate/internal/peer"
	"github.com/cachegate/cachegate/internal/zerocopy"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configures a Server. Zero values take the defaults in parentheses.
type Options struct {
	// Transfer is "auto" (default), "sendfile", "mmap" or "copy".
	Transfer string
	// TLSConfig, when set, makes the server speak HTTPS (never by sendfile).
	TLSConfig *tls.Config
	// AuthToken, when set, is required as "Authorization: Bearer TOKEN".
	AuthToken         string
	MaxConns          int           // concurrent connections (10000)
	ReadHeaderTimeout time.Duration // to read a request header (10s)
	IdleTimeout       time.Duration // between keep-alive requests (60s)
	SendTimeout       time.Duration // a write that makes no progress (60s)
	MaxHeaderBytes    int           // a request header, all lines (16 KiB; 8 KiB a line)
	// NotsentLowat bounds the bytes a connection's socket holds that TCP has not
	// sent yet (TCP_NOTSENT_LOWAT) while a body is written from memory (the
	// mapping, a copy, TLS); NotsentLowatSendfile while one goes by sendfile. 0
	// means the default below, a negative value leaves the kernel's default (no
	// bound). See zerocopy.LimitUnsent.
	NotsentLowat         int
	NotsentLowatSendfile int
	Logger               *slog.Logger
	// AccessLog, when set, gets one line per request; Close closes it.
	AccessLog *AccessLog
	// Collectors are more metrics for /-/metrics (the mount's).
	Collectors []prometheus.Collector
	// Peers, when set, is the peer group the cache's origin reads through: its
	// members' state goes in /-/status and /-/metrics, and a request marked as a
	// peer's (peer.Header) is read from the origin itself (origin.WithNoForward).
	Peers *peer.Group
	// Hidden, when set, reports the paths the server answers 404 for and leaves out
	// of listings: `cachegate daemon` serves only the origins that set serve: true
	// of its one cache. It is asked of every request's path and must be cheap.
	Hidden func(p string) bool
}

// hidden reports whether p is one of Options.Hidden's paths.
func (s *Server) hidden(p string) bool { return s.opts.Hidden != nil && s.opts.Hidden(p) }

// visible is the entries of directory p that are not hidden.
func (s *Server) visible(p string, entries []origin.Entry) []origin.Entry {
	if s.opts.Hidden == nil {
		return entries
	}
	out := make([]origin.Entry, 0, len(entries))
	for _, e := range entries {
		if !s.opts.Hidden(origin.Join(p, e.Name)) {
			out = append(out, e)
		}
	}
	return out
}

// DefaultNotsentLowat and DefaultNotsentLowatSendfile are the send-queue bounds'
// defaults. The measurements behind the first are with zerocopy.LimitUnsent. The
// second differs because sendfile and writes from memory each ran far worse at
// the other's best bound (2026-11-29, this project's 2-core VM, servers side by side,
// alternating rounds, wrk -t1 -c32, requests/s and server CPU-µs per request).
// On the mixed 1 KiB-8 MiB set of BenchmarkServe over loopback, all by sendfile:
// 1434/s and 534 µs with 64 KiB against 1806/s and 242 µs with 32 KiB (five
// rounds; in another run 48 KiB came close to 32 KiB, 1565 against 1640/s). One
// 2.1 MiB file: 32 KiB 995/s, 48 KiB 978/s, 64 KiB 743/s, 80 KiB 800/s. Over a veth into
// a network namespace (scatter-gather on, MTU 1500): the mixed set 1403 against
// 1604/s, 1 MiB 1662 against 1810/s, 8 MiB 197 against 222/s. From the mapping
// the other way round: the mixed set 1597/s and 313 µs with 64 KiB, 1438/s and
// 513 µs with 48 KiB, 1375/s with 32 KiB (five and six rounds). A copy through
// user memory ran the same with 32 and 64 KiB (1607 and 1612/s).
const (
	DefaultNotsentLowat         = 64 << 10
	DefaultNotsentLowatSendfile = 32 << 10
)

// Server serves one cache over HTTP.
type Server struct {
	c      *cache.Cache
	opts   Options
	log    *slog.Logger
	auto   bool
	fixed  zerocopy.Method
	m      *metrics
	sem    chan struct{}
	closed atomic.Bool

	mu        sync.Mutex
	listeners []net.Listener
	main      net.Listener // the first listener Serve was given (ServeStatus's address)
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup

	// Counters for /-/status and metrics.
	bytesByMethod [zerocopy.NumMethods]atomic.Int64
	syscalls      struct {
		sync.Mutex
		zerocopy.Counts
	}
	requests atomic.Int64
	active   atomic.Int64

	routes routes // how each connection's bytes leave the host
}

// New returns a server for c.
func New(c *cache.Cache, opts Options) (*Server, error) {
	if opts.MaxConns <= 0 {
		opts.MaxConns = 10000
	}
	if opts.ReadHeaderTimeout <= 0 {
		opts.ReadHeaderTimeout = 10 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 60 * time.Second
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 60 * time.Second
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = 16 << 10
	}
	if opts.NotsentLowat == 0 {
		opts.NotsentLowat = DefaultNotsentLowat
	}
	if opts.NotsentLowatSendfile == 0 {
		opts.NotsentLowatSendfile = DefaultNotsentLowatSendfile
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{c: c, opts: opts, log: opts.Logger, sem: make(chan struct{}, opts.MaxConns), conns: map[net.Conn]struct{}{}}
	switch opts.Transfer {
	case "", "auto":
		s.auto = true
	default:
		m, err := zerocopy.ParseMethod(opts.Transfer)
		if err != nil {
			return nil, fmt.Errorf("--transfer: %v (or auto)", err)
		}
		s.fixed = m
	}
	s.m = newMetrics(s)
	return s, nil
}

// Serve accepts connections on ln until Close. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, false) }

// ServeAdmin accepts connections on ln that get /-/metrics, /-/healthz and
// /-/status only (--metrics ADDR), with the bearer token as on Serve's listeners,
// until Close. Their requests are neither counted in the request metrics nor logged
// in the access log: scrapes are not traffic.
func (s *Server) ServeAdmin(ln net.Listener) error { return s.serve(ln, true) }

func (s *Server) serve(ln net.Listener, adminOnly bool) error {
	if s.opts.TLSConfig != nil {
		ln = tls.NewListener(ln, s.opts.TLSConfig)
	}
	s.mu.Lock()
	s.listeners = append(s.listeners, ln)
	if !adminOnly && s.main == nil {
		s.main = ln
	}
	s.mu.Unlock()
	var backoff time.Duration
	for {
		// Take a connection slot before accepting: past MaxConns, new clients wait in
		// the kernel's backlog instead of costing a goroutine each.
		s.sem <- struct{}{}
		nc, err := ln.Accept()
		if err != nil {
			<-s.sem
			if s.closed.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.mu.Lock()
		s.conns[nc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, nc)
				s.mu.Unlock()
				nc.Close()
				<-s.sem
				s.wg.Done()
			}()
			s.handle(nc, adminOnly)
		}()
	}
}

func isTemporary(err error) bool {
	// EMFILE, ENFILE, ECONNABORTED: the process or the peer, not the listener.
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Close stops accepting, closes every connection, waits for their goroutines and
// closes the access log.
func (s *Server) Close() error {
	s.closed.Store(true)
	s.mu.Lock()
	for _, ln := range s.listeners {
		ln.Close()
	}
	for nc := range s.conns {
		nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if s.opts.AccessLog != nil {
		return s.opts.AccessLog.Close()
	}
	return nil
}

// conn is one client connection.
type conn struct {
	s     *Server
	nc    net.Conn
	sock  *zerocopy.Socket // nil for TLS
	br    *bufio.Reader
	buf   []byte // copy-path buffer, allocated on first use
	hdr   []byte // response header being built
	isTLS bool
	// egress: the interface the connection's bytes leave by, as auto needs it.
	egress egress
	// tcp is the TCP socket under nc (also under TLS), lowat the send-queue bound
	// set on it (0: the kernel's default).
	tcp   *net.TCPConn
	lowat int
	// ctx is the context of the request being served (see reqCtx); head is
	// whether it is a HEAD request, whose answers carry no body.
	ctx  *reqCtx
	head bool
	// rec is what the access log records of the request being served; remote is
	// the client's address without its port.
	rec    accessEntry
	remote string
	// adminOnly: a connection of ServeAdmin's listener.
	adminOnly bool
}

func (s *Server) handle(nc net.Conn, adminOnly bool) {
	if !adminOnly {
		s.active.Add(1)
		defer s.active.Add(-1)
	}
	c := &conn{s: s, nc: nc, adminOnly: adminOnly}
	if host, _, err := net.SplitHostPort(nc.RemoteAddr().String()); err == nil {
		c.remote = host
	}
	c.egress = s.routes.classify(nc.LocalAddr(), nc.RemoteAddr())
	c.tcp, _ = nc.(*net.TCPConn)
	if t, ok := nc.(*tls.Conn); ok {
		c.tcp, _ = t.NetConn().(*net.TCPConn)
		c.isTLS = true
	}
	c.bound(c.mainMethod())
	switch t := nc.(type) {
	case *net.TCPConn:
		sock, err := zerocopy.NewSocket(t, s.opts.SendTimeout)
		if err != nil {
			return
		}
		c.sock = sock
	case *tls.Conn:
		t.SetDeadline(time.Now().Add(s.opts.ReadHeaderTimeout))
		if err := t.Handshake(); err != nil {
			return
		}
	}
	c.br = bufio.NewReaderSize(nc, 8<<10)
	defer c.flushCounts()
	for first := true; ; first = false {
		// Wait for the next request for the idle timeout, then give its header the
		// header timeout: a slowloris client trickling bytes runs out of time.
		if !first {
			nc.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
			if _, err := c.br.Peek(1); err != nil {
				return
			}
		}
		nc.SetReadDeadline(time.Now().Add(s.opts.ReadHeaderTimeout))
		c.head = false
		c.rec = accessEntry{start: time.Now(), remote: c.remote}
		req, err := readRequest(c.br, s.opts.MaxHeaderBytes)
		if err != nil {
			// Fixed texts: the request line or header is not echoed back.
			switch {
			case errors.Is(err, errHeaderTooLarge):
				c.simple(431, "request header too large", false)
				c.logAccess(nil)
			case errors.Is(err, errBadRequest):
				s.log.Debug("bad request", "client", nc.RemoteAddr(), "err", err)
				c.simple(400, "bad request", false)
				c.logAccess(nil)
			}
			return
		}
		nc.SetReadDeadline(time.Time{})
		c.head = req.method == "HEAD"
		if req.hasBody() {
			// The server never reads a body: a client announcing one could trickle it
			// with no deadline, and before the token is checked. GET and HEAD carry
			// none (400); other methods get their 401 or 405, and the connection is
			// closed since the body is left unread.
			if req.method == "GET" || req.method == "HEAD" {
				c.simple(400, "a GET or HEAD request has no body", false)
				c.logAccess(req)
				c.lingerClose()
				return
			}
			req.keepAlive = false
		}
		nc.SetWriteDeadline(time.Now().Add(s.opts.SendTimeout))
		c.ctx = c.newReqCtx()
		keep := c.serve(req)
		c.ctx.end()
		if !adminOnly {
			s.requests.Add(1)
		}
		c.logAccess(req)
		if req.hasBody() {
			c.lingerClose()
			return
		}
		if !keep || !req.keepAlive || s.closed.Load() {
			return
		}
	}
}

// logAccess writes the access log's line for the request just answered (req is nil
// when it could not be parsed).
func (c *conn) logAccess(req *request) {
	al := c.s.opts.AccessLog
	if al == nil || c.adminOnly {
		return
	}
	e := &c.rec
	e.dur = time.Since(e.start)
	if e.status == 0 {
		e.status = 499 // nginx's "client closed request": it left before the answer
	}
	if req != nil {
		e.method, e.target, e.proto, e.referer, e.userAgent = req.method, req.target, req.proto, req.referer, req.userAgent
	}
	al.log(e)
}

// answered records the status of the answer being sent, for the metrics and the
// access log.
func (c *conn) answered(code int) {
	c.rec.status = code
	if !c.adminOnly {
		c.s.m.request(code)
	}
}

// sentBody counts n body bytes sent by method m.
func (c *conn) sentBody(m zerocopy.Method, n int64) {
	c.s.bytesByMethod[m].Add(n)
	c.rec.bytes += n
}

// lingerClose ends a connection whose client may still be sending a body the server
// did not read: closing with unread bytes makes the kernel send a reset, which can
// destroy the answer before the client reads it. So the sending side is shut first
// and what arrives is drained for a short, bounded time (net/http's
// closeWriteAndWait).
func (c *conn) lingerClose() {
	if c.tcp == nil || c.isTLS {
		return
	}
	c.tcp.CloseWrite()
	c.nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, c.nc, 256<<10)
}

// flushCounts adds the connection's syscall counts to the server's.
func (c *conn) flushCounts() {
	if c.sock == nil {
		return
	}
	c.s.syscalls.Lock()
	c.s.syscalls.Add(c.sock.Counts)
	c.s.syscalls.Unlock()
	c.sock.Counts = zerocopy.Counts{}
}

// Syscalls returns the transfer system calls counted so far by closed connections
// and by the requests of open ones that have finished.
func (s *Server) Syscalls() zerocopy.Counts {
	s.syscalls.Lock()
	defer s.syscalls.Unlock()
	return s.syscalls.Counts
}

// BytesByMethod returns the body bytes sent by each transfer method.
func (s *Server) BytesByMethod() map[string]int64 {
	out := map[string]int64{}
	for i := range s.bytesByMethod {
		out[zerocopy.Method(i).String()] = s.bytesByMethod[i].Load()
	}
	return out
}

// mainMethod is the method a connection is expected to send most of its bytes
// with, whose send-queue bound it keeps: the fixed method, or for auto sendfile
// (behind an interface with scatter-gather, and to loopback clients) and a write
// from memory otherwise (TLS, no scatter-gather). The bound is set once, at accept.
//
// Why the bound is not switched per body with the method: when loopback clients
// got complete bodies of 48 KiB-1 MiB by sendfile and larger ones from the mapping
// (until 2026-12-02), their connections kept the writes' 64 KiB bound, and those
// sendfile bodies cost the server about twice their CPU at it. Those files of the
// mixed set alone (2026-11-29, five rotated rounds of wrk -t1 -c32, server CPU-µs
// per request): auto 120-160, auto switching the bound per body 62-77,
// --transfer sendfile 71-91, mmap 92-106; requests/s alike (5719, 5859, 5494,
// 5709 on average). But on the whole mixed set switching moved fewer requests:
// 0.973x the mapping's (median of ten paired rounds by hand; one bound 1.009x),
// and in BenchmarkServe 0.81x (unpaired), 0.83x and 1.02x (paired) in three runs,
// where one bound ran 0.97-1.19x in four. Its CPU per mixed request was no lower
// either (345 against 338 µs by hand).
func (c *conn) mainMethod() zerocopy.Method {
	switch {
	case !c.s.auto:
		return c.s.fixed
	case c.egress != egressNoSG && !c.isTLS:
		return zerocopy.Sendfile
	}
	return zerocopy.Mmap
}

// bound sets the socket's send-queue bound for bodies sent with m (handle calls it
// once, for mainMethod). It remembers what it set, so that asking for the kernel's
// default on a fresh socket, or for the bound already set, costs no system call.
func (c *conn) bound(m zerocopy.Method) {
	want := c.s.opts.NotsentLowat
	if m == zerocopy.Sendfile && !c.isTLS {
		want = c.s.opts.NotsentLowatSendfile
	}
	want = max(want, 0) // 0 restores the kernel's default
	if want == c.lowat || c.tcp == nil {
		return
	}
	if err := zerocopy.LimitUnsent(c.tcp, want); err != nil {
		c.s.log.Debug("TCP_NOTSENT_LOWAT not set", "err", err)
		return
	}
	c.lowat = want
}

// write sends bytes that are not file bodies (headers of empty answers, listings).
func (c *conn) write(bufs ...[]byte) error {
	if c.sock != nil {
		return c.sock.Writev(bufs...)
	}
	for _, b := range bufs {
		if _, err := c.nc.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// ok answers 200 with body (dropped for HEAD) and extra header name/value pairs.
func (c *conn) ok(req *request, ct string, body []byte, extra ...string) bool {
	c.startHeader(200, req.keepAlive)
	c.header("Content-Type", ct)
	c.headerInt("Content-Length", int64(len(body)))
	for i := 0; i+1 < len(extra); i += 2 {
		c.header(extra[i], extra[i+1])
	}
	c.endHeader()
	c.answered(200)
	if req.method == "HEAD" {
		body = nil
	}
	return c.writeBody(body) && req.keepAlive
}

// simple answers with a short text body (none for HEAD).
func (c *conn) simple(code int, msg string, keep bool, extra ...string) bool {
	body := []byte(msg + "\n")
	c.startHeader(code, keep)
	for i := 0; i+1 < len(extra); i += 2 {
		c.header(extra[i], extra[i+1])
	}
	c.header("Content-Type", "text/plain; charset=utf-8")
	c.headerInt("Content-Length", int64(len(body)))
	c.endHeader()
	if c.head {
		body = nil
	}
	c.answered(code)
	return c.writeBody(body) && keep
}

// writeBody writes the header built in c.hdr and a short body held in memory.
func (c *conn) writeBody(body []byte) bool {
	if c.write(c.hdr, body) != nil {
		return false
	}
	c.rec.bytes += int64(len(body))
	return true
}

var dateCache atomic.Pointer[[2]string] // unix second, formatted

// httpDate returns the Date header value, formatted at most once a second.
func httpDate() string {
	now := time.Now()
	sec := strconv.FormatInt(now.Unix(), 10)
	if d := dateCache.Load(); d != nil && d[0] == sec {
		return d[1]
	}
	v := now.UTC().Format(timeFormat)
	dateCache.Store(&[2]string{sec, v})
	return v
}

const timeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

var statusText = map[int]string{
	200: "OK", 206: "Partial Content", 301: "Moved Permanently", 304: "Not Modified",
	400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
	405: "Method Not Allowed", 412: "Precondition Failed", 413: "Content Too Large",
	416: "Range Not Satisfiable",
	431: "Request Header Fields Too Large", 500: "Internal Server Error",
	501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}

func (c *conn) startHeader(code int, keep bool) {
	c.hdr = append(c.hdr[:0], "HTTP/1.1 "...)
	c.hdr = strconv.AppendInt(c.hdr, int64(code), 10)
	c.hdr = append(c.hdr, ' ')
	c.hdr = append(c.hdr, statusText[code]...)
	c.hdr = append(c.hdr, "\r\nServer: cachegate\r\nDate: "...)
	c.hdr = append(c.hdr, httpDate()...)
	c.hdr = append(c.hdr, "\r\n"...)
	if !keep {
		c.hdr = append(c.hdr, "Connection: close\r\n"...)
	}
}

func (c *conn) header(k, v string) {
	c.hdr = append(c.hdr, k...)
	c.hdr = append(c.hdr, ": "...)
	c.hdr = append(c.hdr, v...)
	c.hdr = append(c.hdr, "\r\n"...)
}

func (c *conn) headerInt(k string, v int64) {
	c.hdr = append(c.hdr, k...)
	c.hdr = append(c.hdr, ": "...)
	c.hdr = strconv.AppendInt(c.hdr, v, 10)
	c.hdr = append(c.hdr, "\r\n"...)
}

func (c *conn) endHeader() { c.hdr = append(c.hdr, "\r\n"...) }

// copyBuf returns the connection's buffer for the copy path.
func (c *conn) copyBuf() []byte {
	if c.buf == nil {
		c.buf = make([]byte, 256<<10)
	}
	return c.buf
}

// context returns the context for cache work on behalf of the request being served:
// it ends when the client goes away, the server closes the connection, or the
// request is answered.
func (c *conn) context() context.Context {
	if c.ctx == nil { // a conn driven by a test without handle
		c.ctx = c.newReqCtx()
	}
	return c.ctx
}

// reqCtx is a request's context. It is cancelled when its client goes away (the
// connection reads EOF or fails), when the server closes the connection, and when
// the request has been answered, so that origin work nobody waits for stops.
//
// Noticing a departed client takes a goroutine waiting for the socket to become
// readable (net/http's background read). That is started only when someone waits
// on Done: a request served from the cache never does, one that waits for the origin
// does. The watch peeks at the socket and reads nothing, so a pipelined request is
// left where it is (it also ends the watch: its client is there).
type reqCtx struct {
	c         *conn
	pipelined bool // the next request was already buffered: nothing to watch
	done      chan struct{}

	once    sync.Once     // starts the watch, or rules it out once the request ends
	stopped chan struct{} // closed when the watch ends; nil when none started

	mu  sync.Mutex
	err error // guarded by mu; context.Canceled once done is closed

	// vals holds the request's read hints (set before the request's cache work
	// starts, then only read); peerNote is set when bytes came from a peer.
	vals     context.Context
	peerNote atomic.Bool
}

func (c *conn) newReqCtx() *reqCtx {
	return &reqCtx{c: c, pipelined: c.br != nil && c.br.Buffered() > 0, done: make(chan struct{})}
}

func (r *reqCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

// Value answers the read hints (internal/origin hints.go) of a server with peers;
// without peers vals stays nil and a request allocates nothing for them.
func (r *reqCtx) Value(key any) any {
	if r.vals == nil {
		return nil
	}
	return r.vals.Value(key)
}

func (r *reqCtx) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *reqCtx) Done() <-chan struct{} {
	r.once.Do(r.watch)
	return r.done
}

// cancel ends the context. Err says context.Canceled whatever the reason, as
// context.Context's contract asks.
func (r *reqCtx) cancel() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = context.Canceled
		close(r.done)
	}
}

// watch starts the goroutine that cancels r when the client goes away. It runs
// inside r.once.
func (r *reqCtx) watch() {
	if r.pipelined || r.c.tcp == nil {
		return
	}
	raw, err := r.c.tcp.SyscallConn()
	if err != nil {
		return
	}
	r.stopped = make(chan struct{})
	go func() {
		defer close(r.stopped)
		gone := false
		err := raw.Read(func(fd uintptr) bool {
			var b [1]byte
			for {
				n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
				switch {
				case err == unix.EINTR:
					continue
				case err == unix.EAGAIN:
					return false // nothing yet: wait until the socket is readable
				case err != nil || n == 0: // reset, or end of stream
					gone = true
				}
				return true // gone, or the client sent its next request
			}
		})
		// A deadline error is end's doing; any other is the connection closed
		// under the watch (server shutdown).
		if gone || err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			r.cancel()
		}
	}()
}

// end finishes the request: it stops the watch (a read deadline in the past wakes
// it; handle sets the next one before reading again) and cancels the context.
func (r *reqCtx) end() {
	r.once.Do(func() {})
	if r.stopped != nil {
		r.c.nc.SetReadDeadline(time.Unix(1, 0))
		<-r.stopped
	}
	r.cancel()
}
