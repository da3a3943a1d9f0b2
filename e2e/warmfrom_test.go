package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestWarmFromList (issue 21 goal 7): `cache warm --from FILE` reads one origin path
// a line (a leading '/', '#' comments, blank lines, CRLF and surrounding blanks
// allowed), combined with the PATH arguments; a path the origin lacks is named on
// stderr and in --json, the others are warmed, and the exit status is 1. `--from -`
// reads the list from stdin.
func TestWarmFromList(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"a.bin", "sub/b.bin", "c.bin", "d.bin"} {
		writeRandom(t, filepath.Join(root, f), 20<<10, 3)
	}
	cacheDir := filepath.Join(t.TempDir(), "cache")
	list := filepath.Join(t.TempDir(), "manifest.txt")
	os.WriteFile(list, []byte("# a dataset manifest\r\n  a.bin  \r\n\r\n/sub/b.bin\nnope/missing.bin\n# c.bin is not warmed\n"), 0o644)

	out, code := runCLI(t, "cache", "warm", "--origin", root, "--cache-dir", cacheDir, "--from", list, "--json")
	if code != 1 {
		t.Errorf("warm --from with a missing path: exit %d, want 1\n%s", code, out)
	}
	if !strings.Contains(out, "/nope/missing.bin: not in the origin") {
		t.Errorf("warm --from did not name the missing path:\n%s", out)
	}
	// The JSON document (stdout) lists it too.
	var res struct {
		Files   int      `json:"files"`
		Missing []string `json:"missing"`
	}
	if i := strings.Index(out, "{"); i < 0 || json.NewDecoder(strings.NewReader(out[i:])).Decode(&res) != nil {
		t.Errorf("warm --from --json: no JSON document in\n%s", out)
	} else if res.Files != 2 || len(res.Missing) != 1 || res.Missing[0] != "nope/missing.bin" {
		t.Errorf("warm --from --json: %+v, want 2 files and missing [nope/missing.bin]", res)
	}
	cached := lsCached(t, cacheDir)
	for _, f := range []string{"a.bin", "sub/b.bin"} {
		if e, ok := cached[f]; !ok || !e.Complete {
			t.Errorf("%s after warm --from: %+v, want it cached whole", f, e)
		}
	}
	if _, ok := cached["c.bin"]; ok {
		t.Errorf("c.bin (a comment) was warmed")
	}

	// From stdin, combined with an argument.
	cmd := exec.Command(binary, "cache", "warm", "--cache-dir", cacheDir, "--from", "-", "d.bin")
	cmd.Stdin = strings.NewReader("c.bin\n")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("warm --from - d.bin: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), "warmed 2 files") {
		t.Errorf("warm --from - d.bin: %s", b)
	}
	cached = lsCached(t, cacheDir)
	for _, f := range []string{"c.bin", "d.bin"} {
		if e, ok := cached[f]; !ok || !e.Complete {
			t.Errorf("%s after warm --from -: %+v, want it cached whole", f, e)
		}
	}

	// A line over 4 KiB is refused, naming its line number, before anything is warmed.
	os.WriteFile(list, []byte("a.bin\n"+strings.Repeat("x", 5000)+"\n"), 0o644)
	if out, code := runCLI(t, "cache", "warm", "--cache-dir", cacheDir, "--from", list); code == 0 || !strings.Contains(out, "line 2") {
		t.Errorf("warm --from with a 5000-byte line: exit %d: %s", code, out)
	}
}

func lsCached(t *testing.T, cacheDir string) map[string]lsEntry {
	t.Helper()
	out, code := runCLI(t, "cache", "ls", "--cached-only", "--json", "--cache-dir", cacheDir)
	var ents []lsEntry
	if code != 0 || json.Unmarshal([]byte(out), &ents) != nil {
		t.Fatalf("cache ls --json: exit %d: %s", code, out)
	}
	m := map[string]lsEntry{}
	for _, e := range ents {
		m[e.Path] = e
	}
	return m
}

// TestBWLimitHoldsAtOrigin (issue 21 goal 7): a mount with --bwlimit 2MiB reads a
// file from nginx at 2 MiB/s within 10%, as nginx's access log times it: the bytes
// of the requests that ended between two request ends, over the time between them.
// Small chunks and readahead, and dd with O_DIRECT (no kernel readahead asking for
// megabytes at once, which nginx hands to the socket buffers in one go), make a
// steady stream of 256 KiB requests, so the log's granularity is fine enough.
// About 12 s: skipped with -short.
func TestBWLimitHoldsAtOrigin(t *testing.T) {
	if testing.Short() {
		t.Skip("about 11 s of paced reading")
	}
	root, err := os.MkdirTemp(workDir, "origin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	const size, rate = 24 << 20, 2 << 20
	want := writeRandom(t, filepath.Join(root, "big.bin"), size, 7)
	ng := startNginx(t, root, "json")
	m := startMount(t, ng.URL, "", "--bwlimit", "2MiB", "--chunk-size", "64KiB", "--readahead", "512KiB")
	// O_DIRECT: the kernel passes each 256 KiB read on as it comes, without a
	// readahead of its own that would ask for megabytes at once.
	if out, err := exec.Command("dd", "if="+filepath.Join(m.Dir, "big.bin"), "of=/dev/null", "bs=256k", "iflag=direct").CombinedOutput(); err != nil {
		t.Fatalf("dd through the mount: %v\n%s", err, out)
	}
	if got := sha256File(t, filepath.Join(m.Dir, "big.bin")); got != want {
		t.Fatalf("read through the mount: sha256 %s, want %s", got, want)
	}
	type req struct {
		end   float64 // $msec: when nginx logged it (the response's end)
		bytes int64
	}
	var reqs []req
	f, err := os.Open(ng.timedLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var total int64
	for sc.Scan() {
		fl := strings.Fields(sc.Text()) // $msec $body_bytes_sent $request_method $uri
		if len(fl) < 4 || fl[2] != "GET" || fl[3] != "/big.bin" {
			continue
		}
		end, _ := strconv.ParseFloat(fl[0], 64)
		n, _ := strconv.ParseInt(fl[1], 10, 64)
		reqs = append(reqs, req{end, n})
		total += n
	}
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].end < reqs[j].end })
	if total != size || len(reqs) < 20 {
		t.Fatalf("nginx sent %d bytes of big.bin in %d requests, want %d in at least 20", total, len(reqs), size)
	}
	// From the first request that ended a second after the first one (the burst of
	// one second's worth is spent by then) to the last but one (the tail has fewer
	// requests in flight).
	a := 0
	for a < len(reqs) && reqs[a].end < reqs[0].end+1 {
		a++
	}
	b := len(reqs) - 2
	var bytes int64
	for _, r := range reqs[a+1 : b+1] {
		bytes += r.bytes
	}
	secs := reqs[b].end - reqs[a].end
	got := float64(bytes) / secs
	t.Logf("%d requests; %.1f MiB in %.2f s between request ends: %.3f MiB/s (limit 2 MiB/s); whole read %.2f s",
		len(reqs), float64(bytes)/(1<<20), secs, got/(1<<20), reqs[len(reqs)-1].end-reqs[0].end)
	if secs < 7 {
		t.Fatalf("the paced read measured over only %.2f s: the limit did not hold back the read", secs)
	}
	if got < 0.9*rate || got > 1.1*rate {
		t.Errorf("origin rate %.3f MiB/s, want 2 MiB/s within 10%%", got/(1<<20))
	}
}
