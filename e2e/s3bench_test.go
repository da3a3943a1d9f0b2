package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// BenchmarkS3 measures the S3 origin against versitygw on loopback:
//
//	go test ./e2e -run '^$' -bench S3 -benchtime 1x     (or e2e/bench for everything)
func BenchmarkS3(b *testing.B) {
	for i := 0; i < b.N; i++ {
		printBenchTable(b, s3Bench(b, fullBench))
	}
}

func s3Bench(tb testing.TB, cfg benchConfig) []benchRow {
	t, ok := tb.(*testing.T)
	if !ok {
		// startVersitygw needs a *testing.T for Setenv; run the body in a subtest.
		var rows []benchRow
		b := tb.(*testing.B)
		b.Run("s3", func(b *testing.B) { rows = s3BenchRun(b, cfg, func(k, v string) { os.Setenv(k, v) }) })
		return rows
	}
	return s3BenchRun(t, cfg, t.Setenv)
}

func s3BenchRun(tb testing.TB, cfg benchConfig, setenv func(k, v string)) []benchRow {
	requireRoot(tb)
	v := startVersitygwTB(tb, setenv)
	ctx := context.Background()
	if err := v.client.MakeBucket(ctx, "bench", minio.MakeBucketOptions{}); err != nil {
		tb.Fatal(err)
	}
	bigSize := cfg.bigSize / 2 // 512 MiB in the full run
	data := make([]byte, bigSize)
	rand.NewChaCha8([32]byte{9}).Read(data)
	if _, err := v.client.PutObject(ctx, "bench", "big.bin", bytes.NewReader(data), bigSize, minio.PutObjectOptions{}); err != nil {
		tb.Fatal(err)
	}
	data = nil
	keys := cfg.treeDirs * 100
	local := filepath.Join(workDir, fmt.Sprintf("s3bench-local-%d", keys))
	os.MkdirAll(local, 0o755)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := 0; i < keys; i++ {
		k := fmt.Sprintf("k%05d", i)
		os.WriteFile(filepath.Join(local, k), nil, 0o644)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			v.client.PutObject(ctx, "bench", "flat/"+k, bytes.NewReader(nil), 0, minio.PutObjectOptions{})
		}()
	}
	wg.Wait()
	// The reference: a plain GetObject of the whole object, read and discarded.
	getObject := func() time.Duration {
		start := time.Now()
		obj, err := v.client.GetObject(ctx, "bench", "big.bin", minio.GetObjectOptions{})
		if err != nil {
			tb.Fatal(err)
		}
		defer obj.Close()
		if n, err := io.CopyBuffer(io.Discard, obj, make([]byte, 1<<20)); err != nil || n != bigSize {
			tb.Fatalf("GetObject: %d bytes, %v", n, err)
		}
		return time.Since(start)
	}

	var getT, coldT []time.Duration
	var coldCPU []float64 // cachegate's CPU-s per GiB during the cold read
	for r := 0; r < cfg.rounds; r++ {
		settle(tb, cfg)
		getT = append(getT, getObject())
		m := startMount(tb, "s3://bench", "", "--s3-endpoint", v.Endpoint)
		settle(tb, cfg)
		c0 := procCPU(tb, m.cmd.Process.Pid)
		coldT = append(coldT, timeCmd(tb, "cat", filepath.Join(m.Dir, "big.bin")))
		coldCPU = append(coldCPU, (procCPU(tb, m.cmd.Process.Pid)-c0)/(float64(bigSize)/(1<<30)))
		m.stop(tb)
		os.RemoveAll(m.CacheDir)
	}
	fmt.Printf("S3 cold read: cachegate used %.2f CPU-s per GiB (median of %d)\n", medianF(coldCPU), len(coldCPU))
	name := fmt.Sprintf("S3 cold sequential read, %d MiB", bigSize>>20)
	rows := []benchRow{{name, "GetObject read to io.Discard (minio-go)", ms(median(getT)), ms(median(coldT)), ratio(median(getT), median(coldT)), ">= 0.8", true}}

	m := startMount(tb, "s3://bench/flat", "", "--s3-endpoint", v.Endpoint)
	timeCmd(tb, "ls", "-l", m.Dir)
	timeCmd(tb, "ls", "-l", m.Dir)
	var natT, mntT []time.Duration
	for r := 0; r < cfg.rounds; r++ {
		natT = append(natT, timeCmd(tb, "ls", "-l", local))
		mntT = append(mntT, timeCmd(tb, "ls", "-l", m.Dir))
	}
	m.stop(tb)
	rows = append(rows, benchRow{fmt.Sprintf("S3 warm ls -l, %d keys in one prefix", keys), "ls -l of the same names on local disk", ms(median(natT)), ms(median(mntT)), ratio(median(mntT), median(natT)), "<= 1.5", false})
	return rows
}
