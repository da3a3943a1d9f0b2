package main

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/cachegate/cachegate/internal/control"
	"github.com/cachegate/cachegate/internal/units"
)

// Every duration, size and count flag is checked against its range as it is parsed
// (from the command line, an env var or its default), so a mistake is one line at
// exit 2 that names the flag and the range, before anything starts. The layers below
// read 0 and negative values as "the default", which turned `--origin-timeout 0` into
// 30s and a typo into a silent default.
//
// A flag missing from these tables is only refused when negative: whoever adds a
// flag gives it its range here.

// durationRanges are the allowed values of the duration flags, by flag name.
var durationRanges = map[string]struct{ min, max time.Duration }{
	"origin-timeout": {100 * time.Millisecond, 24 * time.Hour},
	"metadata-ttl":   {time.Millisecond, 8760 * time.Hour},
	"idle-timeout":   {time.Second, 24 * time.Hour},
	// 0 turns the scrub off; a short interval only runs it back to back, still at
	// its bounded rate.
	"verify-interval": {0, 8760 * time.Hour},
}

// sizeRange is the allowed values of a size flag: min to max (0: no bound), a
// multiple of align when set.
type sizeRange struct {
	min, max, align int64
}

var sizeRanges = map[string]sizeRange{
	"cache-size": {min: 16 << 10}, // 4 chunks of the smallest chunk size
	"chunk-size": {min: 4 << 10, max: 1 << 30, align: 4 << 10},
	"readahead":  {min: 4 << 10},
	"size":       {min: 1}, // bench transfer
	// 0 allowed: --notsent-lowat* (the kernel's default), --min-free (none), gc --to.
}

var intRanges = map[string]struct{ min, max int64 }{
	"max-conns":       {1, 1_000_000},
	"parallel":        {1, control.MaxParallel},
	"files":           {1, 1000}, // bench transfer
	"conns":           {1, 1024}, // bench transfer
	"max-dir-entries": {1, 100_000_000},
	"prefetch":        {0, 1000},
}

// rangeMappers are the kong options that check the flags above.
func rangeMappers() []kong.Option {
	return []kong.Option{
		kong.TypeMapper(reflect.TypeOf(time.Duration(0)), kong.MapperFunc(decodeDuration)),
		kong.TypeMapper(reflect.TypeOf(0), kong.MapperFunc(decodeInt)),
	}
}

// popNumber pops a flag's value, taking a negative number ("-5s", "-5G") as a value:
// kong reads it as a short flag and said `expected value value but got "-5G" (short
// flag)`, where the user needs to hear that the value must be positive.
func popNumber(ctx *kong.DecodeContext) (string, error) {
	if t := ctx.Scan.Peek(); t.Type == kong.UntypedToken {
		if s, ok := t.Value.(string); ok && len(s) > 1 && s[0] == '-' && (s[1] >= '0' && s[1] <= '9' || s[1] == '.') {
			ctx.Scan.Pop()
			return s, nil
		}
	}
	t, err := ctx.Scan.PopValue("value")
	if err != nil {
		return "", err
	}
	return fmt.Sprint(t.Value), nil
}

func decodeDuration(ctx *kong.DecodeContext, target reflect.Value) error {
	s, err := popNumber(ctx)
	if err != nil {
		return err
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration: use a number with a unit, e.g. 500ms, 30s, 5m, 1h", s)
	}
	r, ok := durationRanges[ctx.Value.Name]
	switch {
	case ok && (d < r.min || d > r.max):
		return fmt.Errorf("%s is out of range: use %s to %s%s", d, fmtDuration(r.min), fmtDuration(r.max), defaultHint(ctx))
	case !ok && d < 0:
		return fmt.Errorf("%s is out of range: a duration must not be negative%s", d, defaultHint(ctx))
	}
	target.SetInt(int64(d))
	return nil
}

func decodeInt(ctx *kong.DecodeContext, target reflect.Value) error {
	s, err := popNumber(ctx)
	if err != nil {
		return err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	if r, ok := intRanges[ctx.Value.Name]; ok && (n < r.min || n > r.max) {
		return fmt.Errorf("%d is out of range: use %d to %d%s", n, r.min, r.max, defaultHint(ctx))
	}
	if n < math.MinInt || n > math.MaxInt {
		return fmt.Errorf("%d is out of range", n)
	}
	target.SetInt(n)
	return nil
}

// Decode parses a size flag and checks it against its range (Size is a kong.MapperValue).
func (s *Size) Decode(ctx *kong.DecodeContext) error {
	v, err := popNumber(ctx)
	if err != nil {
		return err
	}
	r := sizeRanges[ctx.Value.Name]
	if strings.HasPrefix(strings.TrimSpace(v), "-") {
		if r.min > 0 {
			return fmt.Errorf("%q is negative: the size must be positive, at least %s%s", v, fmtSize(r.min), defaultHint(ctx))
		}
		return fmt.Errorf("%q is negative: the size must not be negative (0 or more)%s", v, defaultHint(ctx))
	}
	n, err := units.ParseSize(v)
	if err != nil {
		return err
	}
	switch {
	case r.align > 0 && (n < r.min || n > r.max || n%r.align != 0):
		return fmt.Errorf("%s is out of range: use a multiple of %s from %s to %s%s", v, fmtSize(r.align), fmtSize(r.min), fmtSize(r.max), defaultHint(ctx))
	case n < r.min:
		return fmt.Errorf("%s is out of range: the size must be positive, at least %s%s", v, fmtSize(r.min), defaultHint(ctx))
	case r.max > 0 && n > r.max:
		return fmt.Errorf("%s is out of range: use %s to %s%s", v, fmtSize(r.min), fmtSize(r.max), defaultHint(ctx))
	}
	*s = Size(n)
	return nil
}

// Decode parses --min-free: a size or a percentage, neither negative.
func (f *FreeSpace) Decode(ctx *kong.DecodeContext) error {
	v, err := popNumber(ctx)
	if err != nil {
		return err
	}
	if strings.HasPrefix(strings.TrimSpace(v), "-") {
		return fmt.Errorf("%q must not be negative: use a size, or a percentage from 0 to 99%%%s", v, defaultHint(ctx))
	}
	return f.UnmarshalText([]byte(v))
}

// defaultHint names the flag's default, as an example of a good value.
func defaultHint(ctx *kong.DecodeContext) string {
	if ctx.Value.Default == "" {
		return ""
	}
	return "; the default is " + ctx.Value.Default
}

// fmtDuration prints 24h rather than 24h0m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// fmtSize prints sizes as they are typed: 4KiB, 1GiB, 1B.
func fmtSize(n int64) string {
	for _, u := range []struct {
		s string
		v int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.v && n%u.v == 0 {
			return strconv.FormatInt(n/u.v, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
