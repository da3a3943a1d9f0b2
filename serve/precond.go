package serve

import (
	"net/http"
	"strings"
	"time"
)

// Conditional requests (RFC 9110 §13), evaluated as net/http's fs.go does: each
// header is a small check returning a condResult, and checkPreconditions combines
// them in the order of §13.2.2.

// condResult is the outcome of one precondition.
type condResult int

const (
	condNone  condResult = iota // the header is absent, or cannot be evaluated
	condTrue                    // the condition holds
	condFalse                   // the condition fails
)

// validators are what preconditions compare against: the strong ETag the server
// sends, and the modification time at the second that Last-Modified shows (zero when
// the origin gives none).
type validators struct {
	etag    string
	modTime time.Time
}

// checkPreconditions evaluates the request's preconditions against v. code is the
// status that ends the request (412 or 304), or 0 to go on; rangeH is the Range
// header to act on, "" when there is none or If-Range says to send the whole file.
func checkPreconditions(req *request, v validators) (code int, rangeH string) {
	ch := checkIfMatch(req, v)
	if ch == condNone {
		ch = checkIfUnmodifiedSince(req, v)
	}
	if ch == condFalse {
		return 412, ""
	}
	switch checkIfNoneMatch(req, v) {
	case condFalse:
		if req.method == "GET" || req.method == "HEAD" {
			return 304, ""
		}
		return 412, ""
	case condNone:
		if checkIfModifiedSince(req, v) == condFalse {
			return 304, ""
		}
	}
	if req.rangeH != "" && checkIfRange(req, v) != condFalse {
		rangeH = req.rangeH
	}
	return 0, rangeH
}

// checkIfMatch: condTrue when If-Match is "*" or names the ETag (strong comparison).
func checkIfMatch(req *request, v validators) condResult {
	im := req.ifMatch
	if im == "" {
		return condNone
	}
	for {
		im = strings.TrimLeft(im, " \t")
		if im == "" {
			break
		}
		if im[0] == ',' {
			im = im[1:]
			continue
		}
		if im[0] == '*' {
			return condTrue
		}
		tag, rest := scanETag(im)
		if tag == "" {
			break
		}
		if etagStrongMatch(tag, v.etag) {
			return condTrue
		}
		im = rest
	}
	return condFalse
}

// checkIfUnmodifiedSince: condTrue when the object has not changed since the date.
// A date that does not parse, or an object without a time, is ignored (§13.1.4).
func checkIfUnmodifiedSince(req *request, v validators) condResult {
	if req.ifUnmodifiedSince == "" || v.modTime.IsZero() {
		return condNone
	}
	t, err := http.ParseTime(req.ifUnmodifiedSince)
	if err != nil {
		return condNone
	}
	if !v.modTime.After(t) {
		return condTrue
	}
	return condFalse
}

// checkIfNoneMatch: condFalse when If-None-Match is "*" or names the ETag (weak
// comparison).
func checkIfNoneMatch(req *request, v validators) condResult {
	inm := req.ifNoneMatch
	if inm == "" {
		return condNone
	}
	for {
		inm = strings.TrimLeft(inm, " \t")
		if inm == "" {
			break
		}
		if inm[0] == ',' {
			inm = inm[1:]
			continue
		}
		if inm[0] == '*' {
			return condFalse
		}
		tag, rest := scanETag(inm)
		if tag == "" {
			break
		}
		if etagWeakMatch(tag, v.etag) {
			return condFalse
		}
		inm = rest
	}
	return condTrue
}

// checkIfModifiedSince: condFalse when the object has not changed since the date.
func checkIfModifiedSince(req *request, v validators) condResult {
	if (req.method != "GET" && req.method != "HEAD") || req.ifModifiedSince == "" || v.modTime.IsZero() {
		return condNone
	}
	t, err := http.ParseTime(req.ifModifiedSince)
	if err != nil {
		return condNone
	}
	if !v.modTime.After(t) {
		return condFalse
	}
	return condTrue
}

// checkIfRange: condTrue when If-Range names the current ETag (strongly) or its
// exact Last-Modified date; condFalse (send the whole file) otherwise.
func checkIfRange(req *request, v validators) condResult {
	ir := req.ifRange
	if ir == "" {
		return condNone
	}
	if tag, _ := scanETag(ir); tag != "" {
		if etagStrongMatch(tag, v.etag) {
			return condTrue
		}
		return condFalse
	}
	if v.modTime.IsZero() {
		return condFalse
	}
	t, err := http.ParseTime(ir)
	if err == nil && t.Unix() == v.modTime.Unix() {
		return condTrue
	}
	return condFalse
}

// scanETag returns the entity tag at the start of s (with its W/ prefix) and the
// rest of s, or "" when s does not start with one (RFC 9110 §8.8.3).
func scanETag(s string) (tag, rest string) {
	s = strings.TrimLeft(s, " \t")
	start := 0
	if strings.HasPrefix(s, "W/") {
		start = 2
	}
	if len(s[start:]) < 2 || s[start] != '"' {
		return "", ""
	}
	for i := start + 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0x21 || c >= 0x23 && c <= 0x7E || c >= 0x80: // etagc
		case c == '"':
			return s[:i+1], s[i+1:]
		default:
			return "", ""
		}
	}
	return "", ""
}

// etagStrongMatch: both tags strong and equal.
func etagStrongMatch(a, b string) bool {
	return a == b && a != "" && a[0] == '"'
}

// etagWeakMatch: equal once W/ is dropped from both.
func etagWeakMatch(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}
