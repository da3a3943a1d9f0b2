package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/cachegate/cachegate/internal/etag"
	"github.com/cachegate/cachegate/internal/origin"
)

// Wrap returns the peer tier around inner: Stat and List go to inner; ReadRange
// reads the spans other members own from them, and the rest (and whatever a peer
// fails to deliver) from inner.
func (g *Group) Wrap(inner origin.Origin) origin.Origin {
	if g.opts.OwnerOnly {
		return ownerOnly{&peerOrigin{Origin: inner, g: g}}
	}
	return &peerOrigin{Origin: inner, g: g}
}

// ownerOnly is the decorator of a member with --peer-copy owner: it tells the cache
// (cache.Keeper) to keep only the spans this member owns, or whose owner is down
// (read from the origin here, they would otherwise be fetched again by the next
// read). Versions without a tag are never read from peers, so they are kept.
type ownerOnly struct{ *peerOrigin }

// KeepRun implements cache.Keeper.
func (o ownerOnly) KeepRun(p, version string, off, end int64) (kept bool, until int64) {
	if etag.For(version) == "" || end <= off {
		return true, end
	}
	// Span by span, only as far as the run goes: a walk of a whole file run by
	// run (keptSize, under the cache's lock) stays linear in its spans.
	ms := o.g.Members()
	keptAt := func(idx int64) bool { return o.g.source(ms, p, version, idx) == nil }
	span := o.g.opts.Span
	kept = keptAt(off / span)
	until = min(end, (off/span+1)*span)
	for until < end && keptAt(until/span) == kept {
		until = min(end, until+span)
	}
	return kept, until
}

// peerOrigin is the decorator. It does not offer origin.WholeGetter: a small file's
// owner is known only once its version is, so a small file is stat'ed, then read
// through its owner like any other.
type peerOrigin struct {
	origin.Origin
	g *Group
}

// Unwrap returns the origin the peer tier decorates: the cache asks it what it
// offers besides reading (a daemon's routes).
func (o *peerOrigin) Unwrap() origin.Origin { return o.Origin }

// segment is a run of [off, off+n) read from one source: m, or the origin when
// m is nil.
type segment struct {
	off, n int64
	m      *Member
}

// split cuts [off, off+n) at span boundaries and gives each piece its source: the
// span's owner, or nil (the origin) when that is this member, is down, or the
// version has no tag to ask by. Adjacent pieces of one source are merged.
func (g *Group) split(p, version string, off, n int64) []segment {
	var segs []segment
	ms := g.Members()
	for end := off + n; off < end; {
		idx := off / g.opts.Span
		next := min(end, (idx+1)*g.opts.Span)
		m := g.source(ms, p, version, idx)
		if k := len(segs); k > 0 && segs[k-1].m == m {
			segs[k-1].n += next - off
		} else {
			segs = append(segs, segment{off: off, n: next - off, m: m})
		}
		off = next
	}
	return segs
}

// source is where span idx of version of p is read from among members ms: its
// owner, or nil (the origin) when that is this member or is down.
func (g *Group) source(ms []*Member, p, version string, idx int64) *Member {
	m := owner(ms, g.keyHash(Key{Path: p, Version: version, Span: idx}))
	if m != nil && (m.self || !m.Up()) {
		return nil
	}
	return m
}

// Forwards implements cache.Forwarder: whether ReadRange would ask a peer for some
// of [off, off+n).
func (o *peerOrigin) Forwards(p, version string, off, n int64) bool {
	if etag.For(version) == "" || n <= 0 {
		return false
	}
	for _, s := range o.g.split(p, version, off, n) {
		if s.m != nil {
			return true
		}
	}
	return false
}

func (o *peerOrigin) ReadRange(ctx context.Context, p, version string, off, n int64) (io.ReadCloser, error) {
	tag := etag.For(version)
	if origin.NoForward(ctx) || tag == "" || n <= 0 {
		// A peer's request, or a version a peer could not be asked for by tag.
		return o.Origin.ReadRange(ctx, p, version, off, n)
	}
	segs := o.g.split(p, version, off, n)
	if len(segs) == 1 && segs[0].m == nil {
		// All from the origin: its own reader (which may splice into the cache).
		return o.Origin.ReadRange(ctx, p, version, off, n)
	}
	r := &reader{o: o, ctx: ctx, p: p, version: version, tag: tag, segs: segs}
	for _, s := range segs {
		if s.m != nil && s.m.raw != nil {
			// A peer's body can splice: into the cache file (a fill) or to a
			// client's socket (a read through).
			return &splicingReader{r}, nil
		}
	}
	return r, nil
}

