package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/control"
)

// readAll drains a pathList.
func readAll(t *testing.T, in string) ([]string, error) {
	t.Helper()
	l := newPathList(strings.NewReader(in), "list.txt")
	var out []string
	for {
		p, ok, err := l.next()
		if err != nil || !ok {
			return out, err
		}
		out = append(out, p)
	}
}

// TestPathListParses: one origin path a line; '#' comments, blank lines and
// surrounding blanks skipped; CRLF line ends; a leading '/' and a last line without
// a newline accepted.
func TestPathListParses(t *testing.T) {
	in := "# manifest of the dataset\r\n  train/a.jpg  \r\n\r\n\t/train/b.jpg\n#train/c.jpg\n   # indented comment\nval//d.jpg\n/\n  \nlast.jpg"
	got, err := readAll(t, in)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"train/a.jpg", "train/b.jpg", "val/d.jpg", "", "last.jpg"}
	if !slices.Equal(got, want) {
		t.Errorf("paths %q, want %q", got, want)
	}
}

// TestPathListRefusesBadLines: a line over 4 KiB, a NUL byte or a path leaving the
// root is an error naming the list and the line number.
func TestPathListRefusesBadLines(t *testing.T) {
	long := strings.Repeat("x", maxListLine+1)
	for _, tc := range []struct{ in, want string }{
		{"a\n" + long + "\nb\n", "list.txt line 2: longer than 4096 bytes"},
		{"a\r\n\r\n" + long, "list.txt line 3: longer than 4096 bytes"},
		{"a\n../etc/passwd\n", "list.txt line 2:"},
		{"a\nb\x00c\n", "list.txt line 2:"},
	} {
		_, err := readAll(t, tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.40q: error %v, want one containing %q", tc.in, err, tc.want)
		}
	}
	// Exactly 4 KiB, with its CRLF and surrounding blanks, is fine.
	got, err := readAll(t, "  "+strings.Repeat("y", maxListLine-2)+"\r\n")
	if err != nil || len(got) != 1 {
		t.Errorf("a 4096-byte line: %d paths, %v", len(got), err)
	}
}

// TestPathBatchesFitOneRequest: a long list is cut into batches whose control
// request stays within what the owner accepts, and none is lost or repeated.
func TestPathBatchesFitOneRequest(t *testing.T) {
	var b strings.Builder
	const n = 3000
	for i := range n {
		b.WriteString(strings.Repeat("d\"ir\\", 120)) // escaped in JSON: longer there
		b.WriteString("/f")
		b.WriteString(strings.Repeat("é", i%50))
		b.WriteString("\n")
	}
	l := newPathList(strings.NewReader(b.String()), "list.txt")
	var total, batches int
	for {
		batch, err := l.batch()
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		batches++
		total += len(batch)
		body, _ := json.Marshal(control.Request{Paths: batch, Parallel: control.MaxParallel, BWLimit: 1 << 40})
		if len(body) > control.MaxBody {
			t.Fatalf("batch %d: request of %d bytes, over the owner's %d", batches, len(body), control.MaxBody)
		}
	}
	if total != n || batches < 2 {
		t.Errorf("%d paths in %d batches, want %d in several", total, batches, n)
	}
}

// TestBWLimitFlag: --bwlimit takes a size per second ("/s" optional) on warm, pin,
// mount and serve, 0 for no limit; a negative value, a non-number or a limit too
// small to pass a chunk is refused at parse time, exit 2, naming the flag.
func TestBWLimitFlag(t *testing.T) {
	for v, want := range map[string]Rate{"50MiB": 50 << 20, "500k": 500 << 10, "1.5M": 3 << 19, "2MiB/s": 2 << 20, "0": 0, "1000000": 1e6} {
		for _, args := range [][]string{{"cache", "warm", "x"}, {"cache", "pin", "x"}, {"mount", "o", "mp"}, {"serve", "o"}} {
			var c cli
			k, err := newParser(&c)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := k.Parse(append(args, "--bwlimit", v)); err != nil {
				t.Errorf("%v --bwlimit %s: %v", args, v, err)
				continue
			}
			got := map[string]Rate{"cache warm": c.Cache.Warm.BWLimit, "cache pin": c.Cache.Pin.BWLimit, "mount o": c.Mount.BWLimit, "serve o": c.Serve.BWLimit}[args[0]+" "+args[1]]
			if got != want {
				t.Errorf("%v --bwlimit %s: %d, want %d", args, v, got, want)
			}
		}
	}
	for v, msg := range map[string]string{"-1M": "negative", "fast": "not a rate", "100": "at least 4KiB per second"} {
		_, errOut, code := runCaptured(t, "cache", "warm", "--cache-dir", "/nonexistent", "x", "--bwlimit", v)
		if code != 2 || !strings.Contains(errOut, "--bwlimit") || !strings.Contains(errOut, msg) {
			t.Errorf("--bwlimit %s: exit %d, %q; want exit 2 naming --bwlimit and %q", v, code, errOut, msg)
		}
	}
	// A limit under two chunks per --origin-timeout would time every read out.
	_, errOut, code := runCaptured(t, "serve", t.TempDir(), "--cache-dir", t.TempDir(), "--bwlimit", "64KiB", "--chunk-size", "1MiB", "--origin-timeout", "10s")
	if code != 2 || !strings.Contains(errOut, "--bwlimit") || !strings.Contains(errOut, "--origin-timeout") {
		t.Errorf("--bwlimit 64KiB with 1MiB chunks and a 10s timeout: exit %d, %q", code, errOut)
	}
}

// A list that misses every line keeps only the first maxMissingKept paths to name,
// however many batches it takes, and counts them all.
func TestSumProgressBoundsMissing(t *testing.T) {
	var total cache.WarmProgress
	for b := 0; b < 5; b++ {
		var batch cache.WarmProgress
		for i := 0; i < 700; i++ {
			batch.Missing = append(batch.Missing, fmt.Sprintf("b%d/p%d", b, i))
		}
		batch.MissingCount = len(batch.Missing)
		total = sumProgress(total, batch)
	}
	if len(total.Missing) != maxMissingKept || total.MissingCount != 3500 {
		t.Fatalf("kept %d missing paths, counted %d; want %d and 3500", len(total.Missing), total.MissingCount, maxMissingKept)
	}
	if total.Missing[0] != "b0/p0" || total.Missing[maxMissingKept-1] != "b1/p299" {
		t.Errorf("kept %q … %q, want the first ones", total.Missing[0], total.Missing[maxMissingKept-1])
	}
}
