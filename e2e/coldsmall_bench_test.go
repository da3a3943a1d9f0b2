package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkColdSmall measures cold small files (issue 21, goal 2): one `cat` of 5,000
// files of 1 B-64 KiB in 50 directories through a fresh mount (a new cache each
// round, listings included), against one sequential keep-alive `curl -K` of the same
// URLs and `curl -Z --parallel-max 8`, in alternating rounds of one run:
//
//	go test ./e2e -run '^$' -bench ColdSmall -benchtime 1x
//
// COLDSMALL_PREFETCH="0,8,32" measures those --prefetch settings (default: off and the
// default); COLDSMALL_FLAGS adds mount flags to every setting.
func BenchmarkColdSmall(b *testing.B) {
	settings := []string{"0", ""}
	if s := os.Getenv("COLDSMALL_PREFETCH"); s != "" {
		settings = strings.Split(s, ",")
	}
	for i := 0; i < b.N; i++ {
		printBenchTable(b, coldSmallRows(b, fullBench, settings))
	}
}

// TestColdSmallBenchSmoke runs the cold small-file rows on a small tree, so that the
// benchmark cannot rot; it checks that every row was measured, not how fast.
func TestColdSmallBenchSmoke(t *testing.T) {
	rows := coldSmallRows(t, smokeBench, []string{"0", ""})
	for _, r := range rows {
		if !(r.ratio > 0) || r.ref == "" || r.ours == "" {
			t.Errorf("row %q was not measured: %+v", r.workload, r)
		}
	}
	if len(rows) != 4 {
		t.Errorf("%d rows, want 4", len(rows))
	}
	printBenchTable(t, rows)
}

// coldSmallRows times the cold cat per --prefetch setting ("" is the default) and the
// two curl references, each a median of cfg.rounds alternating rounds.
func coldSmallRows(b testing.TB, cfg benchConfig, settings []string) []benchRow {
	requireRoot(b)
	dir, err := os.MkdirTemp(workDir, "coldsmall-origin-")
	if err != nil {
		b.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	files := writeSmallTree(b, filepath.Join(dir, "small"), cfg.smallDirs)
	srv := startNginx(b, dir, "json")
	curlCfg := dir + "-curl.cfg"
	var sb strings.Builder
	for _, f := range files {
		fmt.Fprintf(&sb, "url = \"%s%s\"\noutput = \"/dev/null\"\n", srv.URL, f)
	}
	if err := os.WriteFile(curlCfg, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	var extra []string
	if s := os.Getenv("COLDSMALL_FLAGS"); s != "" {
		extra = strings.Fields(s)
	}
	curlK, curlZ := []time.Duration{}, []time.Duration{}
	ours := make([][]time.Duration, len(settings))
	for r := 0; r < cfg.rounds; r++ {
		timeCmd(b, "sync")
		curlK = append(curlK, timeCmd(b, "curl", "-sSf", "-K", curlCfg))
		curlZ = append(curlZ, timeCmd(b, "curl", "-sSf", "-Z", "--parallel-max", "8", "-K", curlCfg))
		for i, s := range settings {
			flags := append([]string{"--metadata-ttl", "10m"}, extra...)
			if s != "" {
				flags = append(flags, "--prefetch", s)
			}
			m := startMount(b, srv.URL, "", flags...)
			args := make([]string, len(files))
			for j, f := range files {
				args[j] = filepath.Join(m.Dir, f)
			}
			timeCmd(b, "sync")
			ours[i] = append(ours[i], timeCmd(b, "cat", args...))
			m.stop(b)
			os.RemoveAll(m.CacheDir)
		}
	}
	b.Logf("cold small files: curl -K %v, curl -Z %v, mount %v (settings %q)", curlK, curlZ, ours, settings)
	var rows []benchRow
	for i, s := range settings {
		name := "--prefetch " + s
		if s == "" {
			name = "default --prefetch"
		}
		w := fmt.Sprintf("cold small files, cat (%d files of 1 B-64 KiB), %s", len(files), name)
		rows = append(rows,
			benchRow{w, "one keep-alive curl -K of the same URLs", ms(median(curlK)), ms(median(ours[i])), ratio(median(curlK), median(ours[i])), ">= 1.0", true},
			benchRow{w, "curl -Z --parallel-max 8 of the same URLs", ms(median(curlZ)), ms(median(ours[i])), ratio(median(curlZ), median(ours[i])), ">= 0.5", true})
	}
	return rows
}
