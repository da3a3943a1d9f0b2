package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/units"
)

// BenchmarkPeers measures a peer group of three members on loopback:
//
//	go test ./e2e -run '^$' -bench Peers -benchtime 1x     (or e2e/bench for everything)
//
// Rows: a read through a member whose spans are warm on its peers (it keeps only
// its own, --peer-copy owner, so every round reads the others' through them)
// against the same file from a member that holds all of it; and the origin's bytes
// for three members reading the file each, with peers and without.
func BenchmarkPeers(b *testing.B) {
	for i := 0; i < b.N; i++ {
		printBenchTable(b, peersBench(b, fullBench))
	}
}

// TestPeersBenchSmoke runs the peer benchmark small, so that it cannot rot; it
// checks that every row was measured, not how fast.
func TestPeersBenchSmoke(t *testing.T) {
	requireRoot(t)
	rows := peersBench(t, smokeBench)
	for _, r := range rows {
		if !(r.ratio > 0) || r.ref == "" || r.ours == "" {
			t.Errorf("row %q was not measured: %+v", r.workload, r)
		}
	}
	if len(rows) != 2 {
		t.Errorf("%d rows, want 2", len(rows))
	}
	printBenchTable(t, rows)
}

func peersBench(tb testing.TB, cfg benchConfig) []benchRow {
	requireRoot(tb)
	root, err := os.MkdirTemp(workDir, "peers-bench-")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.RemoveAll(root)
	os.Chmod(root, 0o755)
	sum := writeRandom(tb, filepath.Join(root, "big.bin"), cfg.bigSize, 11)
	span := "64MiB"
	if cfg.small {
		span = "4MiB"
	}
	cacheSize := fmt.Sprint(2 * cfg.bigSize) // holds the file whole
	client := &http.Client{Timeout: 10 * time.Minute}
	get := func(u string) time.Duration {
		start := time.Now()
		resp, err := client.Get(u)
		if err != nil {
			tb.Fatal(err)
		}
		defer resp.Body.Close()
		if n, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 1<<20)); err != nil || n != cfg.bigSize || resp.StatusCode != 200 {
			tb.Fatalf("GET %s: %s, %d bytes, %v", u, resp.Status, n, err)
		}
		return time.Since(start)
	}

	// Without peers: three members, each on its own.
	solo := startNginx(tb, root, "json")
	for range 3 {
		s := startServe(tb, solo.URL, "", "--cache-size", cacheSize)
		get(s.URL + "big.bin")
		s.stop()
	}
	soloBytes := solo.originBytes(tb, "/big.bin")
	solo.stop()

	g := newPeerGroup(tb, root, 3)
	flags := []string{"--peers", g.list, "--peer-span", span, "--cache-size", cacheSize}
	for i := range 3 {
		extra := flags
		if i == 0 {
			extra = append(extra, "--peer-copy", "owner")
		}
		args := append([]string{"serve", g.origin.URL, "--listen", fmt.Sprintf("127.0.0.1:%d", g.ports[i]), "--cache-dir", filepath.Join(root, fmt.Sprintf("cache%d", i))}, extra...)
		startProc(tb, args, func() bool { return waitPort(g.ports[i], 0) == nil })
	}
	// Members 1 and 2 read it whole: each holds all of it, every owner its spans.
	for _, i := range []int{1, 2, 0} {
		if got, err := hashGet(client, g.url(i)+"big.bin"); err != nil || got != sum {
			tb.Fatalf("member %d: %s, %v", i, got, err)
		}
	}
	peerBytes := g.origin.originBytes(tb, "/big.bin")
	var refs, ours []time.Duration
	for range max(cfg.rounds, 1) {
		refs = append(refs, get(g.url(1)+"big.bin"))
		ours = append(ours, get(g.url(0)+"big.bin"))
	}
	ref, our := median(refs), median(ours)
	size := cfg.bigName()
	return []benchRow{
		{workload: "peer group, " + size + " through a member whose spans are warm on its peers", reference: "the same from a member holding all of it",
			ref: ms(ref), ours: ms(our), ratio: ratio(ref, our), goal: ">= 0.8", higherIsBetter: true},
		{workload: "peer group, origin bytes for 3 members reading " + size + " each", reference: "3 members without --peers",
			ref: units.FormatSize(soloBytes), ours: units.FormatSize(peerBytes), ratio: float64(peerBytes) / float64(soloBytes), goal: "<= 0.35"},
	}
}