// reader reads the segments in turn. A peer's failure (no answer in time, a wrong
// status, version or range, a short or stalled body) marks the peer down and
// reads the rest of its segment from the origin: the caller sees only the origin's
// own errors.
type reader struct {
	o               *peerOrigin
	ctx             context.Context
	p, version, tag string
	segs            []segment
	i               int   // the segment being read
	pos             int64 // offset of the next byte
	cur             io.ReadCloser
	curPeer         *Member // the source of cur; nil for the origin
}

var errPeerTimeout = errors.New("peer timeout")

func (r *reader) Read(b []byte) (int, error) {
	for {
		end, err := r.ready()
		if err != nil {
			return 0, err
		}
		k, err := r.cur.Read(b[:min(int64(len(b)), end-r.pos)])
		r.advance(int64(k))
		if r.pos == end {
			if pb, ok := r.cur.(*peerBody); ok && pb.sized && err == nil {
				// Read the body's end, so its connection goes back to the pool:
				// only with a Content-Length, whose end is known without waiting.
				// A chunked body's last chunk may never come (a --peer-timeout
				// per segment); its connection is closed instead.
				var one [1]byte
				r.cur.Read(one[:])
			}
			r.endSegment()
			if k > 0 {
				return k, nil
			}
			continue
		}
		if err == nil {
			if k == 0 {
				continue
			}
			return k, nil
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // short of the segment
		}
		if r.curPeer == nil || r.ctx.Err() != nil {
			return k, err // the origin's own error, or the caller gave up
		}
		// The peer failed mid-body: the rest from the origin.
		r.peerFailed(fmt.Errorf("body of %s at %d: %w", r.p, r.pos, err))
		if k > 0 {
			return k, nil
		}
	}
}

// ready opens the source of the segment being read when none is open, and returns
// the segment's end; io.EOF after the last segment.
func (r *reader) ready() (end int64, err error) {
	if r.i == len(r.segs) {
		return 0, io.EOF
	}
	s := r.segs[r.i]
	end = s.off + s.n
	if r.cur == nil {
		if r.pos < s.off {
			r.pos = s.off
		}
		if err := r.open(s.m, end); err != nil {
			return 0, err
		}
	}
	return end, nil
}

// advance counts k bytes delivered from the current source.
func (r *reader) advance(k int64) {
	r.pos += k
	if r.curPeer != nil && k > 0 {
		r.curPeer.bytes.Add(k)
		origin.NotePeer(r.ctx)
	}
}

// endSegment closes the source of a segment read to its end and moves to the next.
func (r *reader) endSegment() {
	r.closeCur()
	r.i++
}

// open starts reading [r.pos, end) from m (nil: the origin), falling back to the
// origin when m cannot be asked.
func (r *reader) open(m *Member, end int64) error {
	if m != nil && m.Up() {
		rc, err := r.ask(m, r.pos, end-r.pos)
		if err == nil {
			r.cur, r.curPeer = rc, m
			return nil
		}
		if r.ctx.Err() != nil {
			return r.ctx.Err()
		}
		if errors.Is(err, errVersion) {
			// The owner knows another version than this reader (one of the two
			// will learn of the change within its metadata TTL): not its fault.
			m.fallbacks.Add(1)
			r.o.g.log.Debug("peer has another version; reading from the origin", "peer", m.URL, "path", r.p, "err", err)
		} else {
			r.o.g.markDown(m, err)
			m.fallbacks.Add(1)
		}
	}
	rc, err := r.o.Origin.ReadRange(r.ctx, r.p, r.version, r.pos, end-r.pos)
	if err != nil {
		return err
	}
	r.cur, r.curPeer = rc, nil
	return nil
}

