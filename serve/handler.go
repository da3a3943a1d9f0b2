package serve

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/etag"
	"github.com/cachegate/cachegate/internal/origin"
	"github.com/cachegate/cachegate/internal/zerocopy"
)

// smallBody is the largest body auto sends from the mapping with the header in one
// writev; larger complete bodies go by sendfile. Measured on this project's 2-core VM,
// wrk -t1 -c32 on loopback against `serve --transfer mmap|sendfile`, two runs each,
// requests/s: 2 KiB 72k/67k vs 63k/57k, 4 KiB 67k/60k vs 62k/60k, 8 KiB 60k/64k vs
// 53k/60k, 12 KiB 56k/63k vs 53k/67k (even), 16 KiB 44k/41k vs 54k/68k, 32 KiB
// 43k/32k vs 47k/59k. One writev beats send+sendfile up to about 12 KiB. Through an
// interface with scatter-gather (BenchmarkEgress: a veth into a network namespace,
// two runs) the two were even or sendfile ahead from 16 to 64 KiB (requests/s mmap ÷
// sendfile 0.74-1.02) and sendfile clearly ahead from 128 KiB to 1 MiB (0.73-0.80,
// with 40-60% less server CPU per request), so the same threshold holds there. At 8 MiB
// the mapping moved more (1.19-1.54) for more CPU per request; a veth's receiver
// copies on this host's CPUs, as loopback's does, so that is not taken as a rule
// for NICs, which take sendfile's pages by DMA. Rerun twice with the send queue
// bounded (zerocopy.LimitUnsent, 2026-11-29), mmap ÷ sendfile, scatter-gather on:
// 16 KiB 1.04/1.07, 32 KiB 1.33/1.08, 64 KiB 1.34/1.02, 128 KiB 1.26/0.88, 256 KiB
// 1.12/0.69, 1 MiB 1.03/0.92, 8 MiB 1.13/1.12; off: 16 KiB 0.89/0.92, 32 KiB
// 0.87/0.87, 64 KiB 1.00/0.95, 128 KiB 0.95/1.03, 256 KiB 1.16/1.02, 1 MiB
// 1.07/1.18, 8 MiB 1.54/2.10. The two runs disagree from 32 to 256 KiB with
// scatter-gather, so the rules stay as measured before.
const smallBody = 12 << 10

// segment is how much of a body one send covers: the cache fills and the server
// sends in steps of this size, so a cold file streams as its chunks arrive.
const segment = 8 << 20

// serve answers one request. It returns whether the connection may be kept.
func (c *conn) serve(req *request) bool {
	if !c.adminOnly {
		start := time.Now()
		defer func() { c.s.m.latency.Observe(time.Since(start).Seconds()) }()
	}
	target := req.target
	if !strings.HasPrefix(target, "/") {
		// Absolute form (a proxy-style request): use its path.
		u, err := url.Parse(target)
		if err != nil || u.Scheme == "" || !strings.HasPrefix(u.EscapedPath(), "/") {
			return c.simple(400, "request target must be a path", false)
		}
		target = u.RequestURI()
	}
	rawPath, query, _ := strings.Cut(target, "?")
	if strings.HasPrefix(rawPath, "/-/") {
		return c.admin(req, rawPath)
	}
	if c.adminOnly {
		return c.simple(404, "not found: this address serves /-/metrics, /-/healthz and /-/status only", req.keepAlive)
	}
	if c.s.opts.AuthToken != "" && !c.authorized(req) {
		return c.unauthorized(req)
	}
	if c.s.opts.Peers != nil {
		c.peerHints(req)
	}
	if req.method != "GET" && req.method != "HEAD" {
		c.startHeader(405, req.keepAlive)
		c.header("Allow", "GET, HEAD")
		c.headerInt("Content-Length", 0)
		c.endHeader()
		c.answered(405)
		return c.write(c.hdr) == nil && req.keepAlive
	}
	p, err := cleanURLPath(rawPath)
	if err != nil {
		return c.simple(400, "bad path: "+err.Error(), req.keepAlive)
	}
	if c.s.hidden(p) {
		return c.simple(404, "not found", req.keepAlive)
	}
	if p == "" || strings.HasSuffix(rawPath, "/") {
		return c.directory(req, rawPath, p, query)
	}
	h, err := c.s.c.Open(c.context(), p)
	if err != nil {
		switch {
		case errors.Is(err, syscall.EISDIR):
			return c.redirect(req, "/"+origin.EscapePath(p)+"/")
		case errors.Is(err, fs.ErrNotExist):
			return c.simple(404, "not found", req.keepAlive)
		}
		return c.originFailed(req, "open", p, err)
	}
	defer h.Close()
	if req.peer != "" && c.s.opts.Peers != nil {
		defer func() { c.s.opts.Peers.Served(req.peer, c.rec.bytes) }()
	}
	return c.file(req, p, h)
}

