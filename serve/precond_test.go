package serve

import (
	"net/http"
	"testing"
	"time"
)

func TestCheckPreconditions(t *testing.T) {
	mod := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	v := validators{etag: `"abc"`, modTime: mod}
	lm := mod.Format(http.TimeFormat)
	before := mod.Add(-time.Second).Format(http.TimeFormat)
	after := mod.Add(time.Second).Format(http.TimeFormat)
	const rng = "bytes=0-1"
	for _, c := range []struct {
		name   string
		req    request
		v      validators
		code   int
		rangeH string
	}{
		{"none", request{}, v, 0, ""},
		{"range alone", request{rangeH: rng}, v, 0, rng},
		{"if-match same", request{ifMatch: `"abc"`}, v, 0, ""},
		{"if-match list", request{ifMatch: `"x", "abc"`}, v, 0, ""},
		{"if-match comma in tag", request{ifMatch: `"a,bc"`}, v, 412, ""},
		{"if-match star", request{ifMatch: "*"}, v, 0, ""},
		{"if-match other", request{ifMatch: `"x"`}, v, 412, ""},
		{"if-match weak", request{ifMatch: `W/"abc"`}, v, 412, ""},
		{"if-match garbage", request{ifMatch: `abc`}, v, 412, ""},
		{"if-match wins over ius", request{ifMatch: `"abc"`, ifUnmodifiedSince: before}, v, 0, ""},
		{"ius same second", request{ifUnmodifiedSince: lm}, v, 0, ""},
		{"ius after", request{ifUnmodifiedSince: after}, v, 0, ""},
		{"ius before", request{ifUnmodifiedSince: before}, v, 412, ""},
		{"ius bad date", request{ifUnmodifiedSince: "yesterday"}, v, 0, ""},
		{"ius no time", request{ifUnmodifiedSince: before}, validators{etag: v.etag}, 0, ""},
		{"ius before beats inm", request{ifUnmodifiedSince: before, ifNoneMatch: `"abc"`}, v, 412, ""},
		{"inm GET", request{method: "GET", ifNoneMatch: `"abc"`}, v, 304, ""},
		{"inm weak", request{method: "GET", ifNoneMatch: `W/"abc"`}, v, 304, ""},
		{"inm star", request{method: "HEAD", ifNoneMatch: "*"}, v, 304, ""},
		{"inm other", request{method: "GET", ifNoneMatch: `"x"`, rangeH: rng}, v, 0, rng},
		{"inm POST", request{method: "POST", ifNoneMatch: `"abc"`}, v, 412, ""},
		{"inm wins over ims", request{method: "GET", ifNoneMatch: `"x"`, ifModifiedSince: lm}, v, 0, ""},
		{"ims same", request{method: "GET", ifModifiedSince: lm}, v, 304, ""},
		{"ims after", request{method: "GET", ifModifiedSince: after}, v, 304, ""},
		{"ims before", request{method: "GET", ifModifiedSince: before}, v, 0, ""},
		{"ims no time", request{method: "GET", ifModifiedSince: lm}, validators{etag: v.etag}, 0, ""},
		{"if-range etag", request{rangeH: rng, ifRange: `"abc"`}, v, 0, rng},
		{"if-range weak", request{rangeH: rng, ifRange: `W/"abc"`}, v, 0, ""},
		{"if-range other", request{rangeH: rng, ifRange: `"x"`}, v, 0, ""},
		{"if-range date", request{rangeH: rng, ifRange: lm}, v, 0, rng},
		{"if-range older date", request{rangeH: rng, ifRange: before}, v, 0, ""},
		{"if-range date, no time", request{rangeH: rng, ifRange: lm}, validators{etag: v.etag}, 0, ""},
		{"if-range garbage", request{rangeH: rng, ifRange: "x"}, v, 0, ""},
	} {
		code, rangeH := checkPreconditions(&c.req, c.v)
		if code != c.code || rangeH != c.rangeH {
			t.Errorf("%s: %d %q, want %d %q", c.name, code, rangeH, c.code, c.rangeH)
		}
	}
}

func TestScanETag(t *testing.T) {
	for _, c := range []struct{ in, tag, rest string }{
		{`"a"`, `"a"`, ""},
		{`W/"a", "b"`, `W/"a"`, `, "b"`},
		{` "a,b"x`, `"a,b"`, "x"},
		{`"a`, "", ""},
		{`a"`, "", ""},
		{`"a b"`, "", ""},
		{`W/`, "", ""},
		{``, "", ""},
	} {
		if tag, rest := scanETag(c.in); tag != c.tag || rest != c.rest {
			t.Errorf("scanETag(%q) = %q, %q; want %q, %q", c.in, tag, rest, c.tag, c.rest)
		}
	}
}
