package origin

import (
	"container/list"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HTTP is a web server origin: files by GET with Range, directories by their index
// pages. The version of a file is its strong ETag or, failing that, its Last-Modified
// time and size; every ranged read is conditional on it (If-Match or
// If-Unmodified-Since) and its response is checked again, so a changed object surfaces
// as ErrChanged instead of mixed bytes.
type HTTP struct {
	base *url.URL // always ends in "/"; never holds credentials
	// auth is the Authorization header for the userinfo of the origin URL, sent
	// on every request (HEAD, listings and ranged GETs alike); "" without one.
	auth    string
	extra   http.Header // --origin-header; never logged
	file    *headerFile // --origin-header-file, or nil
	name    string      // the origin URL with its password redacted
	client  *http.Client
	raw     *rawClient // ranged reads over plain http://, spliced into the cache
	timeout time.Duration
	// maxEntries caps the entries of one directory listing.
	maxEntries int
	pins       etagPins
	sizes      etagPins // path and strong ETag -> the size its HEAD gave
	trustHTML  bool     // Options.TrustHTMLIndex
}

// NewHTTP returns an origin for the URL prefix raw (http:// or https://).
func NewHTTP(raw string, opts Options) (*HTTP, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, &UsageError{fmt.Sprintf("bad origin URL %q: use http://host[:port]/prefix/", raw)}
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, &UsageError{fmt.Sprintf("origin URL %q must not have a query or fragment", raw)}
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		u.RawPath = ""
	}
	// Credentials go in a header of every request, never into a URL that error
	// messages and logs print.
	name := u.Redacted()
	var auth string
	if u.User != nil {
		pw, _ := u.User.Password()
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pw))
		u.User = nil
	}
	extra, err := ParseHeaders(opts.Headers)
	if err != nil {
		return nil, &UsageError{"--origin-header: " + err.Error()}
	}
	var file *headerFile
	if opts.HeaderFile != "" {
		if file, err = newHeaderFile(opts.HeaderFile); err != nil {
			return nil, err
		}
	}
	// A netrc entry for the host is the last resort, as in curl: the URL's
	// userinfo and a user Authorization header both win over it.
	if auth == "" && extra.Get("Authorization") == "" && (file == nil || file.headers().Get("Authorization") == "") {
		c, found, err := netrcAuth(u.Hostname())
		if err != nil {
			return nil, err
		}
		if found {
			auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(c.login+":"+c.password))
		}
	}
	timeout := opts.Timeout
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		// Byte ranges and lengths must refer to the stored bytes, never a gzip stream.
		DisableCompression: true,
		ReadBufferSize:     256 << 10,
	}
	if u.Scheme == "https" {
		if tr.TLSClientConfig, err = tlsConfig(opts, u.Host, [2]string{"--origin-ca", opts.CAFile}); err != nil {
			return nil, err
		}
	}
	client := &http.Client{
		Transport: tr,
		// Redirects are answered by Stat itself: nginx, Apache and python all redirect
		// "dir" to "dir/", which is how a directory is told from a file.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	h := &HTTP{base: u, auth: auth, extra: extra, file: file, name: name, client: client, timeout: timeout, maxEntries: opts.maxDirEntries(), trustHTML: opts.TrustHTMLIndex}
	// Plain HTTP without a proxy: ranged reads go over connections cachegate owns, so
	// their bodies can be spliced. TLS bodies must be decrypted in user space anyway.
	if u.Scheme == "http" {
		if pu, _ := http.ProxyFromEnvironment(&http.Request{URL: u}); pu == nil {
			h.raw = newRawClient(u, timeout)
		}
	}
	return h, nil
}

// String names the origin with its password redacted ("http://alice:xxxxx@host/").
// It is also the cache's identity for the origin, which therefore survives a change
// of password but not of user.
func (h *HTTP) String() string { return h.name }

// header returns hdr (which may be nil) with the headers every origin request
// carries: credentials, and the identity encoding, since byte ranges and lengths
// must refer to the file's own bytes, never a compressed stream.
func (h *HTTP) header(hdr http.Header) http.Header {
	if hdr == nil {
		hdr = http.Header{}
	}
	hdr.Set("Accept-Encoding", "identity")
	if h.auth != "" {
		hdr.Set("Authorization", h.auth)
	}
	// User headers win over the URL's userinfo, and the file over the flag.
	for k, v := range h.extra {
		hdr[k] = v
	}
	if h.file != nil {
		for k, v := range h.file.headers() {
			hdr[k] = v
		}
	}
	return hdr
}

