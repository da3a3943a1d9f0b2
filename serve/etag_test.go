package serve

import "testing"

// A version the origin identified by size alone gets no ETag, so If-Range and
// If-None-Match can never match another content of the same size.
func TestSizeOnlyVersionsHaveNoETag(t *testing.T) {
	for _, v := range []string{"size:10", "size:0"} {
		if tag := etagFor(v); tag != "" {
			t.Errorf("etagFor(%q) = %q, want none", v, tag)
		}
	}
	if etagFor(`"v1"`) != `"v1"` || etagFor("lm:Mon, 02 Jan 2006 15:04:05 GMT;10") == "" {
		t.Error("origin ETags and Last-Modified versions must keep their tags")
	}
	// A client resuming with the tag it was given for another content of that size.
	stale := etagFor("lm:x;10")
	v := validators{etag: etagFor("size:10")}
	if got := checkIfRange(&request{ifRange: stale}, v); got == condTrue {
		t.Errorf("If-Range %s matched a size-only version", stale)
	}
	if got := checkIfNoneMatch(&request{ifNoneMatch: stale}, v); got == condFalse {
		t.Errorf("If-None-Match %s matched a size-only version", stale)
	}
}
