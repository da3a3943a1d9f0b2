package cache

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
)

// dirServer serves directories of small files as nginx's JSON autoindex (exact
// sizes) with validators, recording the methods asked of every file. A file with a
// gate waits for it to close before it answers, and says so on arrived first.
type dirServer struct {
	files map[string][]byte // "/d/f00" -> body
	mu    sync.Mutex
	reqs  map[string][]string
	gates map[string]chan struct{}
	// arrived gets the path of every gated request as it arrives.
	arrived chan string
}

func newDirServer(dirs, files, size int) *dirServer {
	s := &dirServer{files: map[string][]byte{}, reqs: map[string][]string{}, gates: map[string]chan struct{}{}, arrived: make(chan string, 1024)}
	for d := 0; d < dirs; d++ {
		for f := 0; f < files; f++ {
			s.files[fmt.Sprintf("/d%d/f%02d", d, f)] = bytes.Repeat([]byte{byte('a' + d), byte('A' + f)}, size/2)
		}
	}
	return s
}

func (s *dirServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mtime := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if strings.HasSuffix(r.URL.Path, "/") {
		var names []string
		for p := range s.files {
			if dir, name, _ := strings.Cut(p[1:], "/"); "/"+dir+"/" == r.URL.Path || r.URL.Path == "/" && name != "" {
				if r.URL.Path == "/" {
					names = append(names, dir+"/")
				} else {
					names = append(names, name)
				}
			}
		}
		sort.Strings(names)
		w.Header().Set("Content-Type", "application/json")
		var parts []string
		for i, n := range names {
			if strings.HasSuffix(n, "/") {
				if i > 0 && names[i-1] == n {
					continue
				}
				parts = append(parts, fmt.Sprintf(`{"name":%q,"type":"directory","mtime":%q}`, strings.TrimSuffix(n, "/"), mtime.Format(http.TimeFormat)))
				continue
			}
			parts = append(parts, fmt.Sprintf(`{"name":%q,"type":"file","mtime":%q,"size":%d}`, n, mtime.Format(http.TimeFormat), len(s.files[r.URL.Path+n])))
		}
		fmt.Fprintf(w, "[%s]", strings.Join(parts, ","))
		return
	}
	body, ok := s.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	s.reqs[r.URL.Path] = append(s.reqs[r.URL.Path], r.Method)
	gate := s.gates[r.URL.Path]
	s.mu.Unlock()
	if gate != nil {
		s.arrived <- r.URL.Path
		<-gate
	}
	w.Header().Set("ETag", `"v1"`)
	http.ServeContent(w, r, "f", mtime, bytes.NewReader(body))
}

// next returns the next gated request's path, failing the test after 10s.
func (s *dirServer) next(t *testing.T) string {
	t.Helper()
	select {
	case p := <-s.arrived:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no request arrived at a gate in 10s")
		return ""
	}
}

// gate makes requests for path wait until the returned function is called.
func (s *dirServer) gate(path string) (open func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.gates[path] = ch
	s.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// requested returns the methods asked of each file so far.
func (s *dirServer) requested() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]string{}
	for p, m := range s.reqs {
		out[p] = append([]string(nil), m...)
	}
	return out
}