// EscapePath escapes each segment of an origin path for a URL.
func EscapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// url returns the URL of origin path p (a directory URL when dir is set).
func (h *HTTP) url(p string, dir bool) string {
	u := *h.base
	if p != "" {
		u.RawPath = h.base.EscapedPath() + EscapePath(p)
		u.Path = h.base.Path + p
		if dir {
			u.Path += "/"
			u.RawPath += "/"
		}
	}
	return u.String()
}

// StatusError is an unexpected HTTP status from the origin.
type StatusError struct {
	URL    string
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("origin answered %d %s for %s", e.Status, http.StatusText(e.Status), e.URL)
}

// Temporary reports whether retrying may help (5xx, 408, 429).
func (e *StatusError) Temporary() bool {
	return e.Status >= 500 || e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests
}

// Retryable reports whether err is worth another try: network errors, short bodies and
// temporary statuses are; a missing or changed object is not.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, ErrChanged) || errors.Is(err, ErrNotExist) || errors.Is(err, ErrTooManyEntries) || errors.Is(err, context.Canceled) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Temporary()
	}
	var ue *UsageError
	return !errors.As(err, &ue)
}

// retry runs f up to three times, with backoff, while it fails transiently (once when
// the caller retries itself: CallerRetries). f returns retryable=false to stop at
// once with its error.
func retry[T any](ctx context.Context, f func() (T, bool, error)) (T, error) {
	var zero T
	var lastErr error
	attempts := 3
	if CallerRetries(ctx) {
		attempts = 1
	}
	for attempt := 0; attempt < attempts; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt*attempt) * 100 * time.Millisecond):
			case <-ctx.Done():
				return zero, ctx.Err()
			}
		}
		v, again, err := f()
		if err == nil {
			return v, nil
		}
		if !again || ctx.Err() != nil {
			return zero, err
		}
		lastErr = err
	}
	return zero, lastErr
}

// do sends an idempotent request, retrying transient failures with backoff.
func (h *HTTP) do(ctx context.Context, method, u string, hdr http.Header) (*http.Response, error) {
	return retry(ctx, func() (*http.Response, bool, error) {
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return nil, false, err
		}
		for k, v := range h.header(hdr) {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", "cachegate")
		resp, err := h.client.Do(req)
		if err != nil {
			// An untrusted certificate stays untrusted: no second try.
			return nil, !certError(err), err
		}
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			resp.Body.Close()
			return nil, true, &StatusError{URL: u, Status: resp.StatusCode}
		}
		return resp, false, nil
	})
}

func (h *HTTP) Stat(ctx context.Context, p string) (Entry, error) {
	if p == "" {
		if _, err := h.List(ctx, ""); err != nil {
			return Entry{}, err
		}
		return Entry{IsDir: true, Exact: true}, nil
	}
	u := h.url(p, false)
	resp, err := h.do(ctx, http.MethodHead, u, nil)
	if err != nil {
		return Entry{}, err
	}
	resp.Body.Close()
	name := p[strings.LastIndexByte(p, '/')+1:]
	switch resp.StatusCode {
	case http.StatusOK:
		e, err := entryFromHeaders(name, resp.Header, resp.ContentLength)
		if err == nil && strongETag(e.Version) {
			// A range answer for this version must then be of an object this long,
			// even one that dropped the ETag on its way (a proxy) and ignored If-Match.
			h.sizes.pin(p+"\x00"+e.Version, strconv.FormatInt(e.Size, 10))
		}
		return e, err
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		loc, err := resp.Location()
		if err == nil && strings.HasSuffix(loc.Path, "/"+name+"/") {
			return Entry{Name: name, IsDir: true, Exact: true}, nil
		}
		return Entry{}, fmt.Errorf("%s: origin redirects to %s, which cachegate does not follow", u, resp.Header.Get("Location"))
	case http.StatusNotFound, http.StatusGone, http.StatusForbidden:
		return Entry{}, fmt.Errorf("%s: %w", p, ErrNotExist)
	}
	return Entry{}, &StatusError{URL: u, Status: resp.StatusCode}
}

