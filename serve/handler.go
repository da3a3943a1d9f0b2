package serve

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cachegate/cachegate/cache"
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
	start := time.Now()
	defer func() { c.s.m.latency.Observe(time.Since(start).Seconds()) }()
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
	if c.s.opts.AuthToken != "" && !c.authorized(req) {
		c.startHeader(401, req.keepAlive)
		c.header("WWW-Authenticate", `Bearer realm="cachegate"`)
		c.header("Content-Type", "text/plain; charset=utf-8")
		c.headerInt("Content-Length", 13)
		c.endHeader()
		c.s.m.request(401)
		return c.write(c.hdr, []byte("unauthorized\n")) == nil && req.keepAlive
	}
	if req.method != "GET" && req.method != "HEAD" {
		c.startHeader(405, req.keepAlive)
		c.header("Allow", "GET, HEAD")
		c.headerInt("Content-Length", 0)
		c.endHeader()
		c.s.m.request(405)
		return c.write(c.hdr) == nil && req.keepAlive
	}
	p, err := cleanURLPath(rawPath)
	if err != nil {
		return c.simple(400, "bad path: "+err.Error(), req.keepAlive)
	}
	if p == "" || strings.HasSuffix(rawPath, "/") {
		return c.directory(req, p, query)
	}
	h, err := c.s.c.Open(c.context(), p)
	if err != nil {
		switch {
		case errors.Is(err, syscall.EISDIR):
			return c.redirect(req, "/"+escapePath(p)+"/")
		case errors.Is(err, fs.ErrNotExist):
			return c.simple(404, "not found", req.keepAlive)
		}
		c.s.log.Error("open failed", "path", "/"+p, "err", err)
		return c.simple(502, "origin error: "+oneLine(err), req.keepAlive)
	}
	defer h.Close()
	return c.file(req, p, h)
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }

func (c *conn) authorized(req *request) bool {
	tok, ok := strings.CutPrefix(req.auth, "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(c.s.opts.AuthToken)) == 1
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

// escapePath escapes each segment of an origin path for a URL.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

func (c *conn) redirect(req *request, loc string) bool {
	body := []byte("moved to " + loc + "\n")
	c.startHeader(301, req.keepAlive)
	c.header("Location", loc)
	c.header("Content-Type", "text/plain; charset=utf-8")
	c.headerInt("Content-Length", int64(len(body)))
	c.endHeader()
	c.s.m.request(301)
	if req.method == "HEAD" {
		body = nil
	}
	return c.write(c.hdr, body) == nil && req.keepAlive
}

// etagFor returns a strong ETag for an object version: the origin's own ETag when it
// has one, else a hash of the version string.
func etagFor(version string) string {
	if len(version) >= 2 && version[0] == '"' && version[len(version)-1] == '"' {
		return version
	}
	sum := sha256.Sum256([]byte(version))
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}

// etagListMatch reports whether an If-None-Match list names tag (weak comparison,
// RFC 9110 §13.1.2).
func etagListMatch(list, tag string) bool {
	if strings.TrimSpace(list) == "*" {
		return true
	}
	want := strings.TrimPrefix(tag, "W/")
	for _, t := range splitList(list) {
		if strings.TrimPrefix(t, "W/") == want {
			return true
		}
	}
	return false
}

func contentType(p string) string {
	if t := mime.TypeByExtension(path.Ext(p)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// file answers for one object.
func (c *conn) file(req *request, p string, h *cache.Handle) bool {
	e := h.Entry()
	size := e.Size
	etag := etagFor(e.Version)
	modTime := e.ModTime.UTC().Truncate(time.Second)
	lastMod := ""
	if !e.ModTime.IsZero() {
		lastMod = modTime.Format(timeFormat)
	}

	// Conditionals (RFC 9110 §13.2.2): If-None-Match wins over If-Modified-Since.
	notModified := false
	if req.ifNoneMatch != "" {
		notModified = etagListMatch(req.ifNoneMatch, etag)
	} else if req.ifModifiedSince != "" && lastMod != "" {
		if t, err := http.ParseTime(req.ifModifiedSince); err == nil && !modTime.After(t) {
			notModified = true
		}
	}
	if notModified {
		c.startHeader(304, req.keepAlive)
		c.header("ETag", etag)
		if lastMod != "" {
			c.header("Last-Modified", lastMod)
		}
		c.header("X-Cache", xCache(h, 0, size))
		c.header("X-Transfer", "copy")
		c.endHeader()
		c.s.m.request(304)
		return c.write(c.hdr) == nil && req.keepAlive
	}

	var ranges []byteRange
	if req.rangeH != "" && (req.ifRange == "" || req.ifRange == etag || (lastMod != "" && req.ifRange == lastMod)) {
		rs, unsat, ok := parseRange(req.rangeH, size)
		switch {
		case unsat:
			c.startHeader(416, req.keepAlive)
			c.header("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
			c.header("Content-Type", "text/plain; charset=utf-8")
			c.headerInt("Content-Length", 0)
			c.header("X-Cache", xCache(h, 0, 0))
			c.header("X-Transfer", "copy")
			c.endHeader()
			c.s.m.request(416)
			return c.write(c.hdr) == nil && req.keepAlive
		case ok:
			ranges = rs
		}
	}
	common := func(code int, keep bool, ct string, length int64, method zerocopy.Method, xc string) {
		c.startHeader(code, keep)
		c.header("Content-Type", ct)
		c.headerInt("Content-Length", length)
		c.header("Accept-Ranges", "bytes")
		c.header("ETag", etag)
		if lastMod != "" {
			c.header("Last-Modified", lastMod)
		}
		c.header("X-Cache", xc)
		c.header("X-Transfer", method.String())
	}
	ct := contentType(p)
	if len(ranges) > 1 {
		return c.multipart(req, h, ranges, ct, common)
	}
	off, n, code := int64(0), size, 200
	if len(ranges) == 1 {
		off, n, code = ranges[0].start, ranges[0].length, 206
	}
	xc := xCache(h, off, n)
	// Fill the first segment before any byte is written, so an origin failure can
	// still be answered with 502 rather than a truncated body.
	first := min(n, segment-off%segment)
	noSpace := false
	if n > 0 && req.method == "GET" {
		if _, err := h.Fill(c.context(), off, first); err != nil {
			if !errors.Is(err, cache.ErrNoSpace) {
				c.s.log.Error("read failed", "path", "/"+p, "err", err)
				return c.simple(502, "origin error: "+oneLine(err), req.keepAlive)
			}
			noSpace = true
		}
	}
	// Complete now, after the first fill: a small cold file is whole already.
	method := c.choose(h, n, false, h.Complete())
	if noSpace {
		method = zerocopy.Copy
	}
	common(code, req.keepAlive, ct, n, method, xc)
	if code == 206 {
		c.header("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, size))
	}
	c.endHeader()
	c.s.m.request(code)
	if req.method == "HEAD" || n == 0 {
		return c.write(c.hdr) == nil && req.keepAlive
	}
	if err := c.body(h, method, off, n, first, noSpace); err != nil {
		if !isClientGone(err) {
			c.s.log.Warn("response cut short", "path", "/"+p, "err", err)
		}
		return false // the promised Content-Length cannot be met: close
	}
	return req.keepAlive
}

// body sends n bytes from off after the header in c.hdr, in segments that the cache
// fills as it goes. The first segment (first bytes) is already filled.
func (c *conn) body(h *cache.Handle, m zerocopy.Method, off, n, first int64, noSpace bool) error {
	hdr := c.hdr
	end := off + n
	for pos, seg := off, first; pos < end; seg = min(segment, end-pos) {
		if pos > off && !noSpace {
			if _, err := h.Fill(c.context(), pos, seg); err != nil {
				if !errors.Is(err, cache.ErrNoSpace) {
					return err
				}
				noSpace, m = true, zerocopy.Copy
			}
		}
		var err error
		if noSpace {
			err = c.sendUncached(h, hdr, pos, seg)
		} else {
			err = c.send(h, m, hdr, pos, seg)
		}
		if err != nil {
			return err
		}
		c.s.bytesByMethod[m].Add(seg)
		hdr = nil
		pos += seg
		if c.sock != nil {
			c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.SendTimeout))
		}
	}
	return nil
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

// choose picks the transfer method for a body of n bytes on this connection: the
// fixed --transfer method (by copy instead of sendfile under TLS), or autoMethod's.
// Files not yet cached go by copy.
func (c *conn) choose(h *cache.Handle, n int64, multi, complete bool) zerocopy.Method {
	if !h.Cached() {
		return zerocopy.Copy
	}
	if !c.s.auto {
		if c.isTLS && c.s.fixed == zerocopy.Sendfile {
			return zerocopy.Copy
		}
		return c.s.fixed
	}
	return autoMethod(n, multi, complete, c.isTLS, c.egress)
}

// autoMethod is the rule of --transfer auto for a cached file.
//
// TLS never uses sendfile (the bytes are encrypted in user space), so complete
// files are written from the mapping. Otherwise a body of up to smallBody bytes of a
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
		if complete {
			return zerocopy.Mmap
		}
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

// multipart answers a request for several ranges with multipart/byteranges.
func (c *conn) multipart(req *request, h *cache.Handle, ranges []byteRange, ct string, common func(int, bool, string, int64, zerocopy.Method, string)) bool {
	size := h.Size()
	var bnd [12]byte
	rand.Read(bnd[:])
	boundary := hex.EncodeToString(bnd[:])
	parts := make([][]byte, len(ranges))
	total := int64(0)
	all, any := true, false
	for i, r := range ranges {
		parts[i] = fmt.Appendf(nil, "\r\n--%s\r\nContent-Type: %s\r\nContent-Range: bytes %d-%d/%d\r\n\r\n", boundary, ct, r.start, r.start+r.length-1, size)
		total += int64(len(parts[i])) + r.length
		a, y := h.Presence(r.start, r.length)
		all, any = all && a, any || y
	}
	trailer := []byte("\r\n--" + boundary + "--\r\n")
	total += int64(len(trailer))
	xc := "MISS"
	if all {
		xc = "HIT"
	} else if any {
		xc = "PARTIAL"
	}
	noSpace := false
	if req.method == "GET" {
		for _, r := range ranges {
			if _, err := h.Fill(c.context(), r.start, r.length); err != nil {
				if !errors.Is(err, cache.ErrNoSpace) {
					return c.simple(502, "origin error: "+oneLine(err), req.keepAlive)
				}
				noSpace = true
			}
		}
	}
	method := c.choose(h, total, true, h.Complete())
	if noSpace {
		method = zerocopy.Copy
	}
	common(206, req.keepAlive, "multipart/byteranges; boundary="+boundary, total, method, xc)
	c.endHeader()
	c.s.m.request(206)
	if req.method == "HEAD" {
		return c.write(c.hdr) == nil && req.keepAlive
	}
	var err error
	if method == zerocopy.Mmap {
		// One writev: header, and each part's header and bytes straight from the map.
		var mem []byte
		if mem, err = h.Mapping(); err == nil {
			iov := [][]byte{c.hdr}
			for i, r := range ranges {
				iov = append(iov, parts[i], mem[r.start:r.start+r.length])
			}
			iov = append(iov, trailer)
			err = c.write(iov...)
		}
	} else {
		err = c.write(c.hdr)
		for i, r := range ranges {
			if err == nil {
				err = c.write(parts[i])
			}
			if err == nil {
				err = c.sendUncached(h, nil, r.start, r.length)
			}
		}
		if err == nil {
			err = c.write(trailer)
		}
	}
	if err != nil {
		return false
	}
	c.s.bytesByMethod[method].Add(total)
	return req.keepAlive
}

func isClientGone(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, os.ErrDeadlineExceeded)
}
