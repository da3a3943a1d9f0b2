package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HTTP is a web server origin: files by GET with Range, directories by their index
// pages. The version of a file is its strong ETag or, failing that, its Last-Modified
// time and size; every ranged read is conditional on it (If-Match or
// If-Unmodified-Since) and its response is checked again, so a changed object surfaces
// as ErrChanged instead of mixed bytes.
type HTTP struct {
	base    *url.URL // always ends in "/"
	client  *http.Client
	raw     *rawClient // ranged reads over plain http://, spliced into the cache
	timeout time.Duration
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
	client := &http.Client{
		Transport: tr,
		// Redirects are answered by Stat itself: nginx, Apache and python all redirect
		// "dir" to "dir/", which is how a directory is told from a file.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	h := &HTTP{base: u, client: client, timeout: timeout}
	// Plain HTTP without a proxy: ranged reads go over connections cachegate owns, so
	// their bodies can be spliced. TLS bodies must be decrypted in user space anyway.
	if u.Scheme == "http" {
		if pu, _ := http.ProxyFromEnvironment(&http.Request{URL: u}); pu == nil {
			h.raw = newRawClient(u, timeout)
		}
	}
	return h, nil
}

func (h *HTTP) String() string { return h.base.String() }

// url returns the URL of origin path p (a directory URL when dir is set).
func (h *HTTP) url(p string, dir bool) string {
	u := *h.base
	if p != "" {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			segs[i] = url.PathEscape(s)
		}
		u.RawPath = h.base.EscapedPath() + strings.Join(segs, "/")
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
	if err == nil || errors.Is(err, ErrChanged) || errors.Is(err, ErrNotExist) || errors.Is(err, context.Canceled) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Temporary()
	}
	var ue *UsageError
	return !errors.As(err, &ue)
}

// retry runs f up to three times, with backoff, while it fails transiently. f
// returns retryable=false to stop at once with its error.
func retry[T any](ctx context.Context, f func() (T, bool, error)) (T, error) {
	var zero T
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
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
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", "cachegate")
		resp, err := h.client.Do(req)
		if err != nil {
			return nil, true, err
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
		return entryFromHeaders(name, resp.Header, resp.ContentLength)
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
	resp, err := h.do(ctx, http.MethodGet, u, hdr)
	if err != nil {
		return nil, err
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
	const maxListing = 256 << 20
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxListing+1))
	if err != nil {
		return nil, fmt.Errorf("read listing %s: %w", u, err)
	}
	if len(body) > maxListing {
		return nil, fmt.Errorf("listing %s is larger than %d MiB", u, maxListing>>20)
	}
	dirURL, _ := url.Parse(u)
	entries, err := ParseListing(resp.Header.Get("Content-Type"), body, dirURL)
	if err != nil {
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
	if h.raw != nil {
		return h.raw.readRange(ctx, u, hdr, version, off, n, nil)
	}
	ctx, cancel := context.WithCancel(ctx)
	resp, err := h.do(ctx, http.MethodGet, u, hdr)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := checkRange(resp, u, version, off, n); err != nil {
		resp.Body.Close()
		cancel()
		return nil, err
	}
	return newBodyReader(resp.Body, n, h.timeout, cancel, u), nil
}

// checkRange accepts a response only if it carries exactly bytes off..off+n-1 of the
// wanted version.
func checkRange(resp *http.Response, u, version string, off, n int64) error {
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, end, _, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != off || end != off+n-1 {
			return fmt.Errorf("%s: origin sent Content-Range %q for bytes %d-%d", u, resp.Header.Get("Content-Range"), off, off+n-1)
		}
	case http.StatusOK:
		// A server without range support sends everything; only usable for a read of
		// the whole object.
		if off != 0 || resp.ContentLength != n {
			return fmt.Errorf("%s: origin ignored the Range header (status 200): %w", u, ErrChanged)
		}
	case http.StatusPreconditionFailed, http.StatusNotFound, http.StatusGone, http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("%s: origin answered %d: %w", u, resp.StatusCode, ErrChanged)
	default:
		return &StatusError{URL: u, Status: resp.StatusCode}
	}
	if got := versionOf(resp.Header, version); got != "" && got != version {
		return fmt.Errorf("%s: version is now %s, not %s: %w", u, got, version, ErrChanged)
	}
	if resp.ContentLength != n {
		return fmt.Errorf("%s: origin sent Content-Length %d for a %d-byte range", u, resp.ContentLength, n)
	}
	return nil
}

// versionOf returns the version a response claims, in the form of want, or "" when the
// response does not say.
func versionOf(hdr http.Header, want string) string {
	if strongETag(want) {
		return hdr.Get("ETag")
	}
	return ""
}

// parseContentRange parses "bytes a-b/total" (total may be "*", reported as -1).
func parseContentRange(s string) (start, end, total int64, ok bool) {
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
	var err error
	if start, err = strconv.ParseInt(a, 10, 64); err != nil || start < 0 {
		return 0, 0, 0, false
	}
	if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
		return 0, 0, 0, false
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= end {
			return 0, 0, 0, false
		}
	}
	return start, end, total, true
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