// peerHints sets the request's read hints: a peer's request (authorized above when
// the server has a token) is read from the origin itself, never sent on; another
// notes whether its bytes came from a peer (X-Cache: PEER).
func (c *conn) peerHints(req *request) {
	rc, ok := c.context().(*reqCtx)
	if !ok {
		return
	}
	ctx := origin.WithPeerNote(context.Background(), &rc.peerNote)
	if req.peer != "" {
		ctx = origin.WithNoForward(ctx)
	}
	rc.vals = ctx
}

// originFailed answers a request whose origin or cache work failed: nothing when its
// client has gone (that ended the work), else 502 with a fixed text. What failed in
// detail (the origin's URL, internal paths, the origin's own words) goes to the log
// only, as net/http's toHTTPError keeps err.Error() out of responses.
func (c *conn) originFailed(req *request, what, p string, err error) bool {
	if c.context().Err() != nil {
		c.s.log.Debug(what+" abandoned: the client went away", "path", "/"+p, "err", err)
		return false
	}
	c.s.log.Error(what+" failed", "path", "/"+p, "err", err)
	return c.simple(502, "bad gateway: the origin could not be read (the server log says why)", req.keepAlive)
}

func (c *conn) authorized(req *request) bool {
	tok, ok := strings.CutPrefix(req.auth, "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(c.s.opts.AuthToken)) == 1
}

// unauthorized answers 401 with the challenge RFC 6750 asks for.
func (c *conn) unauthorized(req *request) bool {
	return c.simple(401, "unauthorized", req.keepAlive, "WWW-Authenticate", `Bearer realm="cachegate"`)
}

// cleanURLPath turns a URL path into an origin path. Encoded slashes and NULs are
// refused rather than decoded (they would change what the path names), and ".."
// cannot climb out of the namespace.
func cleanURLPath(raw string) (string, error) {
	lower := strings.ToLower(raw)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%00") || strings.Contains(lower, "%5c") {
		return "", errors.New("encoded slashes, backslashes and NUL are not allowed")
	}
	p, err := url.PathUnescape(raw)
	if err != nil {
		return "", errors.New("bad percent-encoding")
	}
	// The error does not echo the path: what the client sent is not reflected back.
	c, err := origin.Clean(p)
	if err != nil {
		return "", errors.New("the path leaves the namespace or holds a NUL")
	}
	return c, nil
}

func (c *conn) redirect(req *request, loc string) bool {
	return c.simple(301, "moved to "+loc, req.keepAlive, "Location", loc)
}

// etagFor returns a strong ETag for an object version (etag.For: the peer tier
// asks for versions by the same tag).
func etagFor(version string) string { return etag.For(version) }

