package main

import (
	"strings"
	"testing"
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
