// Package control is the management API of a running cachegate: the process that owns
// a cache directory (mount or serve) answers JSON over HTTP on a unix socket in it
// (mode 0600), and `cachegate cache …` and `cachegate status` use it while an owner
// runs.
package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/bwlimit"
	"github.com/cachegate/cachegate/internal/origin"
	"github.com/cachegate/cachegate/internal/peer"
)

// SocketName is the control socket's name inside the cache directory.
const SocketName = "control.sock"

// Status is the document of `status --json` and the server's /-/status.
type Status struct {
	Pid   int          `json:"pid"`
	Cache cache.Status `json:"cache"`
	// ObjectsByOrigin splits Cache.Objects by origin (credentials redacted): objects
	// another origin left in the directory (cache warm --origin) are counted there
	// but listed only by cache ls --all.
	ObjectsByOrigin map[string]int `json:"objects_by_origin"`
	Origin          struct {
		URL string `json:"url"`
		// BytesFetched is what came from the origin itself (not from peers).
		BytesFetched int64 `json:"bytes_fetched"`
	} `json:"origin"`
	Serve ServeStatus `json:"serve"`
	// Origins are the figures of each origin of a daemon's cache (origin.Mux), by
	// name: what of it is cached and what was read from it. Absent for one origin.
	Origins map[string]OriginStatus `json:"origins,omitempty"`
}

// OriginStatus is one origin of a daemon's cache in Status.
type OriginStatus struct {
	URL          string `json:"url"`
	Objects      int    `json:"objects"`
	CachedBytes  int64  `json:"cached_bytes"`
	Pinned       int    `json:"pinned"`
	BytesFetched int64  `json:"bytes_fetched"`
}

// ServeStatus is the HTTP server's part of Status (zeros when none runs).
type ServeStatus struct {
	Listen          string           `json:"listen,omitempty"`
	Requests        int64            `json:"requests"`
	Connections     int64            `json:"connections"`
	BytesByTransfer map[string]int64 `json:"bytes_by_transfer"`
	Goroutines      int              `json:"goroutines,omitempty"`
	OpenFDs         int              `json:"open_fds,omitempty"`
	// Peers is the peer group's members, when the server has one (--peers).
	Peers []peer.Status `json:"peers,omitempty"`
}

// StatusOf assembles Status for c, with the server's figures from serve when set.
func StatusOf(c *cache.Cache, serve func() ServeStatus) Status {
	var st Status
	st.Pid = os.Getpid()
	st.Cache = c.Status()
	st.Origin.URL = Redact(c.Origin().String())
	st.Origin.BytesFetched = st.Cache.BytesFetched
	st.ObjectsByOrigin = map[string]int{}
	for o, n := range c.ObjectsByOrigin() {
		st.ObjectsByOrigin[Redact(o)] += n
	}
	if m, ok := c.Origin().(*origin.Mux); ok {
		st.Origins = originsOf(c, m)
	}
	if serve != nil {
		st.Serve = serve()
	}
	// The cache counts what its origin reader brought; with a peer group, that
	// is the origin and the peers: the origin's share is what the peers did not.
	for _, p := range st.Serve.Peers {
		st.Origin.BytesFetched -= p.Bytes
	}
	if st.Serve.BytesByTransfer == nil {
		st.Serve.BytesByTransfer = map[string]int64{"sendfile": 0, "mmap": 0, "copy": 0}
	}
	return st
}

// originsOf is the figures of each route of m, the origin of c, in one pass over
// the cached objects.
func originsOf(c *cache.Cache, m *origin.Mux) map[string]OriginStatus {
	out := map[string]OriginStatus{}
	for _, name := range m.Names() {
		if o, ok := m.Get(name); ok {
			out[name] = OriginStatus{URL: Redact(o.String()), BytesFetched: m.BytesFetched(name)}
		}
	}
	for _, oi := range c.Objects("") {
		name, _, _ := strings.Cut(oi.Path, "/")
		s, ok := out[name]
		if !ok {
			continue // an origin removed since; its objects go by the LRU
		}
		s.Objects++
		s.CachedBytes += oi.CachedBytes
		if oi.Pinned {
			s.Pinned++
		}
		out[name] = s
	}
	return out
}