// GetWhole reads file p in one GET, taking its attributes and version from that
// response, when it is at most max bytes (WholeGetter): for a small file the listing
// describes exactly, one request instead of a HEAD and a GET.
func (h *HTTP) GetWhole(ctx context.Context, p string, max int64) (Entry, []byte, error) {
	u := h.url(p, false)
	// identity: a body Go's transport decompressed would have no Content-Length.
	resp, err := h.do(ctx, http.MethodGet, u, http.Header{"Accept-Encoding": {"identity"}})
	if err != nil {
		return Entry{}, nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusGone, http.StatusForbidden:
		return Entry{}, nil, fmt.Errorf("%s: %w", p, ErrNotExist)
	default: // a redirect (a directory) included: Stat answers those
		return Entry{}, nil, &StatusError{URL: u, Status: resp.StatusCode}
	}
	e, err := entryFromHeaders(p[strings.LastIndexByte(p, '/')+1:], resp.Header, resp.ContentLength)
	if err != nil {
		return Entry{}, nil, err
	}
	if e.Size > max {
		return Entry{}, nil, fmt.Errorf("%s: %d bytes, more than the %d asked for whole", u, e.Size, max)
	}
	b := make([]byte, e.Size)
	if _, err := io.ReadFull(resp.Body, b); err != nil {
		return Entry{}, nil, fmt.Errorf("read %s: %w", u, err)
	}
	if strongETag(e.Version) { // as Stat does
		h.sizes.pin(p+"\x00"+e.Version, strconv.FormatInt(e.Size, 10))
	}
	return e, b, nil
}

func entryFromHeaders(name string, hdr http.Header, length int64) (Entry, error) {
	e := Entry{Name: name, Size: length, Exact: true}
	if length < 0 {
		return Entry{}, fmt.Errorf("%s: origin sent no Content-Length", name)
	}
	lm := hdr.Get("Last-Modified")
	if t, err := http.ParseTime(lm); err == nil {
		e.ModTime = t
	}
	if tag := hdr.Get("ETag"); strongETag(tag) {
		e.Version = tag
	} else if lm != "" {
		e.Version = "lm:" + lm + ";" + strconv.FormatInt(length, 10)
	} else {
		// Nothing identifies the content; only the size tells versions apart, and a
		// ranged read cannot be made conditional. Say so in the version string.
		e.Version = "size:" + strconv.FormatInt(length, 10)
	}
	return e, nil
}

