package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkMountMetaRestart measures `ls -lR` of a tree of 10,000 files in 100
// directories through a mount restarted on the same cache dir (listings from
// index.db), with nginx up and then down, against native `ls -lR` of the origin's
// directory and the first, cold `ls -lR` from nginx, in the same run:
//
//	go test ./e2e -run '^$' -bench MountMetaRestart -benchtime 1x
func BenchmarkMountMetaRestart(b *testing.B) {
	for i := 0; i < b.N; i++ {
		printBenchTable(b, metaRestartBench(b, 100, 100))
	}
}

// TestMetaRestartBenchSmoke runs the benchmark on 200 files, so that its code cannot
// rot; it checks that every row was measured, not how fast.
func TestMetaRestartBenchSmoke(t *testing.T) {
	rows := metaRestartBench(t, 2, 100)
	for _, r := range rows {
		if !(r.ratio > 0) || r.ref == "" || r.ours == "" {
			t.Errorf("row %q was not measured: %+v", r.workload, r)
		}
	}
	if len(rows) != 3 {
		t.Errorf("%d rows, want 3", len(rows))
	}
	printBenchTable(t, rows)
}

func metaRestartBench(tb testing.TB, dirs, files int) []benchRow {
	requireRoot(tb)
	root, err := os.MkdirTemp(workDir, "metabench-origin-")
	if err != nil {
		tb.Fatal(err)
	}
	os.Chmod(root, 0o755)
	for d := range dirs {
		dir := filepath.Join(root, fmt.Sprintf("d%03d", d))
		os.Mkdir(dir, 0o755)
		for f := range files {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d.txt", f)), []byte(fmt.Sprint(d, f)), 0o644)
		}
	}
	n := launchNginx(tb, root, "json", true, tb.Cleanup)
	cacheDir, err := os.MkdirTemp(workDir, "metabench-cache-")
	if err != nil {
		tb.Fatal(err)
	}
	flags := []string{"--metadata-ttl", "10m"}
	timeLs := func(dir string) time.Duration { return timeCmd(tb, "ls", "-lR", dir) }
	native := timeLs(root)
	m := startMount(tb, n.URL, cacheDir, flags...)
	cold := timeLs(m.Dir)
	m.stop(tb)
	m = startMount(tb, n.URL, cacheDir, flags...)
	sent := n.countRequests(tb, "GET")
	restarted := timeLs(m.Dir)
	time.Sleep(300 * time.Millisecond) // nginx logs a moment after it answers
	asked := n.countRequests(tb, "GET") - sent
	m.stop(tb)
	n.stop()
	m = startMount(tb, n.URL, cacheDir, flags...)
	offline := timeLs(m.Dir)
	m.stop(tb)
	total := dirs * files
	return []benchRow{
		{workload: fmt.Sprintf("`ls -lR` cold from nginx, %d files in %d dirs", total, dirs), reference: "native `ls -lR` of the origin dir",
			ref: ms(native), ours: ms(cold), ratio: ratio(cold, native), goal: "-"},
		{workload: fmt.Sprintf("`ls -lR` after a restart within --metadata-ttl, %d files (%d origin requests)", total, asked), reference: "native `ls -lR` of the origin dir",
			ref: ms(native), ours: ms(restarted), ratio: ratio(restarted, native), goal: "-"},
		{workload: fmt.Sprintf("`ls -lR` after a restart with the origin down, %d files", total), reference: "native `ls -lR` of the origin dir",
			ref: ms(native), ours: ms(offline), ratio: ratio(offline, native), goal: "-"},
	}
}
