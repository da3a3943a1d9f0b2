package cache

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// The scrub re-hashes idle complete objects and drops bad chunks without any open.
func TestScrubDropsBadChunks(t *testing.T) {
	f := newFixture(t)
	f.opts.VerifyInterval = 50 * time.Millisecond
	want := randomFile(t, f.originDir, "s", 1<<20, 91)
	c := f.open()
	defer c.Close()
	readWhole(t, c, "s")
	flipByte(t, f.cacheDir, 100)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info, err := c.Object(context.Background(), "s")
		if err != nil {
			t.Fatal(err)
		}
		if info.ChunksPresent == info.Chunks-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scrub never dropped the bad chunk: %d of %d present", info.ChunksPresent, info.Chunks)
		}
	}
	if got := readWhole(t, c, "s"); !bytes.Equal(got, want) {
		t.Fatal("wrong bytes after the scrub")
	}
}