// Request is the body of the POST verbs. The owner refuses, with 400 and a message
// saying why, any field it does not know, a path that leaves the origin's root, and a
// number out of its range.
type Request struct {
	Paths    []string `json:"paths,omitempty"`
	Parallel int      `json:"parallel,omitempty"`
	Repair   bool     `json:"repair,omitempty"`
	To       int64    `json:"to,omitempty"`    // gc: 0 evicts every object neither pinned nor open
	Force    bool     `json:"force,omitempty"` // evict: pinned objects too
	// BWLimit paces the origin reads of this warm or pin, in bytes per second
	// (0: only the owner's own --bwlimit applies).
	BWLimit int64 `json:"bwlimit,omitempty"`
}

// Server answers the control API for one cache.
type Server struct {
	c     *cache.Cache
	serve func() ServeStatus
	srv   *http.Server
	path  string
	log   *slog.Logger
}

// Listen starts the control API on the cache directory's socket. serve, when set,
// reports the HTTP server's figures for status.
func Listen(c *cache.Cache, serve func() ServeStatus, log *slog.Logger) (*Server, error) {
	path := filepath.Join(c.Dir(), SocketName)
	os.Remove(path) // a stale socket from a killed owner; we hold the lock
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	os.Chmod(path, 0o600)
	s := &Server{c: c, serve: serve, path: path, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		_, _, err := parse(w, r)
		if err != nil {
			reply(w, nil, err)
			return
		}
		reply(w, StatusOf(c, serve), nil)
	})
	mux.HandleFunc("GET /v1/objects", func(w http.ResponseWriter, r *http.Request) {
		_, q, err := parse(w, r, "prefix", "origin", "all")
		var prefix string
		if err == nil {
			prefix, err = cleanPath(q.Get("prefix"))
		}
		if err == nil && q.Get("origin") != "" && q.Get("origin") != "1" {
			err = badRequestf("origin=%q: use origin=1 or leave it out", q.Get("origin"))
		}
		if err == nil && q.Get("all") != "" && (q.Get("all") != "1" || q.Get("origin") != "") {
			err = badRequestf("all=%q: use all=1 (without origin=1) or leave it out", q.Get("all"))
		}
		switch {
		case err != nil:
			reply(w, nil, err)
		case q.Get("all") == "1":
			reply(w, redacted(c.AllObjects(prefix)), nil)
		case q.Get("origin") == "1":
			objs, err := c.ObjectsInOrigin(r.Context(), prefix)
			reply(w, redacted(objs), err)
		default:
			reply(w, redacted(c.Objects(prefix)), nil)
		}
	})
	mux.HandleFunc("GET /v1/object", func(w http.ResponseWriter, r *http.Request) {
		_, q, err := parse(w, r, "path")
		var p string
		if err == nil {
			p, err = cleanPath(q.Get("path"))
		}
		if err != nil {
			reply(w, nil, err)
			return
		}
		info, err := c.Object(r.Context(), p)
		info.Origin = Redact(info.Origin)
		reply(w, info, err)
	})
	mux.HandleFunc("POST /v1/warm", func(w http.ResponseWriter, r *http.Request) { s.warm(w, r, false) })
	mux.HandleFunc("POST /v1/pin", func(w http.ResponseWriter, r *http.Request) { s.warm(w, r, true) })
	mux.HandleFunc("POST /v1/unpin", func(w http.ResponseWriter, r *http.Request) {
		req, _, err := parse(w, r)
		if err != nil {
			reply(w, nil, err)
			return
		}
		n, err := c.Unpin(r.Context(), req.Paths)
		reply(w, map[string]int{"objects": n}, err)
	})
	mux.HandleFunc("POST /v1/evict", func(w http.ResponseWriter, r *http.Request) {
		req, _, err := parse(w, r)
		if err != nil {
			reply(w, nil, err)
			return
		}
		n, err := c.Evict(r.Context(), req.Paths, req.Force)
		reply(w, map[string]int{"objects": n}, err)
	})
	mux.HandleFunc("POST /v1/verify", func(w http.ResponseWriter, r *http.Request) {
		req, _, err := parse(w, r)
		if err != nil {
			reply(w, nil, err)
			return
		}
		res, err := c.Verify(r.Context(), req.Repair)
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/gc", func(w http.ResponseWriter, r *http.Request) {
		req, _, err := parse(w, r)
		if err != nil {
			reply(w, nil, err)
			return
		}
		freed, n := c.GC(req.To)
		reply(w, map[string]int64{"freed_bytes": freed, "objects": int64(n)}, nil)
	})
	mux.HandleFunc("POST /v1/clear", func(w http.ResponseWriter, r *http.Request) {
		if _, _, err := parse(w, r); err != nil {
			reply(w, nil, err)
			return
		}
		reply(w, map[string]int{"objects": c.Clear()}, nil)
	})
	s.srv = &http.Server{Handler: s.logLeavers(mux), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go s.srv.Serve(ln)
	return s, nil
}