func (r *reader) peerFailed(err error) {
	m := r.curPeer
	r.closeCur()
	r.o.g.markDown(m, err)
	m.fallbacks.Add(1)
}

func (r *reader) closeCur() {
	if r.cur != nil {
		r.cur.Close()
		r.cur = nil
	}
	r.curPeer = nil
}

func (r *reader) Close() error {
	r.closeCur()
	r.i = len(r.segs)
	return nil
}

// splicingReader is the reader when a peer's body can splice (a plain http://
// member): the cache's fill moves the peer's bytes into its file
// (origin.FileWriter), and the server's read through to a plain-TCP client moves
// them to the client's socket (origin.ConnWriter), neither through user memory.
// A segment whose source cannot splice (an https peer, an origin without a raw
// body) is read with Read into a buffer and written from there. A peer that fails
// within a write is given up on as in Read, and the rest comes from the origin.
type splicingReader struct{ *reader }

var (
	_ origin.FileWriter = (*splicingReader)(nil)
	_ origin.ConnWriter = (*splicingReader)(nil)
)

// WriteToFile implements origin.FileWriter.
func (r *splicingReader) WriteToFile(f *os.File, off, n int64, mu sync.Locker) error {
	for n > 0 {
		end, err := r.ready()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		// A write never crosses a segment's end: the cache writes a chunk at a
		// time, and --peer-span is a whole number of chunks (cmd/cachegate checks
		// it), so a chunk lies in one span and so in one segment. A write that did
		// cross would go in two pieces, each from its own source.
		k := min(n, end-r.pos)
		fw, ok := r.cur.(origin.FileWriter)
		if pb, isPeer := r.cur.(*peerBody); isPeer {
			fw, ok = pb, pb.splices()
		}
		if !ok {
			if err := r.copyToFile(f, off, k, mu); err != nil {
				return err
			}
		} else if err := fw.WriteToFile(f, off, k, mu); err != nil {
			var se *origin.SinkError
			if r.curPeer == nil || errors.As(err, &se) || r.ctx.Err() != nil {
				return err // the origin's own error, the file's, or the caller gave up
			}
			// The peer failed within the piece: all of it again, from the origin
			// (what reached the file is overwritten with the same bytes).
			r.peerFailed(fmt.Errorf("body of %s at %d: %w", r.p, r.pos, err))
			continue
		} else {
			r.advance(k)
			if r.pos == end {
				r.endSegment()
			}
		}
		off += k
		n -= k
	}
	return nil
}

// copyBufSize is the most copyToFile and copyToConn hold at once.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// copyToFile reads n bytes with Read (falling over as it does) and writes them to f
// at off under mu.
func (r *splicingReader) copyToFile(f *os.File, off, n int64, mu sync.Locker) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	for n > 0 {
		b := (*bp)[:min(n, int64(len(*bp)))]
		if _, err := io.ReadFull(r.reader, b); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		mu.Lock()
		_, err := f.WriteAt(b, off)
		mu.Unlock()
		if err != nil {
			return &origin.SinkError{Err: err}
		}
		off += int64(len(b))
		n -= int64(len(b))
	}
	return nil
}

// WriteToConn implements origin.ConnWriter.
func (r *splicingReader) WriteToConn(dst origin.ConnSink, n int64) (int64, error) {
	var written int64
	for written < n {
		end, err := r.ready()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return written, err
		}
		k := min(n-written, end-r.pos)
		cw, ok := r.cur.(origin.ConnWriter)
		if pb, isPeer := r.cur.(*peerBody); isPeer {
			cw, ok = pb, pb.splices()
		}
		if !ok {
			w, err := r.copyToConn(dst, k)
			written += w
			if err != nil {
				return written, err
			}
			continue
		}
		w, err := cw.WriteToConn(dst, k)
		written += w
		r.advance(w)
		if err != nil {
			var se *origin.SinkError
			if r.curPeer == nil || errors.As(err, &se) || r.ctx.Err() != nil {
				return written, err // the origin's own error, the client's, or the caller gave up
			}
			// The peer failed mid-body: the rest from the origin.
			r.peerFailed(fmt.Errorf("body of %s at %d: %w", r.p, r.pos, err))
			continue
		}
		if r.pos == end {
			r.endSegment()
		}
	}
	return written, nil
}

