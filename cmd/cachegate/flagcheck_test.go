package main

import (
	"strings"
	"testing"
)

// TestFlagRanges: every duration, size and count flag refuses a value out of its
// range at parse time, with exit 2 and one line naming the flag and the range;
// values in range pass the parse (the commands then fail later on purpose: the
// origins and mount points here do not exist, so nothing starts).
func TestFlagRanges(t *testing.T) {
	const o, mp = "/nonexistent-origin", "/nonexistent-mountpoint"
	for _, tc := range []struct {
		args []string
		env  string // NAME=value set for the run
		want []string
	}{
		{args: []string{"mount", o, mp, "--origin-timeout", "0"}, want: []string{"--origin-timeout", "0s", "100ms to 24h"}},
		{args: []string{"mount", o, mp, "--origin-timeout=-5s"}, want: []string{"--origin-timeout", "-5s", "100ms to 24h"}},
		{args: []string{"mount", o, mp, "--origin-timeout", "-5s"}, want: []string{"--origin-timeout", "-5s", "100ms to 24h"}},
		{args: []string{"mount", o, mp, "--origin-timeout", "48h"}, want: []string{"--origin-timeout", "100ms to 24h"}},
		{args: []string{"serve", o, "--origin-timeout", "1ns"}, want: []string{"--origin-timeout", "100ms to 24h"}},
		{args: []string{"mount", o, mp}, env: "CACHEGATE_ORIGIN_TIMEOUT=0", want: []string{"--origin-timeout", "100ms to 24h"}},
		{args: []string{"mount", o, mp, "--metadata-ttl=-1s"}, want: []string{"--metadata-ttl", "-1s", "1ms to 8760h"}},
		{args: []string{"serve", o, "--metadata-ttl", "0"}, want: []string{"--metadata-ttl", "1ms to 8760h"}},
		{args: []string{"serve", o, "--idle-timeout=-1s"}, want: []string{"--idle-timeout", "-1s", "1s to 24h"}},
		{args: []string{"mount", o, mp, "--idle-timeout", "0"}, want: []string{"--idle-timeout", "1s to 24h"}},
		{args: []string{"serve", o, "--verify-interval=-1h"}, want: []string{"--verify-interval", "0s to 8760h"}},
		{args: []string{"mount", o, mp, "--verify-interval", "9000h"}, want: []string{"--verify-interval", "0s to 8760h"}},
		{args: []string{"mount", o, mp, "--cache-size", "-5G"}, want: []string{"--cache-size", "-5G", "must be positive"}},
		{args: []string{"serve", o, "--cache-size", "0"}, want: []string{"--cache-size", "at least 16KiB"}},
		{args: []string{"mount", o, mp, "--chunk-size", "0"}, want: []string{"--chunk-size", "multiple of 4KiB from 4KiB to 1GiB"}},
		{args: []string{"mount", o, mp, "--chunk-size", "5000"}, want: []string{"--chunk-size", "multiple of 4KiB from 4KiB to 1GiB"}},
		{args: []string{"mount", o, mp, "--readahead", "0"}, want: []string{"--readahead", "at least 4KiB"}},
		{args: []string{"mount", o, mp, "--min-free", "-1G"}, want: []string{"--min-free", "must not be negative"}},
		{args: []string{"mount", o, mp, "--min-free", "-5%"}, want: []string{"--min-free", "must not be negative"}},
		{args: []string{"serve", o, "--notsent-lowat", "-1"}, want: []string{"--notsent-lowat", "must not be negative"}},
		{args: []string{"serve", o, "--notsent-lowat-sendfile=-4KiB"}, want: []string{"--notsent-lowat-sendfile", "must not be negative"}},
		{args: []string{"serve", o, "--max-conns", "0"}, want: []string{"--max-conns", "1 to 1000000"}},
		{args: []string{"serve", o, "--max-conns", "-3"}, want: []string{"--max-conns", "1 to 1000000"}},
		{args: []string{"bench", "transfer", "--addr", "bad", "--size", "0"}, want: []string{"--size", "at least 1B"}},
		{args: []string{"bench", "transfer", "--addr", "bad", "--conns", "0"}, want: []string{"--conns", "1 to 1024"}},
		{args: []string{"bench", "transfer", "--addr", "bad", "--files", "-1"}, want: []string{"--files", "1 to 1000"}},
		{args: []string{"cache", "gc", "--cache-dir", "/nonexistent", "--to", "-1G"}, want: []string{"--to", "must not be negative"}},
		{args: []string{"cache", "warm", "--cache-dir", "/nonexistent", "--parallel", "0", "x"}, want: []string{"--parallel", "1 to 64"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			if k, v, ok := strings.Cut(tc.env, "="); ok {
				t.Setenv(k, v)
			}
			_, errOut, code := runCaptured(t, tc.args...)
			ok := code == 2 && strings.Count(strings.TrimSpace(errOut), "\n") == 0
			for _, w := range tc.want {
				ok = ok && strings.Contains(errOut, w)
			}
			if !ok {
				t.Errorf("%s %v: exit %d, stderr %q; want exit 2 and one line with %q", tc.env, tc.args, code, errOut, tc.want)
			}
		})
	}

	// In range: the parse passes and the command fails for its own reason.
	for _, args := range [][]string{
		{"mount", o, mp, "--origin-timeout", "100ms", "--metadata-ttl", "1ms", "--idle-timeout", "24h", "--cache-size", "16KiB", "--chunk-size", "4KiB", "--readahead", "4KiB", "--min-free", "0", "--max-conns", "1"},
		{"serve", o, "--notsent-lowat", "0", "--notsent-lowat-sendfile", "0", "--min-free", "0%", "--metadata-ttl", "8760h"},
		{"cache", "gc", "--cache-dir", "/nonexistent", "--to", "0"},
	} {
		_, errOut, _ := runCaptured(t, args...)
		if strings.Contains(errOut, "out of range") || strings.Contains(errOut, "must") || strings.Contains(errOut, "expected") {
			t.Errorf("%v: a value in range was refused: %q", args, errOut)
		}
	}
}
