package origin

import (
	"strconv"
	"testing"
)

// The ETag pins (and the sizes HEAD gave for strong ETags) were wiped all at once
// when full, so on a busy origin every pin went at the 16,384th new one, and with
// them the checks they carry (issue 19 point 2). Full, they now forget the least
// recently used pin only.
func TestETagPinsForgetTheOldestOnly(t *testing.T) {
	var p etagPins
	p.pin("hot", `"h"`)
	for i := 1; i < maxETagPins; i++ {
		p.pin("k"+strconv.Itoa(i), strconv.Itoa(i))
	}
	if _, ok := p.get("hot"); !ok { // a use keeps it
		t.Fatal("pin lost before the map was full")
	}
	for i := 0; i < maxETagPins/2; i++ {
		p.pin("new"+strconv.Itoa(i), "n")
	}
	if v, ok := p.get("hot"); !ok || v != `"h"` {
		t.Fatalf("the recently used pin is gone (%q, %v)", v, ok)
	}
	if first := p.pin("hot", `"other"`); first != `"h"` {
		t.Fatalf("pin of a known key returned %q", first)
	}
	if _, ok := p.get("new0"); !ok {
		t.Fatal("a new pin is gone")
	}
	if _, ok := p.get("k1"); ok {
		t.Fatal("the least recently used pin stayed past the bound")
	}
	if v, ok := p.get("k" + strconv.Itoa(maxETagPins-1)); !ok || v != strconv.Itoa(maxETagPins-1) {
		t.Fatal("a pin newer than the evicted ones is gone")
	}
	if n := p.len(); n != maxETagPins {
		t.Fatalf("%d pins held, want the bound %d", n, maxETagPins)
	}
}
