package serve

import (
	"bytes"
	"context"
	"testing"

	"github.com/cachegate/cachegate/cache"
)

// keeperOrigin is a stubOrigin whose cache keeps only bytes below keepBelow, as a
// member with --peer-copy owner keeps its own spans (cache.Keeper).
type keeperOrigin struct {
	*stubOrigin
	keepBelow int64
}

func (o keeperOrigin) KeepRun(p, version string, off, end int64) (bool, int64) {
	if off < o.keepBelow {
		return true, min(end, o.keepBelow)
	}
	return false, end
}

// A member that keeps only some spans never holds a whole file; once the spans it
// keeps are present, a body over them counts as complete for the transfer choice
// (sendfile rather than the pread+write of a file still filling), and not before.
func TestKeptCompleteOwnerOnly(t *testing.T) {
	const size, half = 8 << 20, 4 << 20
	data := randomBytes(size)
	o := keeperOrigin{&stubOrigin{files: map[string][]byte{"f": data}}, half}
	ts := startTestServer(t, o, cache.Options{Readahead: 1 << 20}, Options{})
	ctx := context.Background()
	h, err := ts.c.Open(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if keptComplete(ctx, h, 0, size) {
		t.Fatal("cold: counted complete")
	}
	if _, err := h.Fill(ctx, 0, half); err != nil {
		t.Fatal(err)
	}
	if h.Complete() {
		t.Fatal("the test's premise: the file is not whole")
	}
	if !keptComplete(ctx, h, 0, size) || !keptComplete(ctx, h, half/2, size-half/2) {
		t.Fatal("the kept half present: not counted complete")
	}
	if keptComplete(ctx, h, 0, half) {
		t.Fatal("a body all kept but the file not whole: counted complete")
	}
	// And the whole answer is right: the kept half from the cache, the rest read
	// through.
	if r := ts.get(t, "/f"); r.StatusCode != 200 || !bytes.Equal(r.body, data) {
		t.Fatalf("GET: %d, %d bytes", r.StatusCode, len(r.body))
	}
}
