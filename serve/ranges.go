package serve

import (
	"strconv"
	"strings"
)

// byteRange is a satisfiable range of a representation: length bytes from start.
type byteRange struct{ start, length int64 }

// maxRanges bounds the ranges of one request; more are served as the whole file
// (as nginx's max_ranges and Go's net/http do), so that a request cannot ask for a
// thousand tiny parts.
const maxRanges = 64

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
