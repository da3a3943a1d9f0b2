//go:build race

package cache

import "fmt"

// Race builds (the e2e suite and `go test -race`) check two invariants of doc.go at
// run time, as pebble's invariants builds do; normal builds compile the checks away
// (invariants_norace.go).

// checkAccountingLocked checks invariant 4 where reserve and commit change the
// accounting: reserve makes room before it adds, and commit moves bytes from reserved
// to used, so used plus reserved stays within the limit. c.mu must be held.
func checkAccountingLocked(c *Cache) {
	if c.idx.used+c.idx.reserved > c.opts.Limit {
		panic(fmt.Sprintf("cache invariant 4: used %d + reserved %d > limit %d", c.idx.used, c.idx.reserved, c.opts.Limit))
	}
}

// checkChunkWritten checks invariant 1 just before chunk i's bit is set: its bytes
// are on disk and match crc.
func checkChunkWritten(o *object, i int, crc uint32) {
	b := make([]byte, o.chunkLen(i))
	if _, err := o.data.ReadAt(b, int64(i)*o.ChunkSize); err != nil {
		panic(fmt.Sprintf("cache invariant 1: chunk %d of %s unreadable before its bit is set: %v", i, o.Path, err))
	}
	if checksum(b) != crc {
		panic(fmt.Sprintf("cache invariant 1: chunk %d of %s does not match its CRC before its bit is set", i, o.Path))
	}
}