// logLeavers logs the calls whose client went away before the answer. net/http
// cancels a request's context when its connection closes (once the body has been read
// to its end, which parse makes sure of), and every verb works under that context, so
// a killed `cache ls` or `cache warm` stops its work in the owner.
func (s *Server) logLeavers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h.ServeHTTP(w, r)
		if r.Context().Err() != nil {
			s.log.Info("control: the client left before the answer; its work was cancelled",
				"call", r.Method+" "+r.URL.Path, "after", time.Since(start).Round(time.Millisecond))
		}
	})
}

// Close stops the API and removes the socket.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	return os.Remove(s.path)
}

// warm streams progress as JSON lines, then a final line with "done".
func (s *Server) warm(w http.ResponseWriter, r *http.Request, pin bool) {
	req, _, err := parse(w, r)
	if err != nil {
		reply(w, nil, err)
		return
	}
	// A fetch gives up when no chunk arrives for the origin timeout: a limit that
	// passes fewer than two chunks in that time would fail the warm, not slow it.
	if r, cs, to := req.BWLimit, s.c.ChunkSize(), s.c.OriginTimeout(); r > 0 && float64(2*cs)/float64(r) > to.Seconds() {
		reply(w, nil, badRequestf("bwlimit %d bytes/s passes fewer than two chunks of %d bytes per origin timeout (%v) of this cache's owner: raise the limit", r, cs, to))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	last := time.Time{}
	ctx := cache.WithBWLimit(r.Context(), bwlimit.New(req.BWLimit, s.c.ChunkSize()))
	st, err := s.c.Warm(ctx, req.Paths, req.Parallel, pin, func(p cache.WarmProgress) {
		if time.Since(last) < 100*time.Millisecond {
			return
		}
		last = time.Now()
		p.Missing = nil // on the final line only: it may hold every path asked for
		enc.Encode(ProgressLine{Progress: p})
		if flusher != nil {
			flusher.Flush()
		}
	})
	final := ProgressLine{Progress: st, Done: true}
	if err != nil {
		final.Error, final.NotFound = err.Error(), errors.Is(err, fs.ErrNotExist)
	}
	enc.Encode(final)
}

// ProgressLine is one line of a warm or pin stream.
type ProgressLine struct {
	Progress cache.WarmProgress `json:"progress"`
	Done     bool               `json:"done,omitempty"`
	Error    string             `json:"error,omitempty"`
	NotFound bool               `json:"not_found,omitempty"`
}

// Limits of a control request. The socket is the owner's user's alone (mode 0600),
// but a confused script must not make the owner spin or walk outside the origin.
const (
	// MaxParallel bounds Request.Parallel: files warmed at once, each one
	// goroutine and up to a readahead window of origin requests.
	MaxParallel = 64
	// MaxBody bounds a POST's JSON body (about 10,000 long paths): a client with
	// more paths sends them in several requests (cache warm --from).
	MaxBody = 1 << 20
	// bodyTimeout bounds the time a client may take to send a POST's body.
	bodyTimeout = 10 * time.Second
)

// badRequest is a control request the owner refuses: 400, whatever the verb.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badRequestf(format string, a ...any) error {
	return &badRequest{"bad control request: " + fmt.Sprintf(format, a...)}
}

