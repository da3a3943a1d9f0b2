package serve

import (
	"slices"
	"strconv"
	"strings"
)

// byteRange is a satisfiable range of a representation: length bytes from start.
type byteRange struct{ start, length int64 }

// maxRanges bounds the ranges of one request; more are served as the whole file
// (as nginx's max_ranges and Go's net/http do), so that a request cannot ask for a
// thousand tiny parts.
const maxRanges = 64

// maxParts is the most parts a multipart answer has once overlapping and adjacent
// ranges are merged; more get the whole file with 200.
const maxParts = 10

// selectRanges decides what a Range header gets (rangeH "" when there is none or
// If-Range failed): nil ranges for the whole file with 200, one range for a 206 with
// Content-Range, several for multipart/byteranges, or unsatisfiable for a 416.
//
// Overlapping and adjacent ranges are merged, so no byte is sent twice. Ranges that
// add up to more than the file, or more than maxParts of them after merging, get the
// whole file instead (as net/http's sumRangesSize check and nginx's max_ranges): the
// answer is never larger than the file and its framing, whatever the header asks.
func selectRanges(rangeH string, size int64) (ranges []byteRange, unsatisfiable bool) {
	if rangeH == "" {
		return nil, false
	}
	rs, unsat, ok := parseRange(rangeH, size)
	switch {
	case !ok:
		return nil, false
	case unsat:
		return nil, true
	}
	var sum int64
	for _, r := range rs {
		if sum += r.length; sum > size { // each length is at most size: no overflow
			return nil, false
		}
	}
	if rs = coalesce(rs); len(rs) > maxParts {
		return nil, false
	}
	return rs, false
}

// coalesce sorts ranges by start and merges those that overlap or touch.
func coalesce(rs []byteRange) []byteRange {
	if len(rs) < 2 {
		return rs
	}
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b byteRange) int {
		switch {
		case a.start < b.start:
			return -1
		case a.start > b.start:
			return 1
		}
		return 0
	})
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if end := last.start + last.length; r.start <= end {
			last.length = max(end, r.start+r.length) - last.start
			continue
		}
		out = append(out, r)
	}
	return out
}

// parseRange parses a Range header (RFC 9110 §14.1.2) against a representation of size
// bytes. ok is false when the header must be ignored (another unit, bad syntax, too
// many ranges): the answer is then the whole file. unsatisfiable is true when the
// syntax is right but no range overlaps the file: the answer is 416.
func parseRange(h string, size int64) (ranges []byteRange, unsatisfiable, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found {
		return nil, false, false
	}
	parts := strings.Split(spec, ",")
	if len(parts) > maxRanges {
		return nil, false, false
	}
	sawAny := false
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue // empty list elements are allowed (RFC 9110 §5.6.1)
		}
		sawAny = true
		first, last, found := strings.Cut(p, "-")
		if !found {
			return nil, false, false
		}
		first, last = strings.TrimSpace(first), strings.TrimSpace(last)
		if first == "" {
			// Suffix range: the last n bytes.
			n, err := parseDigits(last)
			if err != nil {
				return nil, false, false
			}
			if n == 0 || size == 0 {
				continue
			}
			n = min(n, size)
			ranges = append(ranges, byteRange{size - n, n})
			continue
		}
		start, err := parseDigits(first)
		if err != nil {
			return nil, false, false
		}
		end := size - 1
		if last != "" {
			if end, err = parseDigits(last); err != nil || end < start {
				return nil, false, false
			}
			end = min(end, size-1)
		}
		if start >= size {
			continue
		}
		ranges = append(ranges, byteRange{start, end - start + 1})
	}
	if !sawAny {
		return nil, false, false
	}
	if len(ranges) == 0 {
		return nil, true, true
	}
	return ranges, false, true
}

// parseDigits parses a non-negative decimal number of at most 18 digits (larger
// positions cannot exist in a file).
func parseDigits(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, strconv.ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseInt(s, 10, 64)
}