func contentType(p string) string {
	if t := mime.TypeByExtension(path.Ext(p)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// file answers for one object: permission, preconditions, range selection, then
// the body (single or multipart).
func (c *conn) file(req *request, p string, h *cache.Handle) bool {
	e := h.Entry()
	if e.HasOwner && e.Perm&0o004 == 0 {
		// A web server running as nobody could not read it either.
		return c.simple(403, "forbidden", req.keepAlive)
	}
	v := validators{etag: etagFor(e.Version)}
	if !e.ModTime.IsZero() {
		v.modTime = e.ModTime.UTC().Truncate(time.Second)
	}
	fh := fileHeader{keep: req.keepAlive, etag: v.etag, lastModified: formatTime(v.modTime), transfer: zerocopy.Copy}
	code, rangeH := checkPreconditions(req, v)
	if code != 0 { // 304 (no body, no length) or 412
		fh.code, fh.length, fh.xCache, fh.noBody = code, -1, xCache(h, 0, e.Size), true
		if code == 412 {
			fh.length = 0
		}
		c.writeFileHeader(fh)
		return c.write(c.hdr) == nil && req.keepAlive
	}
	ranges, unsat := selectRanges(rangeH, e.Size)
	if unsat {
		c.writeFileHeader(fileHeader{code: 416, keep: req.keepAlive, contentType: "text/plain; charset=utf-8", length: 0,
			contentRange: "bytes */" + strconv.FormatInt(e.Size, 10), xCache: xCache(h, 0, 0), noBody: true})
		return c.write(c.hdr) == nil && req.keepAlive
	}
	fh.contentType = contentType(p)
	if len(ranges) > 1 {
		return c.multipart(req, p, h, ranges, fh)
	}
	r := byteRange{0, e.Size}
	fh.code = 200
	if len(ranges) == 1 {
		r, fh.code = ranges[0], 206
		fh.contentRange = fmt.Sprintf("bytes %d-%d/%d", r.start, r.start+r.length-1, e.Size)
	}
	return c.single(req, p, h, r, fh)
}

// single answers with one range of the object (the whole of it for 200).
func (c *conn) single(req *request, p string, h *cache.Handle, r byteRange, fh fileHeader) bool {
	fh.xCache, fh.length = xCache(h, r.start, r.length), r.length
	st := &stream{c: c, h: h}
	// Fill the first segment before any byte is written, so an origin failure can
	// still be answered with 502 rather than a truncated body.
	if req.method == "GET" && r.length > 0 {
		if err := st.prefill(r.start, min(r.length, segment-r.start%segment)); err != nil {
			return c.originFailed(req, "read", p, err)
		}
	}
	if rc, ok := c.context().(*reqCtx); ok && (rc.peerNote.Load() || st.notKept) {
		// The first segment's bytes came from a peer, or (--peer-copy owner) are
		// read through one: the cache keeps only spans whose owner is this member
		// or down.
		fh.xCache = "PEER"
	}
	// Complete now, after the first fill: a small cold file is whole already.
	st.m = c.choose(h, r.length, false, keptComplete(c.context(), h, r.start, r.length))
	if st.uncached {
		st.m = zerocopy.Copy
	}
	fh.transfer, fh.noBody = st.m, req.method == "HEAD" || r.length == 0
	c.writeFileHeader(fh)
	if fh.noBody {
		return c.write(c.hdr) == nil && req.keepAlive
	}
	st.pend = append(st.pend, c.hdr)
	if err := st.sendRange(r.start, r.length); err != nil {
		return c.cutShort(p, err)
	}
	return req.keepAlive
}

// cutShort ends a response whose body could not be sent whole: the promised
// Content-Length cannot be met, so the connection is closed.
func (c *conn) cutShort(p string, err error) bool {
	if !isClientGone(err) && c.context().Err() == nil {
		c.s.log.Warn("response cut short", "path", "/"+p, "err", err)
	}
	return false
}

// formatTime formats t for Last-Modified, "" for the zero time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(timeFormat)
}

// fileHeader is what the header of an answer about one object says.
type fileHeader struct {
	code               int
	keep               bool
	contentType        string // omitted when ""
	length             int64  // Content-Length; omitted when negative (304)
	contentRange       string // omitted when ""
	etag, lastModified string // omitted when ""
	xCache             string
	transfer           zerocopy.Method
	noBody             bool // no body bytes follow (HEAD, 304, 412, empty): X-Transfer: none
}

// writeFileHeader builds fh's header in c.hdr, to go out with the body's first bytes,
// and counts the answer. 200 and 206 also say Accept-Ranges.
func (c *conn) writeFileHeader(fh fileHeader) {
	c.startHeader(fh.code, fh.keep)
	if fh.contentType != "" {
		c.header("Content-Type", fh.contentType)
	}
	if fh.length >= 0 {
		c.headerInt("Content-Length", fh.length)
	}
	if fh.code == 200 || fh.code == 206 {
		c.header("Accept-Ranges", "bytes")
	}
	if fh.contentRange != "" {
		c.header("Content-Range", fh.contentRange)
	}
	if fh.etag != "" {
		c.header("ETag", fh.etag)
	}
	if fh.lastModified != "" {
		c.header("Last-Modified", fh.lastModified)
	}
	c.header("X-Cache", fh.xCache)
	transfer := fh.transfer.String()
	if fh.noBody {
		transfer = "none"
	}
	c.header("X-Transfer", transfer)
	c.endHeader()
	c.answered(fh.code)
	c.rec.xCache, c.rec.xTransfer = fh.xCache, transfer
}

// stream sends the body of one answer: ranges of one object, each after the bytes
// pending before it (the header, a part's header). Each segment is filled before it
// is sent, so a cold range streams as its chunks arrive and one fill never asks the
// cache for more than a segment (plus the readahead, bounded by the cache). When
// the cache has no room, the rest is read from the origin and copied.
type stream struct {
	c *conn
	h *cache.Handle
	m zerocopy.Method
	// gather collects pending bytes and mapped segments into one writev, flushed at
	// a segment's worth and before any fill that has to wait (multipart from the
	// mapping: a small one goes out in one system call).
	gather   bool
	uncached bool     // the cache had no room: the rest goes by sendUncached
	notKept  bool     // the segment just filled is not kept here (cache.ErrNotKept): sendUncached
	pend     [][]byte // to send before the next body bytes
	pendFile int64    // mapped file bytes in pend (gather)
	// preStart, preEnd: the range prefill made present before the header.
	preStart, preEnd int64
}

// prefill fills [off, off+n) before the header is written (see file).
func (st *stream) prefill(off, n int64) error {
	// Only what the cache keeps: a run it does not keep (another member's span)
	// is read through as sendRange reaches it, and the kept run before it is
	// filled, never sent through with it.
	kept, until := st.h.KeepRun(st.c.context(), off, off+n)
	if !kept {
		st.notKept = true
		st.preStart, st.preEnd = off, off
		return nil
	}
	n = until - off
	if err := st.fill(off, n); err != nil {
		return err
	}
	st.preStart, st.preEnd = off, off+n
	return nil
}

// fill makes [off, off+n) present. When the cache has no room it switches the
// stream to uncached reads by copy.
func (st *stream) fill(off, n int64) error {
	st.notKept = false
	if st.uncached {
		return nil
	}
	if _, err := st.h.Fill(st.c.context(), off, n); err != nil {
		if errors.Is(err, cache.ErrNotKept) {
			st.notKept = true // this segment only: the next may be kept
			return nil
		}
		if !errors.Is(err, cache.ErrNoSpace) {
			return err
		}
		st.uncached, st.m = true, zerocopy.Copy
	}
	return nil
}

// sendRange sends [off, off+n) in segments aligned to segment.
func (st *stream) sendRange(off, n int64) error {
	for pos, end := off, off+n; pos < end; {
		seg := min(segment-pos%segment, end-pos)
		if pos < st.preStart || pos+seg > st.preEnd {
			if !st.uncached {
				// A run the cache does not keep (another member's spans, with
				// --peer-copy owner) goes as one read through; a kept run is
				// filled as usual, up to where the cache stops keeping.
				kept, until := st.h.KeepRun(st.c.context(), pos, end)
				if !kept {
					seg, st.notKept = until-pos, true
					if err := st.segment(pos, seg); err != nil {
						return err
					}
					pos += seg
					continue
				}
				seg = min(seg, until-pos)
			}
			if len(st.pend) > 0 && !st.uncached {
				// What is ready goes out while this segment fills (a part's header
				// too, so the client sees the part before it end).
				if all, _ := st.h.Presence(pos, seg); !all {
					if err := st.flush(); err != nil {
						return err
					}
				}
			}
			if err := st.fill(pos, seg); err != nil {
				return err
			}
		}
		if err := st.segment(pos, seg); err != nil {
			return err
		}
		pos += seg
		if st.c.sock != nil {
			st.c.nc.SetWriteDeadline(time.Now().Add(st.c.s.opts.SendTimeout))
		}
	}
	return nil
}

// segment sends n present bytes at off (or reads them from the origin, uncached).
func (st *stream) segment(off, n int64) error {
	c := st.c
	switch {
	case st.uncached || st.notKept:
		if st.gather {
			if err := st.flush(); err != nil {
				return err
			}
		}
		send := c.sendUncached
		if st.notKept {
			send = c.sendThrough
		}
		err := send(st.h, joinPending(st.pend), off, n)
		st.pend = st.pend[:0]
		if err == nil {
			c.sentBody(zerocopy.Copy, n)
		}
		return err
	case st.gather:
		mem, err := st.h.Mapping()
		if err != nil {
			return err
		}
		st.pend = append(st.pend, mem[off:off+n])
		if st.pendFile += n; st.pendFile >= segment {
			return st.flush()
		}
		return nil
	}
	err := c.send(st.h, st.m, joinPending(st.pend), off, n)
	st.pend = st.pend[:0]
	if err == nil {
		c.sentBody(st.m, n)
	}
	return err
}

// joinPending returns the pending bytes as one slice: the header alone (no copy) in
// the common case, else a copy of the few short pieces.
func joinPending(pend [][]byte) []byte {
	switch len(pend) {
	case 0:
		return nil
	case 1:
		return pend[0]
	}
	var b []byte
	for _, p := range pend {
		b = append(b, p...)
	}
	return b
}

// flush writes what is pending.
func (st *stream) flush() error {
	if len(st.pend) == 0 {
		return nil
	}
	err := st.c.write(st.pend...)
	if err == nil && st.pendFile > 0 {
		st.c.sentBody(st.m, st.pendFile)
	}
	st.pend, st.pendFile = st.pend[:0], 0
	return err
}

// send moves one present segment with method m.
func (c *conn) send(h *cache.Handle, m zerocopy.Method, hdr []byte, off, n int64) error {
	var mem []byte
	if m == zerocopy.Mmap {
		var err error
		if mem, err = h.Mapping(); err != nil {
			return err
		}
	}
	if c.sock == nil {
		return zerocopy.WriterSend(c.nc, m, hdr, h.File(), mem, off, n, c.copyBuf())
	}
	switch m {
	case zerocopy.Sendfile:
		return c.sock.SendFile(hdr, h.File(), off, n)
	case zerocopy.Mmap:
		return c.sock.SendMmap(hdr, mem[off:off+n])
	}
	return c.sock.SendCopy(hdr, h.File(), off, n, c.copyBuf())
}

// sendUncached reads a segment from the origin (the cache had no room) and writes it.
func (c *conn) sendUncached(h *cache.Handle, hdr []byte, off, n int64) error {
	buf := c.copyBuf()
	for n > 0 {
		k := min(n, int64(len(buf)))
		got, err := h.ReadAt(c.context(), buf[:k], off)
		if int64(got) < k {
			if err == nil {
				err = zerocopy.ErrShortFile
			}
			return err
		}
		if err := c.write(hdr, buf[:k]); err != nil {
			return err
		}
		hdr = nil
		off += k
		n -= k
	}
	return nil
}

// sendThrough sends n bytes at off that the cache does not keep (cache.ErrNotKept:
// another member's span) as one read through the origin (its owner), where
// sendUncached's reads of a buffer each would each be a request. To a plain-TCP
// client a reader that can (origin.ConnWriter: a peer's raw body) splices its
// bytes from its socket to the client's, after the header, never through user
// memory. What a failed stream did not bring is sent by sendUncached, which
// retries.
func (c *conn) sendThrough(h *cache.Handle, hdr []byte, off, n int64) error {
	rc, err := h.ReadThrough(c.context(), off, n)
	if err != nil {
		return c.sendUncached(h, hdr, off, n)
	}
	defer rc.Close()
	if cw, ok := rc.(origin.ConnWriter); ok && c.sock != nil {
		dst := &throughSink{c: c, hdr: hdr}
		w, err := cw.WriteToConn(dst, n)
		if err == nil {
			return nil
		}
		if dst.err != nil {
			return dst.err // the client's connection failed
		}
		return c.sendUncached(h, dst.hdr, off+w, n-w)
	}
	buf := c.copyBuf()
	for n > 0 {
		got, err := io.ReadFull(rc, buf[:min(n, int64(len(buf)))])
		if got > 0 {
			if werr := c.write(hdr, buf[:got]); werr != nil {
				return werr
			}
			hdr = nil
			off += int64(got)
			n -= int64(got)
		}
		if err != nil && n > 0 {
			return c.sendUncached(h, hdr, off, n)
		}
	}
	return nil
}

// throughSink is sendThrough's origin.ConnSink: the client's socket, with the
// response header (hdr, until sent) ahead of the first body bytes, and the first
// error of the socket's (err: the client is gone, nothing to fall back on).
type throughSink struct {
	c   *conn
	hdr []byte
	err error
}

func (s *throughSink) Write(b []byte) (int, error) {
	if err := s.c.write(s.hdr, b); err != nil {
		s.err = err
		return 0, err
	}
	s.hdr = nil
	return len(b), nil
}

func (s *throughSink) SpliceFrom(fd int, n int64) error {
	// The header with MSG_MORE: it leaves with the body's first bytes.
	err := s.c.sock.SendHeader(s.hdr, n > 0)
	if err == nil {
		s.hdr = nil
		err = s.c.sock.SpliceFrom(fd, n)
	}
	if err != nil {
		s.err = err
	}
	return err
}

// choose picks the transfer method for a body of n bytes on this connection: the
// fixed --transfer method (by copy instead of sendfile under TLS), or autoMethod's.
// Files not yet cached go by copy.
func (c *conn) choose(h *cache.Handle, n int64, multi, complete bool) zerocopy.Method {
	if !h.Cached() {
		return zerocopy.Copy
	}
	if !c.s.auto {
		if c.isTLS && c.s.fixed != zerocopy.Copy {
			return zerocopy.Copy // see autoMethod: TLS reads no mapping
		}
		return c.s.fixed
	}
	return autoMethod(n, multi, complete, c.isTLS, c.egress)
}

// autoMethod is the rule of --transfer auto for a cached file.
//
// TLS goes by pread+write: it encrypts in user space, so sendfile cannot serve it,
// and its reads of a mapping would be user-space loads, which kill the process with
// SIGBUS if the cache file is truncated under it (a plain write of a mapping only
// fails with EFAULT in the kernel). Otherwise a body of up to smallBody bytes of a
// complete file goes out with its header in one writev from the mapping, and larger
// bodies, and files still filling (only present segments are sent), by sendfile,
// with two exceptions measured here. Through an interface without scatter-gather
// sendfile cannot hand pages over and copies them too, and complete bodies moved
// faster from the mapping (BenchmarkEgress, sg off, requests/s mmap ÷ sendfile:
// 0.93-1.12 from 16 to 256 KiB, 1.48-1.83 at 1 MiB, 1.37-1.59 at 8 MiB). To a client
// on this host, bodies over hugeFilling bytes of files still filling go by
// pread+write.
//
// A client on this host (loopback: no DMA, the receiver copies on our CPUs anyway)
// gets the scatter-gather rule. Until 2026-12-02 only its complete bodies of
// 48 KiB-1 MiB went by sendfile and other complete ones from the mapping. On the
// VM's host of 2026-11-29, with wrk -t1 -c32 at 100% of a core, that rule tied the
// mapping on BenchmarkServe's mixed 1 KiB-8 MiB set (0.97-1.00x), where this rule
// came to 0.95-0.98x of the mapping by hand (six rounds); with the client on both
// cores (wrk -t2) the old rule fell to 0.91x of sendfile (median of 15 rounds) and
// this one came to 1.01x. On 2026-12-02 the VM ran on a faster host, where sendfile
// was the best fixed method with wrk -t1 too: the old rule came to 0.97x and 0.92x
// of it in two BenchmarkServe runs, at 1.32x and 1.60x its server CPU per mixed
// request (its sendfile bodies went at the writes' send-queue bound, see
// mainMethod); this rule to 1.05x (2773 vs 2644 requests/s: the small bodies'
// header+body writev is what it adds), at 0.98x its CPU per request, and 1 MiB at
// 1.81x nginx's requests/s. It was never more than 5% behind in any regime
// measured, the old rule 8-9% behind in two, and sendfile cost the server the
// least CPU on both hosts. The per-size measurements behind the old rule are in
// e2e/RESULTS.md.
func autoMethod(n int64, multi, complete, isTLS bool, e egress) zerocopy.Method {
	switch {
	case isTLS:
		return zerocopy.Copy
	case multi || (complete && n <= smallBody):
		return zerocopy.Mmap
	case complete && e == egressNoSG:
		return zerocopy.Mmap
	case !complete && e == egressLoopback && n > hugeFilling:
		return zerocopy.Copy
	}
	return zerocopy.Sendfile
}

// keptComplete reports whether a body [off, off+n) of h counts as complete for
// choose: the file is, or (--peer-copy owner) some of the body is not kept here
// and every byte of it that is kept is present. Such a member never holds a whole
// file, and its warm spans went by pread+write as a file still filling does
// (hugeFilling): two thirds of the requester's CPU in BenchmarkPeers' read
// through. Past maxKeptRuns runs it answers as h.Complete (a hash per span).
func keptComplete(ctx context.Context, h *cache.Handle, off, n int64) bool {
	if h.Complete() || !h.Cached() {
		return h.Complete()
	}
	notKept := false
	pos, end := off, off+n
	for runs := 0; pos < end && runs < maxKeptRuns; runs++ {
		kept, until := h.KeepRun(ctx, pos, end)
		if until <= pos {
			return false
		}
		if !kept {
			notKept = true
		} else if all, _ := h.Presence(pos, until-pos); !all {
			return false
		}
		pos = until
	}
	return notKept && pos >= end
}

// maxKeptRuns bounds keptComplete's walk over kept and not-kept runs.
const maxKeptRuns = 256

// hugeFilling is the body size above which files still filling go to loopback
// clients by pread+write instead of sendfile (complete files go by sendfile).
//
// Files still filling keep pread+write: a cold 1 GiB file through a fresh server to
// one curl on loopback (2026-11-29, alternating) finished first by pread+write in
// seven rounds of eight against sendfile (1186-1319 ms vs 1242-1413 ms, and one
// sendfile round at 2123 ms) and in four of four against the mapping (1346-1488 ms).
// At 64 MiB the three were even (116-165 ms), so smaller files still filling keep
// sendfile.
//
// A NIC with scatter-gather DMA has none of this and keeps sendfile.
const hugeFilling = 128 << 20

// xCache tells HIT (all of the range was on disk), PARTIAL (some) or MISS (none).
func xCache(h *cache.Handle, off, n int64) string {
	if n <= 0 {
		if h.Cached() {
			return "HIT"
		}
		return "MISS"
	}
	all, any := h.Presence(off, n)
	switch {
	case all:
		return "HIT"
	case any:
		return "PARTIAL"
	}
	return "MISS"
}

// multipart answers a request for several ranges (sorted, disjoint, at most
// maxParts) with multipart/byteranges, streaming each part as it fills.
func (c *conn) multipart(req *request, p string, h *cache.Handle, ranges []byteRange, fh fileHeader) bool {
	size := h.Size()
	var bnd [12]byte
	rand.Read(bnd[:])
	boundary := hex.EncodeToString(bnd[:])
	heads := make([][]byte, len(ranges))
	total := int64(0)
	all, any := true, false
	for i, r := range ranges {
		heads[i] = fmt.Appendf(nil, "\r\n--%s\r\nContent-Type: %s\r\nContent-Range: bytes %d-%d/%d\r\n\r\n", boundary, fh.contentType, r.start, r.start+r.length-1, size)
		total += int64(len(heads[i])) + r.length
		a, y := h.Presence(r.start, r.length)
		all, any = all && a, any || y
	}
	trailer := []byte("\r\n--" + boundary + "--\r\n")
	total += int64(len(trailer))
	fh.xCache = "MISS"
	if all {
		fh.xCache = "HIT"
	} else if any {
		fh.xCache = "PARTIAL"
	}
	st := &stream{c: c, h: h}
	if req.method == "GET" {
		r := ranges[0]
		if err := st.prefill(r.start, min(r.length, segment-r.start%segment)); err != nil {
			return c.originFailed(req, "read", p, err)
		}
	}
	st.m = c.choose(h, total, true, h.Complete())
	if st.uncached {
		st.m = zerocopy.Copy
	}
	st.gather = st.m == zerocopy.Mmap
	fh.code, fh.length, fh.transfer, fh.noBody = 206, total, st.m, req.method == "HEAD"
	fh.contentType = "multipart/byteranges; boundary=" + boundary
	c.writeFileHeader(fh)
	if req.method == "HEAD" {
		return c.write(c.hdr) == nil && req.keepAlive
	}
	st.pend = append(st.pend, c.hdr)
	framing := int64(len(trailer))
	for i, r := range ranges {
		st.pend = append(st.pend, heads[i])
		framing += int64(len(heads[i]))
		if err := st.sendRange(r.start, r.length); err != nil {
			return c.cutShort(p, err)
		}
	}
	st.pend = append(st.pend, trailer)
	if err := st.flush(); err != nil {
		return c.cutShort(p, err)
	}
	c.sentBody(st.m, framing)
	return req.keepAlive
}

func isClientGone(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, os.ErrDeadlineExceeded)
}
