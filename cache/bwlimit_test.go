package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/bwlimit"
	"github.com/cachegate/cachegate/internal/origin"
)

// cachedBytes is how much of p c holds.
func cachedBytes(t *testing.T, c *Cache, p string) int64 {
	t.Helper()
	objs := c.Objects(p)
	if len(objs) != 1 {
		return 0
	}
	return objs[0].CachedBytes
}

// TestBWLimitPaysBeforeReading: origin bytes are paid for before they are read or
// spliced. With a bucket of one chunk's burst and a rate that needs 16 s for the
// next chunk, a fill given a second gets exactly the burst's chunk, for the cache's
// own limit (Options.BWLimit) and for one warm's (WithBWLimit), on the read path
// (an origin reader that cannot splice) and the splice path (the local origin's
// copy_file_range). Without the limit the whole file lands at once.
func TestBWLimitPaysBeforeReading(t *testing.T) {
	const chunk, size = 64 << 10, 256 << 10
	for _, tc := range []struct {
		name   string
		splice bool // the local origin itself, whose readers are origin.FileWriters
		warm   bool // the limit is the warm's, not the cache's
	}{
		{"cache limit, read", false, false},
		{"cache limit, splice", true, false},
		{"warm limit, read", false, true},
		{"warm limit, splice", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			randomFile(t, f.originDir, "f", size, 5)
			b := bwlimit.New(4<<10, chunk) // 4 KiB/s, one chunk of burst
			var o origin.Origin = f.origin
			if tc.splice {
				lo, err := origin.NewLocal(f.originDir)
				if err != nil {
					t.Fatal(err)
				}
				o = lo
			}
			opts := f.opts
			if !tc.warm {
				opts.BWLimit = b
			}
			c, err := Open(o, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// A generous bound that still ends long before the second chunk's 16 s.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if tc.warm {
				ctx = WithBWLimit(ctx, b)
			}
			_, err = c.Warm(ctx, []string{"f"}, 1, false, nil)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("warm at 4 KiB/s within 1 s: %v, want the deadline", err)
			}
			// The first chunk landed before the warm gave up; the second cannot
			// until its tokens are paid, and its fetch is abandoned with the warm.
			if got := cachedBytes(t, c, "f"); got != chunk {
				t.Errorf("cached %d bytes at 4 KiB/s with a %d-byte burst, want exactly the burst", got, chunk)
			}
		})
	}
	// The same without a limit: the whole file.
	f := newFixture(t)
	randomFile(t, f.originDir, "f", size, 5)
	c := f.open()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := c.Warm(ctx, []string{"f"}, 1, false, nil); err != nil || cachedBytes(t, c, "f") != size {
		t.Errorf("warm without a limit: %v, %d bytes cached", err, cachedBytes(t, c, "f"))
	}
}

// TestWarmReportsMissing: a path the origin lacks is reported (by name, in
// WarmProgress.Missing and the error) and the other paths are warmed.
func TestWarmReportsMissing(t *testing.T) {
	f := newFixture(t)
	randomFile(t, f.originDir, "a", 10<<10, 1)
	randomFile(t, f.originDir, "d/b", 10<<10, 2)
	c := f.open()
	defer c.Close()
	st, err := c.Warm(context.Background(), []string{"a", "nope", "d", "d/nope2"}, 2, false, nil)
	if !errors.Is(err, fs.ErrNotExist) || !slices.Equal(st.Missing, []string{"nope", "d/nope2"}) {
		t.Fatalf("warm with two missing paths: %v, missing %q", err, st.Missing)
	}
	if st.Files != 2 || st.FilesDone != 2 || cachedBytes(t, c, "a") != 10<<10 || cachedBytes(t, c, "d/b") != 10<<10 {
		t.Errorf("the paths the origin has were not warmed: %+v", st)
	}
	// One missing path alone says so as before.
	if _, err := c.Warm(context.Background(), []string{"nope"}, 1, false, nil); !errors.Is(err, fs.ErrNotExist) || err.Error() != "/nope: not in the origin (check the path)" {
		t.Errorf("warm of one missing path: %v", err)
	}
}

// Several spans sharing a slow bucket each wait longer than the origin timeout for
// their tokens: that wait is the limit working, not the origin stalling, so the warm
// completes instead of failing with an origin timeout (review: --bwlimit 200KiB and
// a sequential reader gave EIO).
func TestBWLimitWaitIsNoStall(t *testing.T) {
	const chunk, size = 16 << 10, 128 << 10
	f := newFixture(t)
	for i := range 4 {
		randomFile(t, f.originDir, fmt.Sprintf("f%d", i), size/4, uint64(10+i))
	}
	f.opts.ChunkSize = chunk
	f.opts.OriginTimeout = 300 * time.Millisecond
	// 128 KiB at 64 KiB/s over four parallel files: a chunk each comes round
	// about once a second, far longer than the 300 ms timeout.
	f.opts.BWLimit = bwlimit.New(64<<10, chunk)
	c := f.open()
	defer c.Close()
	paths := []string{"f0", "f1", "f2", "f3"}
	if _, err := c.Warm(context.Background(), paths, 4, false, nil); err != nil {
		t.Fatalf("warm under a slow limit: %v", err)
	}
	for _, p := range paths {
		if got := cachedBytes(t, c, p); got != size/4 {
			t.Errorf("%s: %d bytes cached, want %d", p, got, size/4)
		}
	}
}
