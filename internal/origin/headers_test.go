package origin

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// headerServer serves dir and refuses (403) any request whose X-Token is not
// *want, recording the method and Range of each refused or served request.
func headerServer(t *testing.T, dir string, want *string, mu *sync.Mutex, seen *[]string) string {
	fsrv := http.FileServer(http.Dir(dir))
	srv := newFileServer(t, dir, true)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ok := r.Header.Get("X-Token") == *want
		*seen = append(*seen, r.Method+" "+r.URL.Path+" range="+r.Header.Get("Range")+" auth="+r.Header.Get("Authorization"))
		mu.Unlock()
		if !ok {
			http.Error(w, "no token", http.StatusForbidden)
			return
		}
		fsrv.ServeHTTP(w, r)
	})
	return srv.URL
}

func TestHTTPOriginHeaders(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "d"), 0o755)
	os.WriteFile(filepath.Join(dir, "d", "f"), []byte("hello, world"), 0o644)
	var mu sync.Mutex
	var seen []string
	want := "secret"
	u := headerServer(t, dir, &want, &mu, &seen)
	u = strings.Replace(u, "http://", "http://alice:pw@", 1) + "/"
	o, err := NewHTTP(u, Options{Timeout: 5 * time.Second, Headers: []string{"X-Token: secret", "Authorization: Bearer tok"}})
	if err != nil {
		t.Fatal(err)
	}
	if o.raw == nil {
		t.Fatal("plain http origin without a proxy should use the raw splice path")
	}
	ctx := context.Background()
	if ls, err := o.List(ctx, "d"); err != nil || len(ls) != 1 {
		t.Fatalf("List = %v, %v", ls, err)
	}
	e, err := o.Stat(ctx, "d/f")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if b, err := readAll(t, o, "d/f", e.Version, 7, 5); err != nil || string(b) != "world" {
		t.Fatalf("ReadRange = %q, %v", b, err)
	}
	mu.Lock()
	defer mu.Unlock()
	var ranged bool
	for _, s := range seen {
		if !strings.HasSuffix(s, "auth=Bearer tok") {
			t.Errorf("request %q: --origin-header Authorization must win over the URL's userinfo", s)
		}
		ranged = ranged || strings.Contains(s, "range=bytes=")
	}
	if !ranged {
		t.Errorf("no ranged GET seen: %q", seen)
	}
}

func TestHTTPOriginHeaderFileRotates(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("hello, world"), 0o644)
	var mu sync.Mutex
	var seen []string
	want := "one"
	u := headerServer(t, dir, &want, &mu, &seen)
	hf := filepath.Join(t.TempDir(), "headers")
	os.WriteFile(hf, []byte("# token\nX-Token: one\n"), 0o600)
	o, err := NewHTTP(u+"/", Options{Timeout: 5 * time.Second, HeaderFile: hf})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := o.Stat(ctx, "f"); err != nil {
		t.Fatalf("Stat with the first token: %v", err)
	}
	mu.Lock()
	want = "two"
	mu.Unlock()
	os.WriteFile(hf, []byte("X-Token: two   \n"), 0o600)
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, err := o.Stat(ctx, "f")
		if err == nil {
			if b, err := readAll(t, o, "f", e.Version, 0, 5); err != nil || string(b) != "hello" {
				t.Fatalf("ReadRange after rotation = %q, %v", b, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated token not used within 10s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// An unreadable file keeps the last good headers.
	os.Remove(hf)
	time.Sleep(1100 * time.Millisecond)
	if _, err := o.Stat(ctx, "f"); err != nil {
		t.Fatalf("Stat after the header file vanished: %v (want the last good headers)", err)
	}
}

func TestParseHeadersRejects(t *testing.T) {
	for _, bad := range []string{"NoColon secret", "X-A: a\rb", "X-A: a\x00", "Host: x", "content-length: 3", "Transfer-Encoding: chunked", "Connection: close", "Range: bytes=0-1", "If-Match: x", "if-none-match: y", "Bad Name: v", ": v"} {
		_, err := ParseHeaders([]string{bad})
		if err == nil {
			t.Errorf("ParseHeaders(%q) accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "secret") || (strings.Contains(bad, ": ") && strings.Contains(err.Error(), bad[strings.Index(bad, ": ")+2:]) && len(bad[strings.Index(bad, ": ")+2:]) > 3) {
			t.Errorf("ParseHeaders(%q) error %q shows the value", bad, err)
		}
	}
	h, err := ParseHeaders([]string{"x-token:  s3cret ", "Authorization: Bearer a:b"})
	if err != nil || h.Get("X-Token") != "s3cret" || h.Get("Authorization") != "Bearer a:b" {
		t.Fatalf("ParseHeaders = %v, %v", h, err)
	}
}
