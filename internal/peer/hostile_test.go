package peer

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/etag"
)

// A peer that trickles its body, never pausing for a whole --peer-timeout, is given
// up on all the same: each timeout must bring a fair share of the body, so a
// slowloris peer cannot hold a reader for hours. The read comes from the origin.
func TestPeerTrickleBodyFallsBack(t *testing.T) {
	data := testData()
	s := peerServer(t, data, func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
		w.Header().Set("ETag", etag.For(`"v1"`))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, end, len(data)))
		w.Header().Set("Content-Length", fmt.Sprint(end-off+1))
		w.WriteHeader(206)
		for i := off; i <= end; i++ {
			if _, err := w.Write(data[i : i+1]); err != nil {
				return true
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return true
			case <-time.After(50 * time.Millisecond): // well within the 300 ms timeout
			}
		}
		return true
	})
	g, _, o := twoMembers(t, s, data)
	start := time.Now()
	mustRead(t, context.Background(), o, data)
	// Trickled to the end, the peer's spans (about half of 1000 bytes at 20 B/s)
	// would take some 25 s.
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a trickling peer held the read for %v", d)
	}
	if g.Members()[1].Up() {
		t.Fatal("a trickling peer is still up")
	}
}

// A peer answering with a huge header block is refused after a small bound, not
// held in memory (the transport's default allows 10 MiB per response).
func TestPeerHugeHeadersRefused(t *testing.T) {
	data := testData()
	s := peerServer(t, data, func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
		for i := range 64 {
			w.Header().Set(fmt.Sprintf("X-Junk-%d", i), strings.Repeat("j", 16<<10))
		}
		return false // then the right answer
	})
	g, _, o := twoMembers(t, s, data)
	mustRead(t, context.Background(), o, data)
	if g.Members()[1].Up() {
		t.Fatal("a peer that sent 1 MiB of headers was accepted")
	}
}

// A DNS name with more addresses than a group may have gives every member the same
// group whatever order its resolver returns them in (round-robin DNS rotates them):
// cutting the list before sorting it gave each member its own group, so members
// disagreed on owners.
func TestDNSManyAddressesSameGroup(t *testing.T) {
	var addrs []string
	for i := range maxMembers + 200 {
		addrs = append(addrs, fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	addrs = append(addrs, addrs[0]) // and one twice
	group := func(list []string) []string {
		g := testGroup(t, []string{"dns+http://peers.example:8080"}, "http://10.0.0.0:8080", func(o *Options) {
			o.Resolver = func(context.Context, string) ([]string, error) { return slices.Clone(list), nil }
		})
		g.Start()
		var u []string
		for _, m := range g.Members() {
			u = append(u, m.URL)
		}
		return u
	}
	a := group(addrs)
	rev := slices.Clone(addrs)
	slices.Reverse(rev)
	b := group(rev)
	if len(a) != maxMembers || !slices.Equal(a, b) {
		t.Fatalf("the same addresses in another order made another group (%d and %d members, equal %v)", len(a), len(b), slices.Equal(a, b))
	}
}

// A peer whose body has no length (chunked) and does not end after the bytes asked
// (no last chunk: nothing more) does not hold the read for a --peer-timeout per
// segment: the bytes asked are read, and the body is closed, not drained.
func TestPeerUnendingChunkedBody(t *testing.T) {
	data := testData()
	s := peerServer(t, data, func(w http.ResponseWriter, r *http.Request, off, end int64) bool {
		w.Header().Set("ETag", etag.For(`"v1"`))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, end, len(data)))
		w.WriteHeader(206)
		w.Write(data[off : end+1])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return true
	})
	g := testGroup(t, []string{"http://127.0.0.1:1", s.URL}, "http://127.0.0.1:1", func(o *Options) { o.Timeout = 3 * time.Second })
	o := g.Wrap(&fakeOrigin{data: data})
	start := time.Now()
	mustRead(t, context.Background(), o, data)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a peer's unending body held the read for %v", d)
	}
}
