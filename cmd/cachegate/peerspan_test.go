package main

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/origin"
)

// --peer-span must be a whole number of chunks: a span of a few bytes cut every fill
// into thousands of peer requests (one per span), and a chunk straddling two spans
// of two owners was fetched whole by either, so neither span had one owner. (The
// origin does not answer: a command that passed the check fails soon after.)
func TestPeerSpanWholeChunks(t *testing.T) {
	for _, span := range []string{"1", "1000", "1536KiB"} {
		_, errOut, code := runCaptured(t, "serve", "http://127.0.0.1:1/", "--cache-dir", t.TempDir(), "--listen", "127.0.0.1:0",
			"--advertise", "http://127.0.0.1:1", "--peers", "http://127.0.0.1:1,http://127.0.0.1:2",
			"--chunk-size", "1MiB", "--peer-span", span)
		if code != 2 || !strings.Contains(errOut, "--peer-span") {
			t.Errorf("--peer-span %s with 1MiB chunks: exit %d, %q; want a usage error naming --peer-span", span, code, errOut)
		}
	}
}

// The peer tier is what the cache asks about keeping (cache.Keeper, with --peer-copy
// owner) and forwarding (cache.Forwarder): interfaces met by method name only, so a
// rename would silently turn the behaviour off.
func TestPeerTierMeetsCacheInterfaces(t *testing.T) {
	for _, copyMode := range []string{"local", "owner"} {
		f := peerFlags{Peers: []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}, Advertise: "http://127.0.0.1:1", PeerCopy: copyMode,
			PeerSpan: 64 << 20, PeerTimeout: 2 * time.Second}
		wrap, err := f.wrap("127.0.0.1:1", "", 1<<20, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		lo, err := origin.NewLocal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		o, err := wrap(lo)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := o.(cache.Forwarder); !ok {
			t.Errorf("--peer-copy %s: the peer tier is no cache.Forwarder", copyMode)
		}
		if _, ok := o.(cache.Keeper); ok != (copyMode == "owner") {
			t.Errorf("--peer-copy %s: the peer tier is a cache.Keeper: %v", copyMode, ok)
		}
		f.close()
	}
}
