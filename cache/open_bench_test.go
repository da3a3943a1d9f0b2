package cache

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
)

// BenchmarkHotOpen opens, reads 4 KiB of and closes a complete, checked object: the
// per-open path that the on-disk change check (one stat of the data file) is on.
func BenchmarkHotOpen(b *testing.B) {
	src := b.TempDir()
	randomFile(b, src, "hot", 1<<20, 1)
	lo, err := origin.NewLocal(src)
	if err != nil {
		b.Fatal(err)
	}
	c, err := Open(lo, Options{Dir: b.TempDir(), Limit: 1 << 30, ChunkSize: 64 << 10, TTL: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	readWhole(b, c, "hot")
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h, err := c.Open(ctx, "hot")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.Fill(ctx, 0, 4096); err != nil {
			b.Fatal(err)
		}
		h.Close()
	}
}