// parse reads and checks a control request. A GET takes only the query parameters
// named in params, each at most once, and no body. A POST's body is read whole
// (at most MaxBody bytes, within bodyTimeout), so that its end is seen and net/http
// cancels the request's context when the client goes away; it must be one JSON
// Request with known fields only. Every path is cleaned as the CLI cleans it
// (origin.Clean), so none can leave the origin's root.
func parse(w http.ResponseWriter, r *http.Request, params ...string) (Request, url.Values, error) {
	var req Request
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		// A ';' in a value is refused by net/url: clients must escape it (%3B).
		return req, nil, badRequestf("query %q: %v (escape paths with url.QueryEscape)", r.URL.RawQuery, err)
	}
	for k, v := range q {
		if !slices.Contains(params, k) {
			return req, nil, badRequestf("unknown parameter %q for %s %s", k, r.Method, r.URL.Path)
		}
		if len(v) > 1 {
			return req, nil, badRequestf("parameter %q given %d times", k, len(v))
		}
	}
	if r.Method != http.MethodPost {
		if r.ContentLength != 0 {
			return req, nil, badRequestf("%s %s takes no body", r.Method, r.URL.Path)
		}
		return req, q, nil
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	rc.SetReadDeadline(time.Time{}) // the end of the body is seen: the connection is watched for the client leaving
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return req, nil, badRequestf("body larger than %d bytes", MaxBody)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return req, nil, badRequestf("body not received within %v", bodyTimeout)
	case err != nil:
		return req, nil, badRequestf("read body: %v", err)
	}
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return req, nil, badRequestf("%v", err)
		}
		if dec.More() {
			return req, nil, badRequestf("more than one JSON value in the body")
		}
	}
	return req, q, req.check()
}

// check refuses out-of-range numbers and cleans every path in place.
func (req *Request) check() error {
	if req.Parallel < 0 || req.Parallel > MaxParallel {
		return badRequestf("parallel %d is out of range: use 1 to %d (0: the default)", req.Parallel, MaxParallel)
	}
	if req.BWLimit < 0 {
		return badRequestf("bwlimit %d is negative: give bytes per second, or 0 for no limit", req.BWLimit)
	}
	if req.To < 0 {
		return badRequestf("to %d is negative: give the size in bytes to shrink the cache to", req.To)
	}
	for i, p := range req.Paths {
		c, err := cleanPath(p)
		if err != nil {
			return err
		}
		req.Paths[i] = c
	}
	return nil
}

// cleanPath turns a path of a request into an origin path exactly as the CLI does.
func cleanPath(p string) (string, error) {
	c, err := origin.Clean(p)
	if err != nil {
		return "", &badRequest{"bad control request: " + err.Error()}
	}
	return c, nil
}

// redacted names the origin of each object without its password.
func redacted(infos []cache.ObjectInfo) []cache.ObjectInfo {
	var name, red string // one origin in practice: parse it once
	for i := range infos {
		if o := infos[i].Origin; o != name {
			name, red = o, Redact(o)
		}
		infos[i].Origin = red
	}
	return infos
}