// prefetchFixture is a cache over a dirServer with prefetch set to ahead files.
func prefetchFixture(t *testing.T, s *dirServer, ahead, parallel int, limit int64) *Cache {
	t.Helper()
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	o, err := origin.NewHTTP(srv.URL+"/", origin.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	f.opts.Prefetch, f.opts.PrefetchParallel = ahead, parallel
	if limit > 0 {
		f.opts.Limit = limit
	}
	c, err := Open(o, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readFile reads p whole through a reader's Open and checks its bytes.
func (s *dirServer) readFile(t *testing.T, c *Cache, p string) {
	t.Helper()
	got, err := readAll(c, p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	if !bytes.Equal(got, s.files["/"+p]) {
		t.Fatalf("read %s: %d bytes, not the file's %d", p, len(got), len(s.files["/"+p]))
	}
}

// prefetchIdle waits until the prefetcher has nothing queued or running.
func waitPrefetchIdle(t *testing.T, c *Cache) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c.prefetch.mu.Lock()
		idle := c.prefetch.workers == 0
		c.prefetch.mu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("prefetches still running after 10s")
		}
	}
}

func listDir(t *testing.T, c *Cache, dir string) {
	t.Helper()
	if _, err := c.List(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
}

// Reading files 0..k of a directory in turn fetches the next files ahead of the
// reader, no more than N beyond its last open, each with one GET; the prefetched
// files then read without a request, and count as useful.
func TestPrefetchFetchesAheadAndStops(t *testing.T) {
	const ahead, k = 4, 3
	s := newDirServer(1, 20, 1000)
	c := prefetchFixture(t, s, ahead, 2, 0)
	listDir(t, c, "d0")
	for i := 0; i < k; i++ {
		s.readFile(t, c, fmt.Sprintf("d0/f%02d", i))
	}
	waitPrefetchIdle(t, c)
	// The reader's last open was f02: f03..f06 are fetched ahead, nothing after.
	reqs := s.requested()
	for i := 0; i < 20; i++ {
		p := fmt.Sprintf("/d0/f%02d", i)
		want := 0
		if i < k+ahead {
			want = 1
		}
		if len(reqs[p]) != want || want == 1 && reqs[p][0] != "GET" {
			t.Errorf("%s: requests %v, want %d GET", p, reqs[p], want)
		}
	}
	m := c.Metrics()
	if m.PrefetchedFiles < ahead || m.PrefetchedBytes != m.PrefetchedFiles*1000 {
		t.Errorf("prefetched %d files, %d bytes; want at least %d files of 1000 bytes", m.PrefetchedFiles, m.PrefetchedBytes, ahead)
	}
	// Waiting longer fetches nothing more: the reader stopped.
	time.Sleep(c.prefetch.idle + 100*time.Millisecond)
	if got := len(s.requested()); got != k+ahead {
		t.Errorf("%d files asked of the origin after the reader stopped, want %d", got, k+ahead)
	}
	// The prefetched files read from the cache: no request more, each useful.
	before := c.Metrics().PrefetchUseful
	for i := k; i < k+ahead; i++ {
		s.readFile(t, c, fmt.Sprintf("d0/f%02d", i))
	}
	if got := c.Metrics().PrefetchUseful - before; got != ahead {
		t.Errorf("%d prefetched files read counted useful, want %d", got, ahead)
	}
	waitPrefetchIdle(t, c)
	for p, m := range s.requested() {
		if len(m) != 1 || m[0] != "GET" {
			t.Errorf("%s: requests %v, want one GET", p, m)
		}
	}
}

// With prefetch off (0), a reader's opens fetch nothing but what it reads.
func TestPrefetchOffFetchesNothingExtra(t *testing.T) {
	s := newDirServer(1, 10, 1000)
	c := prefetchFixture(t, s, 0, 0, 0)
	if c.prefetch != nil {
		t.Fatal("prefetcher made with Prefetch 0")
	}
	listDir(t, c, "d0")
	for i := 0; i < 3; i++ {
		s.readFile(t, c, fmt.Sprintf("d0/f%02d", i))
	}
	time.Sleep(100 * time.Millisecond)
	if got := s.requested(); len(got) != 3 {
		t.Errorf("prefetch off: the origin was asked for %v, want the 3 files read", got)
	}
}

// Queued prefetches of a directory whose reader went away are dropped: after the
// reader's last open, at most the ones already running are fetched.
func TestPrefetchDropsQueuedWhenReaderGoesAway(t *testing.T) {
	s := newDirServer(1, 20, 1000)
	open := s.gate("/d0/f01")
	defer open()
	c := prefetchFixture(t, s, 8, 1, 0)
	c.prefetch.idle = 50 * time.Millisecond
	listDir(t, c, "d0")
	s.readFile(t, c, "d0/f00") // queues f01..f08; the one worker waits on f01
	if p := s.next(t); p != "/d0/f01" {
		t.Fatalf("first prefetch asked for %s, want /d0/f01", p)
	}
	time.Sleep(3 * c.prefetch.idle) // the reader has gone away
	open()
	waitPrefetchIdle(t, c)
	got := s.requested()
	if len(got) != 2 || len(got["/d0/f00"]) != 1 || len(got["/d0/f01"]) != 1 {
		t.Errorf("after the reader went away the origin was asked for %v, want f00 and the running f01 only", got)
	}
}

// A file opened while it is being prefetched costs one GET in all: the reader joins
// the prefetch's request.
func TestPrefetchSharedWithReader(t *testing.T) {
	s := newDirServer(1, 10, 3000)
	open := s.gate("/d0/f01")
	defer open()
	c := prefetchFixture(t, s, 2, 2, 0)
	listDir(t, c, "d0")
	s.readFile(t, c, "d0/f00")
	if p := s.next(t); p != "/d0/f01" {
		t.Fatalf("prefetch asked for %s, want /d0/f01", p)
	}
	done := make(chan []byte, 1)
	go func() {
		b, err := readAll(c, "d0/f01")
		if err != nil {
			t.Error(err)
		}
		done <- b
	}()
	// The reader is waiting for the prefetch's GET (or would have sent its own:
	// the count below tells).
	time.Sleep(50 * time.Millisecond)
	open()
	if b := <-done; !bytes.Equal(b, s.files["/d0/f01"]) {
		t.Fatalf("read d0/f01 while it was prefetched: %d bytes, not the file", len(b))
	}
	waitPrefetchIdle(t, c)
	if got := s.requested()["/d0/f01"]; len(got) != 1 || got[0] != "GET" {
		t.Errorf("d0/f01 opened while prefetched: requests %v, want one GET", got)
	}
	if m := c.Metrics(); m.PrefetchUseful != 1 {
		t.Errorf("useful prefetches %d, want 1", m.PrefetchUseful)
	}
}

// Prefetches take at most the byte budget: queued, in flight or fetched and not
// read yet.
func TestPrefetchRespectsBudget(t *testing.T) {
	s := newDirServer(1, 20, 1000)
	var opens []func()
	for i := 1; i < 20; i++ {
		opens = append(opens, s.gate(fmt.Sprintf("/d0/f%02d", i)))
	}
	defer func() {
		for _, o := range opens {
			o()
		}
	}()
	c := prefetchFixture(t, s, 10, 10, 0)
	c.prefetch.budget = 2500 // two files of 1000 bytes
	listDir(t, c, "d0")
	s.readFile(t, c, "d0/f00")
	for i := 0; i < 2; i++ {
		s.next(t)
	}
	select {
	case p := <-s.arrived:
		t.Fatalf("a third prefetch (%s) went out with a budget of two files", p)
	case <-time.After(200 * time.Millisecond):
	}
	c.prefetch.mu.Lock()
	used := c.prefetch.bytes
	c.prefetch.mu.Unlock()
	if used > 2500 {
		t.Errorf("prefetches hold %d bytes of a 2500-byte budget", used)
	}
}

// With the cache near full, nothing is prefetched, so nothing is evicted for it;
// and prefetched files enter the LRU at the back: room made for a reader evicts
// them before what the reader read.
func TestPrefetchNeverEvicts(t *testing.T) {
	s := newDirServer(2, 20, 20000)
	// A 1 MiB cache: a sixteenth (64 KiB) is the budget; the big file leaves less
	// room than a file and the budget need.
	big := bytes.Repeat([]byte{'x'}, 1<<20-64<<10)
	s.files["/big/b"] = big
	c := prefetchFixture(t, s, 4, 2, 1<<20)
	listDir(t, c, "big")
	listDir(t, c, "d0")
	if got, err := readAll(c, "big/b"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read big/b: %d bytes, %v", len(got), err)
	}
	s.readFile(t, c, "d0/f00")
	s.readFile(t, c, "d0/f01")
	waitPrefetchIdle(t, c)
	if got := s.requested(); len(got) != 3 {
		t.Errorf("cache near full: the origin was asked for %v, want only what was read", got)
	}
	if m := c.Metrics(); m.EvictedObjects != 0 || m.PrefetchedFiles != 0 {
		t.Errorf("cache near full: %d objects evicted, %d prefetched; want none", m.EvictedObjects, m.PrefetchedFiles)
	}
	if !c.cached("big/b") {
		t.Error("big/b was evicted")
	}
}

// cached reports whether the cache holds an object for p.
func (c *Cache) cached(p string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.idx.byPath[p] != nil
}

// Prefetched objects are the first to go: evicting for a reader takes the unread
// prefetched files before a file the reader read.
func TestPrefetchedObjectsEvictedFirst(t *testing.T) {
	s := newDirServer(1, 20, 20000)
	big := bytes.Repeat([]byte{'x'}, 1<<20)
	s.files["/big/b"] = big
	c := prefetchFixture(t, s, 4, 4, 4<<20) // budget 256 KiB
	listDir(t, c, "d0")
	listDir(t, c, "big")
	s.readFile(t, c, "d0/f00") // prefetches f01..f04, unread
	waitPrefetchIdle(t, c)
	if m := c.Metrics(); m.PrefetchedFiles != 4 {
		t.Fatalf("%d files prefetched, want 4", m.PrefetchedFiles)
	}
	// The reader reads a big file, then room is asked for (as a read would).
	if _, err := readAll(c, "big/b"); err != nil {
		t.Fatal(err)
	}
	used, limit := c.Used()
	if err := c.reserve(limit - used + 3*24<<10); err != nil { // about three small files' worth
		t.Fatal(err)
	}
	c.unreserve(limit - used + 3*24<<10)
	for _, p := range []string{"d0/f00", "big/b"} {
		if !c.cached(p) {
			t.Errorf("%s, read by the reader, was evicted before unread prefetched files", p)
		}
	}
	if c.cached("d0/f02") && c.cached("d0/f03") && c.cached("d0/f04") {
		t.Error("room was made without evicting unread prefetched files")
	}
}
