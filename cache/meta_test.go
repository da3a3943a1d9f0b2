package cache

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
)

// bigListing serves directories of n entries as nginx's JSON autoindex does, written
// as a stream; pad adds that many spaces per entry, as a hostile origin may.
func bigListing(n, pad int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		bw := bufio.NewWriterSize(w, 64<<10)
		bw.WriteString("[")
		spaces := strings.Repeat(" ", pad)
		for i := range n {
			if i > 0 {
				bw.WriteString(",")
			}
			fmt.Fprintf(bw, "%s\n{ \"name\":\"file-%07d.dat\", \"type\":\"file\", \"mtime\":\"Wed, 26 Nov 2026 00:54:29 GMT\", \"size\":%d }", spaces, i, i)
		}
		bw.WriteString("\n]\n")
		bw.Flush()
	}
}

// heapPeak samples the bytes of live and not yet swept heap objects until stop is
// called, and returns the largest value seen.
func heapPeak() (stop func() uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

func heapNow() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// A huge listing is parsed as a stream: the heap grows by the entries kept and by
// their record on its way to index.db, not by the size of the body. The figures per
// entry are README's memory bound.
func TestHugeListingMemoryBound(t *testing.T) {
	// Each entry is padded to about 1.1 KB, so a body held whole (330 MB) would
	// blow the budget below by far.
	const n, pad = 300_000, 1000
	srv := httptest.NewServer(bigListing(n, pad))
	defer srv.Close()
	o, err := origin.NewHTTP(srv.URL+"/", origin.Options{Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	c, err := Open(o, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	base := heapNow()
	stop := heapPeak()
	l, err := c.List(context.Background(), "d")
	// The listing's record is written to index.db behind the caller's back; the
	// peak includes it and bbolt's pages for it, so wait for the commit.
	for deadline := time.Now().Add(30 * time.Second); c.meta.store.queued.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	peak := stop()
	if err != nil {
		t.Fatal(err)
	}
	kept := heapNow()
	record := uint64(len(encodeMetaRecord(time.Now(), l.Entries)))
	t.Logf("%d entries: peak heap +%d MB (%d B/entry), kept +%d MB (%d B/entry); index.db record %d B/entry",
		len(l.Entries), (peak-base)>>20, (peak-base)/n, (kept-base)>>20, (kept-base)/n, record/n)
	if len(l.Entries) != n {
		t.Fatalf("listed %d entries, want %d", len(l.Entries), n)
	}
	// Measured: 380-450 B/entry at the peak (-race the most), 180 kept; the
	// record (about 35 B/entry) is held three times over while bbolt commits it:
	// encoded, in bbolt's dirty page and in its copy of the value. The budget
	// leaves room for garbage not yet swept; a body held whole would add 1.1 KB.
	if grew, budget := peak-base, 500*uint64(n)+4*record; grew > budget {
		t.Errorf("listing %d entries grew the heap by %d MB at its peak: more than its budget of %d MB (500 B/entry and 4x its %d MB record)",
			n, grew>>20, budget>>20, record>>20)
	}
}

// slowOrigin lists inexact entries and answers stats after delay, or only when
// the request is cancelled when block is set; it records what it saw.
type slowOrigin struct {
	entries   int
	delay     time.Duration
	block     bool
	stats     atomic.Int64
	inflight  atomic.Int64
	most      atomic.Int64
	cancelled chan string
}

func (o *slowOrigin) wait(ctx context.Context, what string) error {
	n := o.inflight.Add(1)
	defer o.inflight.Add(-1)
	for m := o.most.Load(); n > m && !o.most.CompareAndSwap(m, n); m = o.most.Load() {
	}
	if !o.block {
		select {
		case <-time.After(o.delay):
			return nil
		case <-ctx.Done():
		}
	} else {
		<-ctx.Done()
	}
	o.cancelled <- what
	return ctx.Err()
}

func (o *slowOrigin) Stat(ctx context.Context, p string) (origin.Entry, error) {
	o.stats.Add(1)
	if err := o.wait(ctx, "stat "+p); err != nil {
		return origin.Entry{}, err
	}
	return origin.Entry{Name: p, Size: 1, Exact: true, Version: "v"}, nil
}

func (o *slowOrigin) List(ctx context.Context, p string) ([]origin.Entry, error) {
	if o.block {
		return nil, o.wait(ctx, "list "+p)
	}
	var out []origin.Entry
	for i := range o.entries {
		out = append(out, origin.Entry{Name: fmt.Sprintf("f%d", i), Size: 1024}) // inexact, as from an HTML index
	}
	return out, nil
}

func (o *slowOrigin) ReadRange(ctx context.Context, p, v string, off, n int64) (io.ReadCloser, error) {
	return nil, origin.ErrChanged
}

func (o *slowOrigin) String() string { return "slow://" }

// An origin request shared by several waiters keeps running while one of them
// stays, and is cancelled (the origin sees it) when the last one leaves, long
// before the origin timeout.
func TestLastWaiterLeavingCancelsOriginRequest(t *testing.T) {
	for _, op := range []string{"list", "stat"} {
		t.Run(op, func(t *testing.T) {
			o := &slowOrigin{block: true, cancelled: make(chan string, 4)}
			f := newFixture(t)
			f.opts.OriginTimeout = time.Hour
			c, err := Open(o, f.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			call := func(ctx context.Context) error {
				if op == "list" {
					_, err := c.List(ctx, "d")
					return err
				}
				_, err := c.Stat(ctx, "d/f")
				return err
			}
			ctx1, cancel1 := context.WithCancel(context.Background())
			ctx2, cancel2 := context.WithCancel(context.Background())
			errs := make(chan error, 2)
			go func() { errs <- call(ctx1) }()
			go func() { errs <- call(ctx2) }()
			for o.inflight.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond) // let both callers join the flight
			cancel1()
			if err := <-errs; !errors.Is(err, context.Canceled) {
				t.Fatalf("first caller: %v, want context.Canceled", err)
			}
			select {
			case what := <-o.cancelled:
				t.Fatalf("%s cancelled while a caller still waits for it", what)
			case <-time.After(200 * time.Millisecond):
			}
			cancel2()
			<-errs
			select {
			case <-o.cancelled:
			case <-time.After(10 * time.Second):
				t.Fatal("origin request still running 10 s after its last waiter left")
			}
			if n := o.stats.Load(); op == "stat" && n != 1 {
				t.Errorf("%d origin stats for two concurrent callers, want 1", n)
			}
		})
	}
}

// Lookups of the entries of a listing without exact sizes send at most
// maxEntryStats origin stats at a time; LookupListed sends none.
func TestEntryStatsAreBounded(t *testing.T) {
	o := &slowOrigin{entries: 100, delay: 20 * time.Millisecond, cancelled: make(chan string, 200)}
	f := newFixture(t)
	c, err := Open(o, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	l, err := c.List(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	for i := range o.entries {
		if _, ok := c.LookupListed(l, "d", fmt.Sprintf("f%d", i)); ok {
			t.Fatalf("LookupListed of an inexact entry f%d: ok", i)
		}
	}
	if n := o.stats.Load(); n != 0 {
		t.Fatalf("LookupListed sent %d origin stats", n)
	}
	var wg sync.WaitGroup
	for i := range o.entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Lookup(ctx, "d", fmt.Sprintf("f%d", i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if most := o.most.Load(); most > maxEntryStats {
		t.Errorf("%d origin stats at once for one directory's entries, want at most %d", most, maxEntryStats)
	}
	if _, ok := c.LookupListed(l, "d", "f7"); !ok {
		t.Error("LookupListed does not use a cached stat")
	}
}

// slowListing serves a JSON listing of n entries in pieces, one every gap.
func slowListing(n, pieces int, gap time.Duration, stallAfter int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("["))
		per := n / pieces
		for piece := 0; piece < pieces; piece++ {
			if piece == stallAfter {
				<-r.Context().Done() // stops sending, keeps the connection open
				return
			}
			var b strings.Builder
			for i := piece * per; i < (piece+1)*per; i++ {
				if i > 0 {
					b.WriteString(",")
				}
				fmt.Fprintf(&b, "\n{ \"name\":\"f%06d\", \"type\":\"file\", \"mtime\":\"Wed, 26 Nov 2026 00:54:29 GMT\", \"size\":%d }", i, i)
			}
			w.Write([]byte(b.String()))
			w.(http.Flusher).Flush()
			time.Sleep(gap)
		}
		w.Write([]byte("\n]\n"))
	}
}

// A listing that keeps arriving is not cut off at the origin timeout: the timeout
// bounds a listing's silences, as it does a read's (README: "without progress").
func TestSlowListingThatProgressesCompletes(t *testing.T) {
	srv := httptest.NewServer(slowListing(2000, 10, 100*time.Millisecond, -1))
	defer srv.Close()
	o, err := origin.NewHTTP(srv.URL+"/", origin.Options{Timeout: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	f.opts.OriginTimeout = 400 * time.Millisecond
	c, err := Open(o, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := c.List(context.Background(), "d")
	if err != nil {
		t.Fatalf("a listing arriving for 1 s with no silence over 100 ms failed at a 400 ms timeout: %v", err)
	}
	if len(l.Entries) != 2000 {
		t.Fatalf("listed %d entries, want 2000", len(l.Entries))
	}
}

// A listing that stops arriving is given up one timeout after its last bytes, with
// an error that says so and that counts as the origin being down (so a listing
// cached earlier would be served).
func TestStalledListingGivesUp(t *testing.T) {
	srv := httptest.NewServer(slowListing(2000, 10, 10*time.Millisecond, 3))
	defer srv.Close()
	o, err := origin.NewHTTP(srv.URL+"/", origin.Options{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = o.List(context.Background(), "d")
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no progress for 300ms") {
		t.Fatalf("stalled listing: %v, want a no-progress error", err)
	}
	if !origin.Retryable(err) {
		t.Errorf("a stall is not transient to the cache: %v", err)
	}
	if took > 5*time.Second {
		t.Errorf("gave up after %v, want about 300ms", took)
	}
}
