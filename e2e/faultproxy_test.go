package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultKind is one way for an origin to misbehave.
type faultKind int

const (
	faultNone      faultKind = iota
	faultDelay               // answer after a pause
	faultStatus              // answer with an error status instead
	faultReset               // send the header and half the body, then a TCP RST
	faultTruncate            // send the header and half the body, then close (FIN)
	faultBadLength           // a Content-Length 1000 bytes short of the Content-Range, and that many bytes
	faultTrickle             // the body in small pieces with pauses, slow but steady
	faultStall               // the header and half the body, then silence for a long time
)

// fault says what to break and when.
type fault struct {
	kind   faultKind
	status int           // for faultStatus
	delay  time.Duration // for faultDelay and faultStall
	// once breaks only the first request of each distinct (path, Range): its retry
	// goes through, so a client that retries must succeed. Otherwise every data
	// request is broken.
	once bool
}

// faultProxy is an HTTP origin between cachegate and nginx that breaks data requests
// (GETs with a Range header) as its current fault says, and can pretend that chosen
// files changed: new ETag, different bytes, conditionals ignored — the worst origin.
type faultProxy struct {
	URL      string
	ln       net.Listener
	upstream string
	client   *http.Transport

	mu       sync.Mutex
	fault    fault
	seen     map[string]bool // request keys already broken once
	changed  map[string]bool // URL paths that now have "new content"
	injected atomic.Int64    // responses broken so far
	conns    sync.WaitGroup
	open     map[net.Conn]bool
	done     chan struct{} // closed when the proxy stops
}

// changedETag is the ETag of the "new version" of a changed file; its bytes are the
// original ones XOR changedXOR.
const (
	changedETag = `"cachegate-test-changed"`
	changedXOR  = 0x5a
)

func startFaultProxy(t testing.TB, upstreamURL string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := strings.TrimSuffix(strings.TrimPrefix(upstreamURL, "http://"), "/")
	p := &faultProxy{
		URL: "http://" + ln.Addr().String() + "/", ln: ln, upstream: up,
		client: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
		seen:   map[string]bool{}, changed: map[string]bool{}, open: map[net.Conn]bool{}, done: make(chan struct{}),
	}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// set makes f the fault for requests from now on, forgetting which were broken.
func (p *faultProxy) set(f fault) {
	p.mu.Lock()
	p.fault = f
	p.seen = map[string]bool{}
	p.mu.Unlock()
}

// change makes the file at URL path u look changed (or unchanged again).
func (p *faultProxy) change(u string, changed bool) {
	p.mu.Lock()
	p.changed[u] = changed
	p.mu.Unlock()
}

func (p *faultProxy) close() {
	close(p.done)
	p.ln.Close()
	p.mu.Lock()
	for c := range p.open {
		c.Close()
	}
	p.mu.Unlock()
	p.conns.Wait()
	p.client.CloseIdleConnections()
}

func (p *faultProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.open[c] = true
		p.mu.Unlock()
		p.conns.Add(1)
		go func() {
			defer p.conns.Done()
			p.serveConn(c)
			c.Close()
			p.mu.Lock()
			delete(p.open, c)
			p.mu.Unlock()
		}()
	}
}

// pick returns the fault for req and whether its path is changed.
func (p *faultProxy) pick(req *http.Request) (fault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := p.changed[req.URL.Path]
	f := p.fault
	if req.Method != http.MethodGet || req.Header.Get("Range") == "" || f.kind == faultNone {
		return fault{}, changed
	}
	if f.once {
		key := req.URL.Path + " " + req.Header.Get("Range")
		if p.seen[key] {
			return fault{}, changed
		}
		p.seen[key] = true
	}
	return f, changed
}

func (p *faultProxy) serveConn(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		f, changed := p.pick(req)
		out, err := http.NewRequest(req.Method, "http://"+p.upstream+req.URL.RequestURI(), nil)
		if err != nil {
			return
		}
		out.Header = req.Header.Clone()
		if changed {
			// nginx only knows the real version: the "new" one ignores conditionals.
			for _, h := range []string{"If-Match", "If-Range", "If-None-Match", "If-Unmodified-Since", "If-Modified-Since"} {
				out.Header.Del(h)
			}
		}
		resp, err := p.client.RoundTrip(out)
		if err != nil {
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return
		}
		if changed {
			resp.Header.Set("ETag", changedETag)
			for i := range body {
				body[i] ^= changedXOR
			}
		}
		if f.kind != faultNone {
			p.injected.Add(1)
		}
		if !p.respond(c, f, req, resp, body) {
			return
		}
	}
}

// respond writes resp with body to c, broken as f says; false closes the connection.
func (p *faultProxy) respond(c net.Conn, f fault, req *http.Request, resp *http.Response, body []byte) bool {
	head := func(status int, length int) []byte {
		var b strings.Builder
		fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
		resp.Header.Del("Content-Length")
		resp.Header.Del("Transfer-Encoding")
		resp.Header.Write(&b)
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", length)
		return []byte(b.String())
	}
	send := func(status int, b []byte) bool {
		out := head(status, len(b))
		if req.Method != http.MethodHead {
			out = append(out, b...)
		} else if status == resp.StatusCode {
			out = head(status, int(resp.ContentLength))
		}
		_, err := c.Write(out)
		return err == nil
	}
	half := body[:len(body)/2]
	switch f.kind {
	case faultDelay:
		time.Sleep(f.delay)
	case faultStatus:
		resp.Header = http.Header{"Content-Type": {"text/plain"}}
		return send(f.status, []byte("injected failure\n"))
	case faultReset:
		c.Write(append(head(resp.StatusCode, len(body)), half...))
		c.(*net.TCPConn).SetLinger(0)
		return false
	case faultTruncate:
		c.Write(append(head(resp.StatusCode, len(body)), half...))
		return false
	case faultBadLength:
		if len(body) > 1000 {
			return send(resp.StatusCode, body[:len(body)-1000])
		}
	case faultTrickle:
		if _, err := c.Write(head(resp.StatusCode, len(body))); err != nil {
			return false
		}
		for len(body) > 0 {
			k := min(len(body), 32<<10)
			if _, err := c.Write(body[:k]); err != nil {
				return false
			}
			body = body[k:]
			time.Sleep(10 * time.Millisecond)
		}
		return true
	case faultStall:
		c.Write(append(head(resp.StatusCode, len(body)), half...))
		select {
		case <-time.After(f.delay):
		case <-p.done:
		}
		return false
	}
	return send(resp.StatusCode, body)
}