// Redact returns an origin spec or URL for printing: a password in it is replaced by
// "xxxxx" (net/url's URL.Redacted); in a URL net/url cannot parse, all that stands
// before an '@' is hidden. Specs without userinfo are returned as they are.
func Redact(spec string) string {
	u, err := url.Parse(spec)
	if err == nil {
		if u.User == nil {
			return spec
		}
		return u.Redacted()
	}
	// Unparseable, so its userinfo cannot be told apart: hide all before the last '@'.
	if i, at := strings.Index(spec, "://"), strings.LastIndex(spec, "@"); i >= 0 && at > i {
		return spec[:i+3] + "xxxxx" + spec[at:]
	}
	return spec
}

// apiError is the JSON of a failed call.
type apiError struct {
	Error string `json:"error"`
	Kind  string `json:"kind,omitempty"` // "not_in_origin", "not_cached"
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		e := apiError{Error: err.Error()}
		code := http.StatusInternalServerError
		var bad *badRequest
		switch {
		case errors.As(err, &bad):
			e.Kind, code = "bad_request", http.StatusBadRequest
		case errors.Is(err, fs.ErrNotExist):
			e.Kind, code = "not_in_origin", http.StatusNotFound
		case errors.Is(err, cache.ErrNotCached):
			e.Kind, code = "not_cached", http.StatusNotFound
		case errors.Is(err, cache.ErrPinned):
			e.Kind, code = "pinned", http.StatusConflict
		}
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(e)
		return
	}
	json.NewEncoder(w).Encode(v)
}

// ErrNoOwner means no process serves the cache directory's control socket.
var ErrNoOwner = errors.New("no cachegate owns this cache directory")

// Client talks to a running owner.
type Client struct {
	hc *http.Client
}

// Dial connects to the owner of cacheDir, or returns ErrNoOwner.
func Dial(cacheDir string) (*Client, error) {
	path := filepath.Join(cacheDir, SocketName)
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, ErrNoOwner
		}
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	c.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{hc: &http.Client{Transport: tr}}, nil
}

// Get calls a GET verb and decodes its answer into out.
func (c *Client) Get(path string, out any) error {
	resp, err := c.hc.Get("http://cachegate" + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeReply(resp, out)
}

// Post calls a POST verb and decodes its answer into out.
func (c *Client) Post(path string, req Request, out any) error {
	resp, err := c.post(path, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeReply(resp, out)
}

func (c *Client) post(path string, req Request) (*http.Response, error) {
	b, _ := json.Marshal(req)
	r, _ := http.NewRequest(http.MethodPost, "http://cachegate"+path, bytes.NewReader(b))
	r.Header.Set("Content-Type", "application/json")
	return c.hc.Do(r)
}

// Stream calls warm or pin and hands each progress line to f; it returns the last.
func (c *Client) Stream(path string, req Request, f func(ProgressLine)) (ProgressLine, error) {
	resp, err := c.post(path, req)
	if err != nil {
		return ProgressLine{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ProgressLine{}, decodeReply(resp, nil)
	}
	var last ProgressLine
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line ProgressLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return last, fmt.Errorf("bad progress line: %w", err)
		}
		last = line
		if f != nil {
			f(line)
		}
	}
	if !last.Done {
		return last, errors.New("the owner stopped answering before the end")
	}
	return last, sc.Err()
}

// CallError is an error answered by the owner.
type CallError struct {
	Msg  string
	Kind string
}

func (e *CallError) Error() string { return e.Msg }

// Is lets errors.Is see "not in origin" and "not cached" across the socket.
func (e *CallError) Is(target error) bool {
	return (e.Kind == "not_in_origin" && target == fs.ErrNotExist) || (e.Kind == "not_cached" && target == cache.ErrNotCached) ||
		(e.Kind == "pinned" && target == cache.ErrPinned)
}

func decodeReply(resp *http.Response, out any) error {
	if resp.StatusCode != http.StatusOK {
		var e apiError
		json.NewDecoder(resp.Body).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return &CallError{Msg: e.Error, Kind: e.Kind}
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
