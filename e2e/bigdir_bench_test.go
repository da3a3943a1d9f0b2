package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// BenchmarkBigDir measures one directory of 100,000 entries, listed through the mount
// from nginx's JSON and HTML indexes (the latter also with --trust-html-index) and
// from an S3 prefix (paged ListObjectsV2
// against versitygw), cold and warm, each against its reference in the same run:
//
//	go test ./e2e -run '^$' -bench BigDir -benchtime 1x -timeout 30m
//
// Making the 100,000 S3 keys takes a minute or two of PUTs.
func BenchmarkBigDir(b *testing.B) {
	for i := 0; i < b.N; i++ {
		var rows []benchRow
		b.Run("dir", func(b *testing.B) { rows = bigDirBench(b, 100_000, 3, func(k, v string) { os.Setenv(k, v) }) })
		printBenchTable(b, rows)
	}
}

// bigDirBench returns the rows for one directory of n entries, medians of rounds.
func bigDirBench(tb testing.TB, n, rounds int, setenv func(k, v string)) []benchRow {
	requireRoot(tb)
	dir, err := os.MkdirTemp(workDir, "bigdir-origin-")
	if err != nil {
		tb.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	big := filepath.Join(dir, "big")
	os.Mkdir(big, 0o755)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("f%06d.txt", i)
		if err := os.WriteFile(filepath.Join(big, names[i]), []byte(names[i]), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	var rows []benchRow
	label := func(s string) string { return fmt.Sprintf("%s, %d entries", s, n) }

	// The references: what fetching and parsing the listing costs a client alone.
	jsonSrv := startNginx(tb, dir, "json")
	htmlSrv := startNginx(tb, dir, "html")
	curlJq := func(url string) time.Duration {
		start := time.Now()
		out, err := exec.Command("sh", "-c", "curl -sf "+url+" | jq length").Output()
		if err != nil || string(bytes.TrimSpace(out)) != fmt.Sprint(n) {
			tb.Fatalf("curl | jq length of %s: %q, %v", url, out, err)
		}
		return time.Since(start)
	}
	curlCount := func(url string) time.Duration {
		start := time.Now()
		out, err := exec.Command("sh", "-c", "curl -sf "+url+" | grep -c '<a href'").Output()
		if err != nil || len(bytes.TrimSpace(out)) == 0 {
			tb.Fatalf("curl | grep -c of %s: %q, %v", url, out, err)
		}
		return time.Since(start)
	}
	nativeLs := func() time.Duration { return timeCmd(tb, "ls", "-l", big) }

	// lsRows times `ls -l` of the directory through fresh mounts (cold: a new cache
	// dir each round) and then through one mount whose listing is cached (warm).
	lsRows := func(what, originURL, sub string, ref func() time.Duration, refName string, flags ...string) {
		var refT, coldT, natT, warmT []time.Duration
		var rss int64
		for r := 0; r < rounds; r++ {
			refT = append(refT, ref())
			m := startMount(tb, originURL, "", append([]string{"--metadata-ttl", "10m"}, flags...)...)
			coldT = append(coldT, timeCmd(tb, "ls", "-l", filepath.Join(m.Dir, sub)))
			rss = max(rss, rssOf(m.cmd.Process.Pid))
			if r < rounds-1 {
				m.stop(tb)
				os.RemoveAll(m.CacheDir)
				continue
			}
			for w := 0; w < rounds; w++ {
				natT = append(natT, nativeLs())
				warmT = append(warmT, timeCmd(tb, "ls", "-l", filepath.Join(m.Dir, sub)))
			}
			m.stop(tb)
		}
		fmt.Printf("%s: mount RSS after the cold ls -l: %d MiB (%d B an entry)\n", label(what), rss>>20, rss/int64(n))
		rows = append(rows,
			benchRow{label("cold ls -l, " + what), refName, ms(median(refT)), ms(median(coldT)), ratio(median(coldT), median(refT)), "<= 2", false},
			benchRow{label("warm ls -l, " + what), "ls -l of the same directory on local disk", ms(median(natT)), ms(median(warmT)), ratio(median(warmT), median(natT)), "<= 2", false})
	}
	lsRows("nginx JSON", jsonSrv.URL, "big", func() time.Duration { return curlJq(jsonSrv.URL + "big/") }, "curl of the listing, jq length")
	lsRows("nginx HTML", htmlSrv.URL, "big", func() time.Duration { return curlCount(htmlSrv.URL + "big/") }, "curl of the listing, grep -c")
	// The index's byte sizes and minute times taken as they are: no HEAD per file.
	lsRows("nginx HTML, --trust-html-index", htmlSrv.URL, "big", func() time.Duration { return curlCount(htmlSrv.URL + "big/") }, "curl of the listing, grep -c", "--trust-html-index")

	// S3: the same names under one prefix of a versitygw bucket.
	v := startVersitygwTB(tb, setenv)
	ctx := context.Background()
	if err := v.client.MakeBucket(ctx, "bigdir", minio.MakeBucketOptions{}); err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var putErr error
	var mu sync.Mutex
	for _, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := v.client.PutObject(ctx, "bigdir", "big/"+name, bytes.NewReader([]byte(name)), int64(len(name)), minio.PutObjectOptions{}); err != nil {
				mu.Lock()
				putErr = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if putErr != nil {
		tb.Fatal(putErr)
	}
	listObjects := func() time.Duration {
		start := time.Now()
		count := 0
		for obj := range v.client.ListObjects(ctx, "bigdir", minio.ListObjectsOptions{Prefix: "big/"}) {
			if obj.Err != nil {
				tb.Fatal(obj.Err)
			}
			count++
		}
		if count != n {
			tb.Fatalf("ListObjectsV2 gave %d keys, want %d", count, n)
		}
		return time.Since(start)
	}
	lsRows("S3 prefix", "s3://bigdir", "big", listObjects, "paged ListObjectsV2 (minio-go), counted", "--s3-endpoint", v.Endpoint)
	return rows
}

// TestBigDirBenchSmoke runs the big-directory benchmark on 2,000 entries, so that
// its code cannot rot; it checks that every row was measured, not how fast.
func TestBigDirBenchSmoke(t *testing.T) {
	rows := bigDirBench(t, 2000, 1, t.Setenv)
	for _, r := range rows {
		if !(r.ratio > 0) || r.ref == "" || r.ours == "" {
			t.Errorf("row %q was not measured: %+v", r.workload, r)
		}
	}
	if len(rows) != 8 {
		t.Errorf("%d rows, want 8", len(rows))
	}
	printBenchTable(t, rows)
}
