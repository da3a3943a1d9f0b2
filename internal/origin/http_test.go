package origin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newFileServer serves dir the way many origins do: Go's FileServer (HTML index,
// Last-Modified, ranges), with a strong ETag added when etags is set.
func newFileServer(t *testing.T, dir string, etags bool) *httptest.Server {
	fsrv := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if etags {
			if fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(r.URL.Path))); err == nil && !fi.IsDir() {
				w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.ModTime().UnixNano(), fi.Size()))
			}
		}
		fsrv.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func readAll(t *testing.T, o Origin, p, version string, off, n int64) ([]byte, error) {
	t.Helper()
	rc, err := o.ReadRange(context.Background(), p, version, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestHTTPOrigin(t *testing.T) {
	for _, etags := range []bool{true, false} {
		t.Run(fmt.Sprintf("etags=%v", etags), func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "sub dir"), 0o755)
			name := "sub dir/a+b%c#d [x].txt"
			os.WriteFile(filepath.Join(dir, name), []byte("hello, world"), 0o644)
			srv := newFileServer(t, dir, etags)
			o, err := NewHTTP(srv.URL+"/", Options{Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			root, err := o.Stat(ctx, "")
			if err != nil || !root.IsDir {
				t.Fatalf("Stat root = %+v, %v", root, err)
			}
			d, err := o.Stat(ctx, "sub dir")
			if err != nil || !d.IsDir {
				t.Fatalf("Stat dir = %+v, %v", d, err)
			}
			ls, err := o.List(ctx, "sub dir")
			if err != nil || len(ls) != 1 || ls[0].Name != "a+b%c#d [x].txt" {
				t.Fatalf("List = %+v, %v", ls, err)
			}
			e, err := o.Stat(ctx, name)
			if err != nil || e.IsDir || e.Size != 12 || e.Version == "" {
				t.Fatalf("Stat file = %+v, %v", e, err)
			}
			if etags != strings.HasPrefix(e.Version, `"`) {
				t.Errorf("version %q: want an ETag version exactly when the server sends ETags", e.Version)
			}
			b, err := readAll(t, o, name, e.Version, 7, 5)
			if err != nil || string(b) != "world" {
				t.Fatalf("ReadRange = %q, %v", b, err)
			}
			if _, err := o.Stat(ctx, "missing"); !errors.Is(err, ErrNotExist) {
				t.Errorf("Stat missing: %v, want ErrNotExist", err)
			}
			// Replace the object: reads of the old version must fail, not mix.
			time.Sleep(1100 * time.Millisecond) // Last-Modified has 1 s resolution
			os.WriteFile(filepath.Join(dir, name), []byte("HELLO, WORLD"), 0o644)
			if b, err := readAll(t, o, name, e.Version, 0, 5); !errors.Is(err, ErrChanged) {
				t.Errorf("read of a replaced object = %q, %v; want ErrChanged", b, err)
			}
		})
	}
}

func TestHTTPShortBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Range", "bytes 0-9/10")
		w.Header().Set("Content-Length", "10")
		w.WriteHeader(http.StatusPartialContent)
		w.Write([]byte("01234")) // then the connection closes early
	}))
	defer srv.Close()
	o, _ := NewHTTP(srv.URL, Options{Timeout: 5 * time.Second})
	b, err := readAll(t, o, "f", `"v1"`, 0, 10)
	if err == nil {
		t.Fatalf("short body read as %q without error", b)
	}
	if !Retryable(err) {
		t.Errorf("short body error %v should be retryable", err)
	}
}

func TestHTTPRejectsWrongRange(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Range", "bytes 1-5/10")
		w.WriteHeader(http.StatusPartialContent)
		w.Write([]byte("12345"))
	}))
	defer srv.Close()
	o, _ := NewHTTP(srv.URL, Options{Timeout: 5 * time.Second})
	if b, err := readAll(t, o, "f", `"v1"`, 0, 5); err == nil {
		t.Fatalf("misplaced range accepted: %q", b)
	}
}

func TestNewOriginErrors(t *testing.T) {
	for _, spec := range []string{"ftp://x/", "relative/dir", "s3x://b", "http://"} {
		if _, err := New(spec, Options{}); err == nil {
			t.Errorf("New(%q) succeeded", spec)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("New(%q) error is not one line: %q", spec, err)
		}
	}
}

func TestLocalOriginRefusesEscapes(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("s"), 0o644)
	os.Symlink(filepath.Join(dir, "secret"), filepath.Join(root, "abs-link"))
	os.Symlink("../secret", filepath.Join(root, "rel-link"))
	os.WriteFile(filepath.Join(root, "ok"), []byte("ok"), 0o644)
	l, err := NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"abs-link", "rel-link"} {
		if _, err := l.Stat(context.Background(), p); !errors.Is(err, ErrNotExist) {
			t.Errorf("Stat(%s) = %v, want ErrNotExist", p, err)
		}
	}
	ls, err := l.List(context.Background(), "")
	if err != nil || len(ls) != 1 || ls[0].Name != "ok" {
		t.Errorf("List = %+v, %v; want only ok", ls, err)
	}
}