func (h *HTTP) List(ctx context.Context, p string) ([]Entry, error) {
	u := h.url(p, true)
	hdr := http.Header{"Accept": {"application/json, text/html;q=0.9"}}
	ctx, guard, stop := guardProgress(ctx, h.timeout)
	defer stop()
	resp, err := h.do(ctx, http.MethodGet, u, hdr)
	if err != nil {
		return nil, guard.explain(u, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusGone:
		return nil, fmt.Errorf("%s: %w", p, ErrNotExist)
	case http.StatusForbidden:
		return nil, fmt.Errorf("origin refuses to list %s (403): enable directory listings (nginx: autoindex on)", u)
	default:
		return nil, &StatusError{URL: u, Status: resp.StatusCode}
	}
	dirURL, _ := url.Parse(u)
	entries, err := readListing(resp.Header.Get("Content-Type"), progressReader{resp.Body, guard}, dirURL, h.maxEntries, h.trustHTML)
	if err = guard.explain(u, err); err != nil {
		if errors.Is(err, ErrTooManyEntries) {
			return nil, err
		}
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	return entries, nil
}

func (h *HTTP) ReadRange(ctx context.Context, p, version string, off, n int64) (io.ReadCloser, error) {
	if n <= 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	u := h.url(p, false)
	hdr := http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", off, off+n-1)}}
	switch {
	case strongETag(version):
		hdr.Set("If-Match", version)
	case strings.HasPrefix(version, "lm:"):
		lm, _, _ := strings.Cut(version[3:], ";")
		hdr.Set("If-Unmodified-Since", lm)
	}
	want := rangeWant{url: u, version: version, off: off, n: n, pins: &h.pins, sizes: &h.sizes, key: p + "\x00" + version, encoded: true}
	hdr = h.header(hdr)
	if h.raw != nil {
		return h.raw.readRange(ctx, u, hdr, want, nil)
	}
	ctx, cancel := context.WithCancel(ctx)
	resp, err := h.do(ctx, http.MethodGet, u, hdr)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := want.check(resp); err != nil {
		resp.Body.Close()
		cancel()
		return nil, err
	}
	return newBodyReader(resp.Body, n, h.timeout, cancel, u), nil
}

// rangeWant is what an answer to a ranged GET must carry: exactly bytes off..off+n-1
// of the version they are read for.
type rangeWant struct {
	url     string // for messages; never holds credentials
	version string
	off, n  int64
	// pins remembers the first ETag seen for a version that has none (nil: S3,
	// whose versions are ETags); key names the path and version there.
	pins *etagPins
	// sizes holds the size a HEAD gave for a strong-ETag version (nil: S3).
	sizes *etagPins
	key   string
	// encoded refuses a Content-Encoding: a web server may compress what it
	// sends, while an S3 object's Content-Encoding is stored metadata that
	// describes its bytes as they are (versitygw echoes "aws-chunked" from the
	// upload).
	encoded bool
}

// check accepts a response only if it carries exactly the wanted bytes of the wanted
// version. Versions from a strong ETag are compared by ETag (and the request was
// conditional on it). Versions from Last-Modified or size are compared with
// everything the answer says, since an origin may ignore If-Unmodified-Since: the
// complete length must be the version's size, a Last-Modified must be the
// version's, and an ETag must be the first one seen for the version. A mismatch
// wraps ErrChanged.
func (w rangeWant) check(resp *http.Response) error {
	if ce := resp.Header.Get("Content-Encoding"); w.encoded && ce != "" && !strings.EqualFold(ce, "identity") {
		// Not retried: the origin will compress again.
		return &UsageError{fmt.Sprintf("%s: origin sent a %s-encoded body for a byte range although cachegate asked for the identity encoding: turn compression off for these files at the origin (nginx: gzip off, gzip_static off)", w.url, ce)}
	}
	total := int64(-1) // the complete length the answer claims; -1 when it does not say
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, end, tot, ok := ParseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != w.off || end != w.off+w.n-1 {
			return fmt.Errorf("%s: origin sent Content-Range %q for bytes %d-%d", w.url, resp.Header.Get("Content-Range"), w.off, w.off+w.n-1)
		}
		total = tot
	case http.StatusOK:
		// A server ignoring Range sends the whole object: usable only when that
		// is what was asked for.
		total = resp.ContentLength
	case http.StatusPreconditionFailed, http.StatusNotFound, http.StatusGone, http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("%s: origin answered %d: %w", w.url, resp.StatusCode, ErrChanged)
	default:
		return &StatusError{URL: w.url, Status: resp.StatusCode}
	}
	if err := w.sameVersion(resp.Header, total); err != nil {
		return err
	}
	if resp.StatusCode == http.StatusOK && (w.off != 0 || resp.ContentLength != w.n) {
		return fmt.Errorf("%s: origin ignored the Range header (status 200 with %d bytes for bytes %d-%d): cachegate needs an origin that serves byte ranges", w.url, resp.ContentLength, w.off, w.off+w.n-1)
	}
	if resp.ContentLength != w.n {
		return fmt.Errorf("%s: origin sent Content-Length %d for a %d-byte range", w.url, resp.ContentLength, w.n)
	}
	return nil
}

// sameVersion compares the validators of an answer with the wanted version; total
// is the complete length the answer claims (-1: unknown).
func (w rangeWant) sameVersion(hdr http.Header, total int64) error {
	tag := hdr.Get("ETag")
	if strongETag(w.version) {
		if tag != "" && tag != w.version {
			return fmt.Errorf("%s: version is now %s, not %s: %w", w.url, tag, w.version, ErrChanged)
		}
		if size, ok := w.sizes.get(w.key); ok && total >= 0 && strconv.FormatInt(total, 10) != size {
			return fmt.Errorf("%s: file is now %d bytes, not the %s of version %s: %w", w.url, total, size, w.version, ErrChanged)
		}
		return nil
	}
	lm, size, ok := parseWeakVersion(w.version)
	if !ok {
		return nil // an S3 object without an ETag: nothing to compare
	}
	if total < 0 {
		return fmt.Errorf("%s: origin did not say the complete length of the file (Content-Range \"…/*\"), and with neither an ETag nor a usable Last-Modified cachegate cannot tell its versions apart", w.url)
	}
	if total != size {
		return fmt.Errorf("%s: file is now %d bytes, not %d: %w", w.url, total, size, ErrChanged)
	}
	if got := hdr.Get("Last-Modified"); lm != "" && got != "" && !sameTime(got, lm) {
		return fmt.Errorf("%s: Last-Modified is now %s, not %s: %w", w.url, got, lm, ErrChanged)
	}
	if tag != "" && w.pins != nil {
		if first := w.pins.pin(w.key, tag); first != tag {
			return fmt.Errorf("%s: ETag is now %s, not %s: %w", w.url, tag, first, ErrChanged)
		}
	}
	return nil
}

// sameTime compares two HTTP dates, as times when both parse.
func sameTime(a, b string) bool {
	ta, ea := http.ParseTime(a)
	tb, eb := http.ParseTime(b)
	if ea == nil && eb == nil {
		return ta.Equal(tb)
	}
	return a == b
}

// parseWeakVersion splits a version made without an ETag: "lm:<Last-Modified>;<size>"
// or "size:<size>" (lm is "" then).
func parseWeakVersion(v string) (lm string, size int64, ok bool) {
	var num string
	switch {
	case strings.HasPrefix(v, "lm:"):
		i := strings.LastIndexByte(v, ';')
		if i < 3 {
			return "", 0, false
		}
		lm, num = v[3:i], v[i+1:]
	case strings.HasPrefix(v, "size:"):
		num = v[5:]
	default:
		return "", 0, false
	}
	size, err := strconv.ParseInt(num, 10, 64)
	return lm, size, err == nil && size >= 0
}

// etagPins remembers, per path and version without an ETag, the first ETag a range
// answer carried, so that a later answer with another ETag is a change even though
// the version itself (from a HEAD without one) cannot say so; HTTP.sizes uses it for
// the size a HEAD gave a strong ETag. Bounded: when full it forgets the least
// recently used pin, losing only that pin's extra check (length and Last-Modified
// still hold), so a busy origin never loses the pins of the files being read.
type etagPins struct {
	mu  sync.Mutex
	m   map[string]*list.Element // of *etagPin
	lru list.List                // most recently used at the front
}

type etagPin struct{ key, tag string }

// maxETagPins bounds the pins; each costs its key (path and version), its tag and
// some 150 bytes of map and list.
const maxETagPins = 1 << 14

// get returns what was pinned for key, if anything (p may be nil).
func (p *etagPins) get(key string) (string, bool) {
	if p == nil {
		return "", false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	el, ok := p.m[key]
	if !ok {
		return "", false
	}
	p.lru.MoveToFront(el)
	return el.Value.(*etagPin).tag, true
}

func (p *etagPins) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}

// pin returns the ETag first seen for key, recording tag when there is none.
func (p *etagPins) pin(key, tag string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if el, ok := p.m[key]; ok {
		p.lru.MoveToFront(el)
		return el.Value.(*etagPin).tag
	}
	if p.m == nil {
		p.m = make(map[string]*list.Element)
	}
	if len(p.m) >= maxETagPins {
		oldest := p.lru.Back()
		p.lru.Remove(oldest)
		delete(p.m, oldest.Value.(*etagPin).key)
	}
	p.m[key] = p.lru.PushFront(&etagPin{key: key, tag: tag})
	return tag
}

// ParseContentRange parses a Content-Range header, "bytes FIRST-LAST/TOTAL", in the
// canonical form servers write (digits only: no sign, no leading zero), with FIRST <=
// LAST < TOTAL; TOTAL may be "*" (unknown), returned as -1.
func ParseContentRange(s string) (first, last, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	if first, ok = canonicalInt(a); !ok {
		return 0, 0, 0, false
	}
	if last, ok = canonicalInt(b); !ok || last < first {
		return 0, 0, 0, false
	}
	if tot == "*" {
		return first, last, -1, true
	}
	if total, ok = canonicalInt(tot); !ok || total <= last {
		return 0, 0, 0, false
	}
	return first, last, total, true
}

// canonicalInt parses a non-negative decimal written as strconv.FormatInt would.
func canonicalInt(s string) (int64, bool) {
	if s == "" || s[0] < '0' || s[0] > '9' || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

// bodyReader delivers exactly n bytes or an error: a body that ends early is
// io.ErrUnexpectedEOF, one that stalls longer than the idle timeout is cancelled.
type bodyReader struct {
	body   io.ReadCloser
	left   int64
	idle   time.Duration
	timer  *time.Timer
	cancel context.CancelFunc
	url    string
}

func newBodyReader(body io.ReadCloser, n int64, idle time.Duration, cancel context.CancelFunc, u string) *bodyReader {
	r := &bodyReader{body: body, left: n, idle: idle, cancel: cancel, url: u}
	r.timer = time.AfterFunc(idle, cancel)
	return r
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	r.timer.Reset(r.idle)
	n, err := r.body.Read(p)
	r.left -= int64(n)
	if err == io.EOF && r.left > 0 {
		err = fmt.Errorf("%s: body ended %d bytes early: %w", r.url, r.left, io.ErrUnexpectedEOF)
	} else if err != nil && err != io.EOF {
		err = fmt.Errorf("%s: %w", r.url, err)
	} else if r.left == 0 {
		err = io.EOF
	}
	return n, err
}

func (r *bodyReader) Close() error {
	r.timer.Stop()
	err := r.body.Close()
	r.cancel()
	return err
}
