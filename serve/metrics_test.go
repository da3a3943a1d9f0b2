package serve

import (
	"strings"
	"testing"

	"github.com/cachegate/cachegate/cache"
)

// TestAdminUnauthorized: /-/metrics and /-/status answer 401 with
// WWW-Authenticate, as the file paths do (issue 19 point 19).
func TestAdminUnauthorized(t *testing.T) {
	ts := startTestServer(t, &stubOrigin{}, cache.Options{}, Options{AuthToken: "tok"})
	for _, p := range []string{"/-/metrics", "/-/status", "/f"} {
		r := ts.get(t, p)
		if r.StatusCode != 401 || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: %d, WWW-Authenticate %q", p, r.StatusCode, r.Header.Get("WWW-Authenticate"))
		}
	}
	if r := ts.get(t, "/-/metrics", "Authorization: Bearer tok"); r.StatusCode != 200 {
		t.Errorf("/-/metrics with the token: %d", r.StatusCode)
	}
}
