package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cachegate/cachegate/cache"
)

// TestProgressETA: the warm progress line's ETA is the time left at the current
// rate (it was always 0s: seconds were handed to time.Duration as nanoseconds).
func TestProgressETA(t *testing.T) {
	cases := []struct {
		p       cache.WarmProgress
		elapsed time.Duration
		want    string
	}{
		{cache.WarmProgress{Bytes: 100 << 20, BytesDone: 10 << 20, Files: 4, FilesDone: 1}, 10 * time.Second, "ETA 1m30s"},
		{cache.WarmProgress{Bytes: 100 << 20, BytesDone: 50 << 20}, 2 * time.Second, "ETA 2s"},
		{cache.WarmProgress{Bytes: 100 << 20, BytesDone: 0}, time.Second, "ETA -"},
		{cache.WarmProgress{Bytes: 100 << 20, BytesDone: 100 << 20}, time.Second, "ETA -"},
	}
	for _, c := range cases {
		got := progressText(c.p, c.elapsed)
		if !strings.Contains(got, c.want) {
			t.Errorf("progress %+v after %v: %q, want %q in it", c.p, c.elapsed, got, c.want)
		}
	}
	if got := progressText(cases[0].p, 10*time.Second); !strings.Contains(got, " 10% ") || !strings.Contains(got, "1.0 MiB/s") || !strings.Contains(got, "files 1/4") {
		t.Errorf("progress line %q", got)
	}
}

func TestPlural(t *testing.T) {
	for n, want := range map[int]string{0: "0 objects", 1: "1 object", 2: "2 objects"} {
		if got := plural(n, "object"); got != want {
			t.Errorf("plural(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestTableColumnsByDisplayWidth: a wide (CJK) name does not shift the columns after
// it: every cell of a column starts at the same terminal column.
func TestTableColumnsByDisplayWidth(t *testing.T) {
	var b strings.Builder
	rows := [][]string{{"PATH", "SIZE", "CACHED"}, {"日本語のファイル.txt", "1.0KiB", "100%"}, {"plain.txt", "2.0KiB", "0%"}, {"café/ｆｕｌｌ", "3B", "50%"}}
	if err := writeTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != len(rows) {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	for col := 1; col < 3; col++ {
		at := -1
		for i, l := range lines {
			j := strings.Index(l, rows[i][col])
			if j < 0 {
				t.Fatalf("line %q lacks %q", l, rows[i][col])
			}
			w := displayWidth(l[:j])
			if at >= 0 && w != at {
				t.Errorf("column %d starts at display column %d on line %d, %d on the first:\n%s", col, w, i, at, b.String())
			}
			at = w
		}
	}
	if w := displayWidth("日本ｆa\u0301"); w != 7 {
		t.Errorf("displayWidth = %d, want 7 (2 wide, 1 fullwidth, a and a combining mark)", w)
	}
}

// TestLsPathForm: cache ls prints paths as its JSON does, relative to the origin's
// root, without a leading slash.
func TestLsPathForm(t *testing.T) {
	objs := []cache.ObjectInfo{{Path: "d/a.txt", Origin: "http://o/", Size: 10, CachedBytes: 5}}
	rows := lsRows(objs, false)
	if rows[1][0] != "d/a.txt" {
		t.Errorf("ls prints path %q, JSON has %q", rows[1][0], objs[0].Path)
	}
	rows = lsRows(objs, true)
	if rows[0][len(rows[0])-1] != "ORIGIN" || rows[1][len(rows[1])-1] != "http://o/" {
		t.Errorf("ls --all rows %q lack the origin", rows)
	}
}

// TestGcToZeroIsGiven: `cache gc --to 0` asks for 0 bytes (everything but pins and
// open files), not for the default of half the limit.
func TestGcToZeroIsGiven(t *testing.T) {
	for _, args := range [][]string{{"--to", "0"}, {"--to=0B"}, {}} {
		var c cli
		k, err := newParser(&c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.Parse(append([]string{"cache", "gc", "--cache-dir", t.TempDir()}, args...)); err != nil {
			t.Fatal(err)
		}
		if got, want := c.Cache.Gc.To.set, len(args) > 0; got != want || c.Cache.Gc.To.Size != 0 {
			t.Errorf("gc %v: --to given %v (%d), want %v", args, got, c.Cache.Gc.To.Size, want)
		}
	}
}
