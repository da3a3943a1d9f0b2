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
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cachegate/cachegate/cache"
)

// SocketName is the control socket's name inside the cache directory.
const SocketName = "control.sock"

// Status is the document of `status --json` and the server's /-/status.
type Status struct {
	Pid    int          `json:"pid"`
	Cache  cache.Status `json:"cache"`
	Origin struct {
		URL          string `json:"url"`
		BytesFetched int64  `json:"bytes_fetched"`
	} `json:"origin"`
	Serve ServeStatus `json:"serve"`
}

// ServeStatus is the HTTP server's part of Status (zeros when none runs).
type ServeStatus struct {
	Listen          string           `json:"listen,omitempty"`
	Requests        int64            `json:"requests"`
	Connections     int64            `json:"connections"`
	BytesByTransfer map[string]int64 `json:"bytes_by_transfer"`
	Goroutines      int              `json:"goroutines,omitempty"`
	OpenFDs         int              `json:"open_fds,omitempty"`
}

// StatusOf assembles Status for c, with the server's figures from serve when set.
func StatusOf(c *cache.Cache, serve func() ServeStatus) Status {
	var st Status
	st.Pid = os.Getpid()
	st.Cache = c.Status()
	st.Origin.URL = c.Origin().String()
	st.Origin.BytesFetched = st.Cache.BytesFetched
	if serve != nil {
		st.Serve = serve()
	}
	if st.Serve.BytesByTransfer == nil {
		st.Serve.BytesByTransfer = map[string]int64{"sendfile": 0, "mmap": 0, "copy": 0}
	}
	return st
}

// Request is the body of the POST verbs.
type Request struct {
	Paths    []string `json:"paths,omitempty"`
	Parallel int      `json:"parallel,omitempty"`
	Repair   bool     `json:"repair,omitempty"`
	To       int64    `json:"to,omitempty"`
}

// Server answers the control API for one cache.
type Server struct {
	c     *cache.Cache
	serve func() ServeStatus
	srv   *http.Server
	path  string
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
	s := &Server{c: c, serve: serve, path: path}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { reply(w, StatusOf(c, serve), nil) })
	mux.HandleFunc("GET /v1/objects", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("origin") == "1" {
			objs, err := c.ObjectsInOrigin(r.Context(), q.Get("prefix"))
			reply(w, objs, err)
			return
		}
		reply(w, c.Objects(q.Get("prefix")), nil)
	})
	mux.HandleFunc("GET /v1/object", func(w http.ResponseWriter, r *http.Request) {
		info, err := c.Object(r.Context(), r.URL.Query().Get("path"))
		reply(w, info, err)
	})
	mux.HandleFunc("POST /v1/warm", func(w http.ResponseWriter, r *http.Request) { s.warm(w, r, false) })
	mux.HandleFunc("POST /v1/pin", func(w http.ResponseWriter, r *http.Request) { s.warm(w, r, true) })
	mux.HandleFunc("POST /v1/unpin", func(w http.ResponseWriter, r *http.Request) {
		req, err := decode(r)
		n := 0
		for _, p := range req.Paths {
			if err != nil {
				break
			}
			var k int
			k, err = c.Unpin(p)
			n += k
		}
		reply(w, map[string]int{"objects": n}, err)
	})
	mux.HandleFunc("POST /v1/evict", func(w http.ResponseWriter, r *http.Request) {
		req, err := decode(r)
		n := 0
		for _, p := range req.Paths {
			n += c.Evict(p)
		}
		reply(w, map[string]int{"objects": n}, err)
	})
	mux.HandleFunc("POST /v1/verify", func(w http.ResponseWriter, r *http.Request) {
		req, err := decode(r)
		if err != nil {
			reply(w, nil, err)
			return
		}
		res, err := c.Verify(r.Context(), req.Repair)
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/gc", func(w http.ResponseWriter, r *http.Request) {
		req, err := decode(r)
		freed, n := c.GC(req.To)
		reply(w, map[string]int64{"freed_bytes": freed, "objects": int64(n)}, err)
	})
	mux.HandleFunc("POST /v1/clear", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]int{"objects": c.Clear()}, nil)
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go s.srv.Serve(ln)
	return s, nil
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
	req, err := decode(r)
	if err != nil {
		reply(w, nil, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	last := time.Time{}
	st, err := s.c.Warm(r.Context(), req.Paths, req.Parallel, pin, func(p cache.WarmProgress) {
		if time.Since(last) < 100*time.Millisecond {
			return
		}
		last = time.Now()
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

func decode(r *http.Request) (Request, error) {
	var req Request
	err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req)
	if err != nil && err != io.EOF {
		return req, fmt.Errorf("bad request: %w", err)
	}
	return req, nil
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
		switch {
		case errors.Is(err, fs.ErrNotExist):
			e.Kind, code = "not_in_origin", http.StatusNotFound
		case errors.Is(err, cache.ErrNotCached):
			e.Kind, code = "not_cached", http.StatusNotFound
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
	return (e.Kind == "not_in_origin" && target == fs.ErrNotExist) || (e.Kind == "not_cached" && target == cache.ErrNotCached)
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
