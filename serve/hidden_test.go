package serve

import (
	"bytes"
	"testing"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/origin"
)

type namedStub struct {
	stubOrigin
	name string
}

func (o *namedStub) String() string { return o.name }

// TestHiddenPaths: Options.Hidden's paths are 404 and left out of listings (the
// daemon serves only its origins with serve: true).
func TestHiddenPaths(t *testing.T) {
	o := origin.NewMux("daemon")
	o.Set("pub", &namedStub{stubOrigin{files: map[string][]byte{"f": randomBytes(10)}}, "a"}, 0)
	o.Set("priv", &namedStub{stubOrigin{files: map[string][]byte{"g": randomBytes(10)}}, "b"}, 0)
	hidden := func(p string) bool { return p == "priv" || len(p) > 5 && p[:5] == "priv/" }
	ts := startTestServer(t, o, cache.Options{}, Options{Hidden: hidden})
	if r := ts.get(t, "/pub/f"); r.StatusCode != 200 {
		t.Fatalf("/pub/f: %d", r.StatusCode)
	}
	for _, p := range []string{"/priv/g", "/priv/", "/priv"} {
		if r := ts.get(t, p); r.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", p, r.StatusCode)
		}
	}
	r := ts.get(t, "/?format=json")
	if r.StatusCode != 200 || !bytes.Contains(r.body, []byte(`"pub"`)) || bytes.Contains(r.body, []byte("priv")) {
		t.Errorf("root listing: %d %s", r.StatusCode, r.body)
	}
	r = ts.get(t, "/")
	if r.StatusCode != 200 || bytes.Contains(r.body, []byte("priv")) {
		t.Errorf("root index: %d %s", r.StatusCode, r.body)
	}
}