// copyToConn reads n bytes with Read (falling over as it does) and writes them to
// dst; it returns how many dst took.
func (r *splicingReader) copyToConn(dst origin.ConnSink, n int64) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	var written int64
	for written < n {
		k, err := r.reader.Read((*bp)[:min(n-written, int64(len(*bp)))])
		if k > 0 {
			if _, werr := dst.Write((*bp)[:k]); werr != nil {
				return written, &origin.SinkError{Err: werr}
			}
			written += int64(k)
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return written, err
		}
	}
	return written, nil
}

// errVersion is a peer's 412: it has another version of the object.
var errVersion = errors.New("peer has another version")

// ask sends the ranged GET for [off, off+n) to m and checks the answer's head: 206,
// Content-Range exactly the range asked, the tag of the version asked. The body it
// returns fails when it pauses for longer than the timeout, or ends short.
func (r *reader) ask(m *Member, off, n int64) (io.ReadCloser, error) {
	g := r.o.g
	m.requests.Add(1)
	ctx, cancel := context.WithCancelCause(r.ctx)
	stall := time.AfterFunc(g.opts.Timeout, func() { cancel(errPeerTimeout) })
	req, err := http.NewRequestWithContext(ctx, "GET", m.base+"/"+origin.EscapePath(r.p), nil)
	if err != nil {
		stall.Stop()
		cancel(nil)
		return nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	req.Header.Set("If-Match", r.tag)
	g.authorize(req)
	pb := &peerBody{stall: stall, timeout: g.opts.Timeout, ctx: ctx, cancel: cancel, left: n, need: min(minProgress, n), due: time.Now().Add(g.opts.Timeout)}
	var resp *http.Response
	if m.raw != nil {
		// A raw body tells pb of each arrival, spliced or read.
		resp, err = m.raw.Do(ctx, req, pb.note)
	} else {
		resp, err = g.client.Do(req)
	}
	if err != nil {
		stall.Stop()
		cancel(nil)
		if c := context.Cause(ctx); errors.Is(c, errPeerTimeout) {
			return nil, fmt.Errorf("no answer within %v (--peer-timeout)", g.opts.Timeout)
		}
		return nil, err
	}
	if err := checkHead(resp, r.tag, off, n); err != nil {
		resp.Body.Close()
		stall.Stop()
		cancel(nil)
		return nil, err
	}
	pb.rc, pb.sized = resp.Body, resp.ContentLength >= 0
	pb.counted = pb.splices()
	return pb, nil
}

// checkHead checks a peer's answer to a ranged, conditional GET.
func checkHead(resp *http.Response, tag string, off, n int64) error {
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusPreconditionFailed:
		return errVersion
	default:
		return fmt.Errorf("answered %s to a ranged GET, want 206", resp.Status)
	}
	if got := resp.Header.Get("ETag"); got != tag {
		return fmt.Errorf("answered ETag %q for version tag %q", got, tag)
	}
	// TOTAL known: a peer always knows the size of the version it sends.
	start, last, total, ok := origin.ParseContentRange(resp.Header.Get("Content-Range"))
	if !ok || total < 0 {
		return fmt.Errorf("bad Content-Range %q", resp.Header.Get("Content-Range"))
	}
	if start != off || last != off+n-1 || total < off+n {
		return fmt.Errorf("answered Content-Range %q for bytes %d-%d", resp.Header.Get("Content-Range"), off, off+n-1)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != n {
		return fmt.Errorf("answered Content-Length %d for %d bytes", resp.ContentLength, n)
	}
	return nil
}

// minProgress is what a peer's body must bring in each --peer-timeout (or the rest
// of the body when less is left): a peer trickling a byte now and then, never
// pausing for a whole timeout, would otherwise hold its reader for hours (at a
// 2 s timeout this is a floor of 32 KiB/s, far below any working member).
const minProgress = 64 << 10

// peerBody is a peer's body under a stall timer: each minProgress of bytes (or the
// rest of the body) winds it back; when it fires, the request is cancelled and the
// read (or splice) fails with errPeerTimeout.
type peerBody struct {
	rc      io.ReadCloser
	stall   *time.Timer
	timeout time.Duration
	ctx     context.Context
	cancel  context.CancelCauseFunc
	left    int64 // bytes of the body still to come
	got     int64 // bytes since the timer was last wound back
	need    int64 // bytes that wind it back: min(minProgress, left) when it was
	sized   bool  // the answer had a Content-Length
	counted bool  // rc calls note itself (origin.RawClient's progress)
	// due is when the stall timer fires unless wound back (see pausingSink).
	due time.Time
	// restart runs the timer held between reads again (hold, run); nil when it runs.
	restart func()
}

// note counts k bytes of the body arrived, winding the stall timer back for each
// minProgress of them.
func (b *peerBody) note(k int64) {
	b.left -= k
	b.got += k
	if b.got >= b.need {
		b.due = time.Now().Add(b.timeout)
		b.stall.Reset(b.timeout)
		b.got, b.need = 0, min(minProgress, b.left)
	}
}

// Read reads with the stall timer running, and holds it between reads: the time
// a caller spends elsewhere (writing to a slow client, pacing for --bwlimit) is not
// the peer's.
func (b *peerBody) Read(p []byte) (int, error) {
	b.run()
	defer b.hold()
	k, err := b.rc.Read(p)
	if k > 0 && !b.counted {
		b.note(int64(k))
	}
	if err != nil && err != io.EOF {
		err = b.why(err)
	}
	return k, err
}

// hold stops the stall timer until the next read (run).
func (b *peerBody) hold() { b.restart = b.pause() }

// run restarts a held stall timer with the time it had left.
func (b *peerBody) run() {
	if b.restart != nil {
		b.restart()
		b.restart = nil
	}
}

// pause stops the timer, and returns what restarts it with the time it had left
// (a fresh timeout after each pause would let a trickling peer run forever):
// nothing when it has fired (the request is cancelled, and the next read from
// the peer fails).
func (b *peerBody) pause() func() {
	if !b.stall.Stop() {
		return func() {}
	}
	left := time.Until(b.due)
	return func() {
		b.due = time.Now().Add(left)
		b.stall.Reset(left)
	}
}

// why names a failure that the stall timer caused as the timeout; the
// destination's errors (origin.SinkError) stay as they are.
func (b *peerBody) why(err error) error {
	var se *origin.SinkError
	if errors.As(err, &se) || !errors.Is(context.Cause(b.ctx), errPeerTimeout) {
		return err
	}
	return fmt.Errorf("%w: the body paused for %v (--peer-timeout)", errPeerTimeout, b.timeout)
}

// splices reports whether the body can move its bytes without a copy: a raw body
// (origin.RawClient) with a Content-Length.
func (b *peerBody) splices() bool {
	_, ok := b.rc.(origin.ConnWriter)
	return ok
}

// WriteToFile implements origin.FileWriter for a body that splices().
func (b *peerBody) WriteToFile(f *os.File, off, n int64, mu sync.Locker) error {
	b.run()
	defer b.hold()
	if err := b.rc.(origin.FileWriter).WriteToFile(f, off, n, mu); err != nil {
		return b.why(err)
	}
	return nil
}

// WriteToConn implements origin.ConnWriter for a body that splices(). The stall
// timer stops while dst waits for its client: a slow client is not the peer's
// fault.
func (b *peerBody) WriteToConn(dst origin.ConnSink, n int64) (int64, error) {
	b.run()
	defer b.hold()
	w, err := b.rc.(origin.ConnWriter).WriteToConn(pausingSink{dst, b}, n)
	if err != nil {
		err = b.why(err)
	}
	return w, err
}

// pausingSink stops a peer body's stall timer while its destination takes bytes.
type pausingSink struct {
	dst origin.ConnSink
	b   *peerBody
}

func (s pausingSink) Write(p []byte) (int, error) {
	defer s.b.pause()()
	return s.dst.Write(p)
}

func (s pausingSink) SpliceFrom(fd int, n int64) error {
	defer s.b.pause()()
	return s.dst.SpliceFrom(fd, n)
}

func (b *peerBody) Close() error {
	b.stall.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}