// A body that stalls is abandoned as soon as the request's context ends, long before
// the idle timeout, on the splice-capable client too (its reads and splices sit on
// socket deadlines, not on the context).
func TestHTTPBodyStopsWithContext(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Range", "bytes 0-9/10")
		w.Header().Set("Content-Length", "10")
		w.WriteHeader(http.StatusPartialContent)
		w.Write([]byte("01234"))
		w.(http.Flusher).Flush()
		<-release
	}))
	defer srv.Close()
	defer close(release)
	o, _ := NewHTTP(srv.URL, Options{Timeout: time.Minute})
	for _, splice := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		rc, err := o.ReadRange(ctx, "f", `"v1"`, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		if splice {
			fw, ok := rc.(FileWriter)
			if !ok {
				t.Fatal("the http:// body cannot splice")
			}
			f, _ := os.Create(filepath.Join(t.TempDir(), "out"))
			err = fw.WriteToFile(f, 0, 10, new(sync.Mutex))
			f.Close()
		} else {
			_, err = io.ReadAll(rc)
		}
		rc.Close()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("splice=%v: stalled body ended with %v, want context.Canceled", splice, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("splice=%v: cancelled read took %v", splice, took)
		}
	}
}

// bodyToSplice serves body as a 206 of the whole object, written by write, and
// returns the origin's reader of it and an empty file to splice it into; both are
// closed when the test ends.
func bodyToSplice(t *testing.T, body []byte, write func(http.ResponseWriter, []byte)) (FileWriter, *os.File) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(body)-1, len(body)))
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusPartialContent)
		write(w, body)
	}))
	t.Cleanup(srv.Close)
	o, _ := NewHTTP(srv.URL, Options{Timeout: time.Minute})
	rc, err := o.ReadRange(context.Background(), "f", `"v1"`, 0, int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return rc.(FileWriter), f
}

// spliceBody serves body as bodyToSplice does and splices it into a file in the
// pieces given (offset, length), returning the file's bytes.
func spliceBody(t *testing.T, body []byte, write func(http.ResponseWriter, []byte), pieces [][2]int64) []byte {
	t.Helper()
	fw, f := bodyToSplice(t, body, write)
	for _, piece := range pieces {
		if err := fw.WriteToFile(f, piece[0], piece[1], new(sync.Mutex)); err != nil {
			t.Fatalf("WriteToFile(%d, %d): %v", piece[0], piece[1], err)
		}
	}
	got, _ := os.ReadFile(f.Name())
	return got
}

// A body that arrives in many small segments fills the pipe's slots long before
// its bytes: the splice drains the pipe early instead of waiting on a socket that
// has data, and every byte lands where it belongs.
func TestHTTPSpliceSmallSegments(t *testing.T) {
	body := make([]byte, 3<<20+12345)
	for i := range body {
		body[i] = byte(i*7 + i>>11)
	}
	var pieces [][2]int64
	for off := int64(0); off < int64(len(body)); off += 1 << 20 {
		pieces = append(pieces, [2]int64{off, min(1<<20, int64(len(body))-off)})
	}
	got := spliceBody(t, body, func(w http.ResponseWriter, b []byte) {
		for ; len(b) > 0; b = b[min(len(b), 700):] {
			w.Write(b[:min(len(b), 700)])
			w.(http.Flusher).Flush()
		}
	}, pieces)
	if !bytes.Equal(got, body) {
		t.Fatal("spliced bytes differ from the body")
	}
}

// A body that came in with the response header is already in the client's buffer:
// it still splices, in as many pieces as the caller asks for.
func TestHTTPSpliceBufferedBody(t *testing.T) {
	body := []byte(strings.Repeat("0123456789", 10))
	got := spliceBody(t, body, func(w http.ResponseWriter, b []byte) { w.Write(b) }, [][2]int64{{0, 40}, {40, 60}})
	if !bytes.Equal(got, body) {
		t.Fatalf("got %q", got)
	}
}

// WriteToFile holds the caller's mutex only while it writes into the file: a body
// stalled at the origin leaves the mutex free for the object's other fetches.
func TestHTTPSpliceLocksOnlyToWrite(t *testing.T) {
	body := make([]byte, 3<<20)
	for i := range body {
		body[i] = byte(i*13 + i>>9)
	}
	stalled, resume := make(chan struct{}), make(chan struct{})
	fw, f := bodyToSplice(t, body, func(w http.ResponseWriter, b []byte) {
		w.Write(b[:2<<20])
		w.(http.Flusher).Flush()
		close(stalled)
		<-resume
		w.Write(b[2<<20:])
	})
	var mu countingMutex
	done := make(chan error, 1)
	go func() { done <- fw.WriteToFile(f, 0, int64(len(body)), &mu) }()
	<-stalled
	time.Sleep(300 * time.Millisecond) // the first 2 MiB have been written by now
	if !mu.TryLock() {
		close(resume)
		<-done
		t.Fatal("WriteToFile holds the mutex while the origin sends nothing")
	}
	mu.Unlock()
	close(resume)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if mu.locks.Load() == 0 {
		t.Error("WriteToFile never took the mutex")
	}
	if got, _ := os.ReadFile(f.Name()); !bytes.Equal(got, body) {
		t.Error("spliced bytes differ from the body")
	}
}

type countingMutex struct {
	sync.Mutex
	locks atomic.Int32
}

func (m *countingMutex) Lock() { m.Mutex.Lock(); m.locks.Add(1) }
