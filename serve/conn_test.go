package serve

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cachegate/cachegate/cache"
)

// TestBodySlowloris: requests announcing a body they never send cannot hold the
// connection slots (issue 19 point 7). GET and HEAD with a body get 400 at once, and
// the bearer token is checked before anything of another method's body is read.
func TestBodySlowloris(t *testing.T) {
	data := []byte("hello, world\n")
	ts := startTestServer(t, &stubOrigin{files: map[string][]byte{"x": data}}, cache.Options{}, Options{MaxConns: 5})
	var bad []net.Conn
	for i := 0; i < 5; i++ {
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		io.WriteString(nc, "GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\nab")
		bad = append(bad, nc)
	}
	start := time.Now()
	r := ts.get(t, "/x")
	if r.StatusCode != 200 || !bytes.Equal(r.body, data) {
		t.Fatalf("legitimate request: %d %q", r.StatusCode, r.body)
	}
	t.Logf("legitimate request answered in %v", time.Since(start))
	for i, nc := range bad {
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		r := readResponse(t, bufio.NewReader(nc), "GET with a body")
		if r.StatusCode != 400 {
			t.Errorf("GET %d with a body: %d, want 400", i, r.StatusCode)
		}
	}
	for _, raw := range []string{
		"GET /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
		"HEAD /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab",
		"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
	} {
		if r := ts.do(t, raw); r.StatusCode != 400 {
			t.Errorf("%q: %d, want 400", raw, r.StatusCode)
		}
	}

	// With a token: 401 before any byte of the body is read.
	ta := startTestServer(t, &stubOrigin{files: map[string][]byte{"x": data}}, cache.Options{}, Options{AuthToken: "secret"})
	if r := ta.do(t, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\nab"); r.StatusCode != 401 {
		t.Errorf("POST without the token, body pending: %d, want 401", r.StatusCode)
	}
	if r := ta.do(t, "POST /x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\nContent-Length: 60000\r\n\r\nab"); r.StatusCode != 405 {
		t.Errorf("POST with the token, body pending: %d, want 405", r.StatusCode)
	}
}

// TestRequestContextCancelledOnClientGone: a client that leaves while its request
// waits for the origin cancels the request's context, so the handler stops waiting
// (issue 19 point 8). Before, handlers ran under context.Background() and waited
// for the origin whoever was left to read the answer.
func TestRequestContextCancelledOnClientGone(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 16)
	o := &stubOrigin{files: map[string][]byte{"f": randomBytes(3 << 20)}, gate: func(ctx context.Context, p string, off, n int64) {
		started <- struct{}{}
		<-release
	}}
	ts := startTestServer(t, o, cache.Options{}, Options{})
	t.Cleanup(func() { close(release) })
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(nc, "GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the origin was never asked")
	}
	nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for ts.s.active.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the handler still waits for the origin 5 s after its client left")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if strings.Contains(ts.logs.String(), "level=ERROR") {
		t.Errorf("a departed client logged as an error:\n%s", ts.logs)
	}
}

// TestClientWatchKeepsRequests: watching for a departed client while a request
// waits for the origin neither eats nor delays the next request on the connection.
func TestClientWatchKeepsRequests(t *testing.T) {
	files := map[string][]byte{"a": randomBytes(100 << 10), "b": randomBytes(200 << 10), "c": randomBytes(10)}
	o := &stubOrigin{files: files, gate: func(ctx context.Context, p string, off, n int64) {
		time.Sleep(50 * time.Millisecond) // the handler waits, so the watch starts
	}}
	ts := startTestServer(t, o, cache.Options{}, Options{})
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	// One after the other, then two pipelined.
	for _, p := range []string{"a", "b"} {
		fmt.Fprintf(nc, "GET /%s HTTP/1.1\r\nHost: x\r\n\r\n", p)
		if r := readResponse(t, br, p); r.StatusCode != 200 || !bytes.Equal(r.body, files[p]) {
			t.Fatalf("GET /%s: %d, %d bytes", p, r.StatusCode, len(r.body))
		}
	}
	if _, err := ts.c.Evict(context.Background(), []string{"a"}, false); err != nil {
		t.Fatal(err)
	}
	io.WriteString(nc, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, p := range []string{"a", "c"} {
		if r := readResponse(t, br, p); r.StatusCode != 200 || !bytes.Equal(r.body, files[p]) {
			t.Fatalf("pipelined GET /%s: %d, %d bytes", p, r.StatusCode, len(r.body))
		}
	}
}

// TestRequestContext drives reqCtx on a real connection: nothing ends it while the
// client is there, the client closing or the server closing the connection ends
// it, and end stops the watch without taking a byte of the next request.
func TestRequestContext(t *testing.T) {
	s, err := New(nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	newConn := func() (net.Conn, *conn) {
		client, nc := loopbackPair(t)
		c := &conn{s: s, nc: nc, tcp: nc.(*net.TCPConn)}
		c.br = bufio.NewReader(nc)
		return client, c
	}
	ended := func(ctx context.Context) bool {
		select {
		case <-ctx.Done():
			return true
		case <-time.After(200 * time.Millisecond):
			return false
		}
	}

	client, c := newConn()
	ctx := c.newReqCtx()
	if ended(ctx) || ctx.Err() != nil {
		t.Fatal("ended with its client still there")
	}
	client.Close()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not ended 5 s after its client closed the connection")
	}
	if ctx.Err() != context.Canceled {
		t.Errorf("Err %v, want context.Canceled", ctx.Err())
	}

	client, c = newConn()
	ctx = c.newReqCtx()
	ended(ctx)
	c.nc.Close() // what Server.Close does
	if !ended(ctx) {
		t.Error("not ended when the server closed the connection")
	}

	client, c = newConn()
	ctx = c.newReqCtx()
	ended(ctx) // the watch runs
	io.WriteString(client, "next")
	if ended(ctx) {
		t.Error("ended by the client's next request")
	}
	ctx.end()
	if ctx.Err() != context.Canceled {
		t.Errorf("after end: Err %v, want Canceled", ctx.Err())
	}
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(io.LimitReader(c.br, 4)); string(b) != "next" {
		t.Errorf("the next request after the watch: %q, %v", b, err)
	}
	client.Close()
}
