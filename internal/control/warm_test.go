package control

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestWarmMissingAndBWLimit: a warm names the paths the origin lacks on its final
// line (and warms the rest); a bwlimit that is negative, or too small to pass two
// chunks per origin timeout (every fetch would time out), is refused with 400
// before the origin is asked.
func TestWarmMissingAndBWLimit(t *testing.T) {
	f := newFixture(t)
	code, body := f.call(t, "POST", "/v1/warm", `{"paths":["f","nope","d"],"bwlimit":1048576}`)
	lines := strings.Split(strings.TrimSpace(body), "\n")
	var last ProgressLine
	if code != 200 || json.Unmarshal([]byte(lines[len(lines)-1]), &last) != nil {
		t.Fatalf("warm f nope d: %d %s", code, body)
	}
	if !last.Done || !last.NotFound || !slices.Equal(last.Progress.Missing, []string{"nope"}) || last.Progress.FilesDone != 2 {
		t.Errorf("warm f nope d: final line %+v, want done, not_found, missing [nope] and 2 files warmed", last)
	}
	if objs := f.c.Objects(""); len(objs) != 2 {
		t.Errorf("after warm f nope d the cache holds %v, want f and d/g", objs)
	}
	before := len(f.origin.asked())
	for body, want := range map[string]string{
		`{"paths":["f"],"bwlimit":-1}`: "bwlimit -1 is negative",
		`{"paths":["f"],"bwlimit":1}`:  "fewer than two chunks",
	} {
		for _, verb := range []string{"/v1/warm", "/v1/pin"} {
			code, got := f.call(t, "POST", verb, body)
			var e apiError
			json.Unmarshal([]byte(got), &e)
			if code != http.StatusBadRequest || !strings.Contains(e.Error, want) {
				t.Errorf("%s %s: %d %s; want 400 with %q", verb, body, code, strings.TrimSpace(got), want)
			}
		}
	}
	if asked := f.origin.asked()[before:]; len(asked) != 0 {
		t.Errorf("refused warms reached the origin, asking for %q", asked)
	}
}
