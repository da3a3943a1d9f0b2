package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

const (
	s3Access = "cachegateKEY"
	s3Secret = "cachegateSECRET1234"
)

// versitygw is a real S3 server (versitygw, posix backend) on a loopback port.
type versitygw struct {
	Endpoint string
	client   *minio.Client
}

// startVersitygw starts versitygw over a new directory. e2e/run installs it with
// `go install github.com/versity/versitygw/cmd/versitygw@v1.8.0`.
func startVersitygw(t *testing.T) *versitygw { return startVersitygwTB(t, t.Setenv) }

// startVersitygwTB is startVersitygw for benchmarks too; setenv sets the variables
// cachegate's processes inherit.
func startVersitygwTB(t testing.TB, setenv func(k, v string)) *versitygw {
	t.Helper()
	bin, err := exec.LookPath("versitygw")
	if err != nil {
		home, _ := os.UserHomeDir()
		bin = filepath.Join(home, "go", "bin", "versitygw")
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("versitygw not installed: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 (e2e/run does it)")
		}
	}
	dir, err := os.MkdirTemp(workDir, "s3-")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cmd := exec.Command(bin, "--access", s3Access, "--secret", s3Secret, "--port", fmt.Sprintf("127.0.0.1:%d", port), "posix", dir)
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("versitygw log:\n%s", logs.String())
		}
	})
	if err := waitPort(port, 20*time.Second); err != nil {
		t.Fatalf("versitygw did not start: %v\n%s", err, logs.String())
	}
	endpoint := fmt.Sprintf("127.0.0.1:%d", port)
	client, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(s3Access, s3Secret, ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	// cachegate finds the same credentials in the environment; no instance metadata.
	setenv("AWS_ACCESS_KEY_ID", s3Access)
	setenv("AWS_SECRET_ACCESS_KEY", s3Secret)
	setenv("AWS_EC2_METADATA_DISABLED", "true")
	return &versitygw{Endpoint: "http://" + endpoint, client: client}
}

func (v *versitygw) put(t *testing.T, bucket, key string, data []byte) {
	t.Helper()
	if _, err := v.client.PutObject(context.Background(), bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Acceptance of the S3 issue: a bucket of over 1,000 objects with nested prefixes,
// markers, awkward keys and a flat prefix of 10,000 keys, mounted and served.
func TestS3Bucket(t *testing.T) {
	requireRoot(t)
	v := startVersitygw(t)
	ctx := context.Background()
	if err := v.client.MakeBucket(ctx, "data", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	rng := rand.New(rand.NewPCG(1, 1))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	put := func(key string, size int) {
		data := make([]byte, size)
		rand.NewChaCha8([32]byte{byte(len(key)), byte(size)}).Read(data)
		mu.Lock()
		sums[key] = sha(data)
		mu.Unlock()
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			v.put(t, "data", key, data)
		}()
	}
	for i := 0; i < 10000; i++ {
		put(fmt.Sprintf("flat/k%05d", i), rng.IntN(64))
	}
	for i := 0; i < 300; i++ {
		put(fmt.Sprintf("nested/a%d/b%d/f%03d.bin", i%3, i%7, i), rng.IntN(200<<10))
	}
	for i, name := range []string{"with space.txt", "plus+sign.txt", "100%.txt", "ünïcødé ✓.txt", "a&b=c.txt"} {
		put("keys/"+name, 1000+i)
	}
	v.put(t, "data", "marker/", nil) // a directory marker object
	put("marker/inside.txt", 10)
	put("empty.bin", 0)
	put("big/512m.bin", 512<<20)
	wg.Wait()

	m := startMount(t, "s3://data", "", "--s3-endpoint", v.Endpoint, "--metadata-ttl", "2s")
	got := map[string]bool{}
	err := filepath.Walk(m.Dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			rel, _ := filepath.Rel(m.Dir, p)
			got[rel] = true
			if want, ok := sums[rel]; !ok {
				t.Errorf("extra file %s", rel)
			} else if fi.Size() > 1<<20 {
				if sha256File(t, p) != want {
					t.Errorf("%s differs", rel)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k := range sums {
		if !got[k] {
			t.Errorf("missing %s", k)
		}
	}
	// sha256 of every small object, eight readers at a time.
	var bad []string
	for k, want := range sums {
		if k == "big/512m.bin" {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			b, err := os.ReadFile(filepath.Join(m.Dir, k))
			if err != nil || sha(b) != want {
				mu.Lock()
				bad = append(bad, k)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d objects differ, e.g. %s", len(bad), bad[0])
	}

	// Warm ls -l of the 10,000-key prefix against the same tree on local disk, on a
	// mount with the default metadata TTL (the one above expires its entries in 2 s).
	// Logged, not asserted: timing belongs in benchmarks, and this binary has -race.
	local := filepath.Join(workDir, "s3-flat-local")
	os.MkdirAll(local, 0o755)
	for i := 0; i < 10000; i++ {
		os.WriteFile(filepath.Join(local, fmt.Sprintf("k%05d", i)), nil, 0o644)
	}
	m2 := startMount(t, "s3://data/flat", "", "--s3-endpoint", v.Endpoint)
	timeCmd(t, "ls", "-l", m2.Dir)
	timeCmd(t, "ls", "-l", m2.Dir)
	nat, mnt := timeCmd(t, "ls", "-l", local), timeCmd(t, "ls", "-l", m2.Dir)
	t.Logf("warm ls -l of 10,000 keys: %v through the mount, %v on local disk (%.2fx)", mnt, nat, float64(mnt)/float64(nat))
	m2.stop(t)

	// An overwritten object is seen whole, new, after the metadata TTL.
	newData := bytes.Repeat([]byte("new version "), 1000)
	v.put(t, "data", "keys/with space.txt", newData)
	time.Sleep(2500 * time.Millisecond)
	if b, err := os.ReadFile(filepath.Join(m.Dir, "keys/with space.txt")); err != nil || !bytes.Equal(b, newData) {
		t.Fatalf("after overwrite: %d bytes, %v", len(b), err)
	}

	// cachegate serve s3://… gives the same bytes, ranges included.
	srv := startServe(t, "s3://data/keys", "", "--s3-endpoint", v.Endpoint)
	resp, err := http.Get(srv.URL + "plus+sign.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || sha(b) != sums["keys/plus+sign.txt"] {
		t.Fatalf("serve s3: %d, %d bytes", resp.StatusCode, len(b))
	}
	req, _ := http.NewRequest("GET", srv.URL+"100%25.txt", nil)
	req.Header.Set("Range", "bytes=10-19")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 206 || resp.ContentLength != 10 {
		t.Fatalf("ranged GET through serve s3: %d, %d bytes", resp.StatusCode, resp.ContentLength)
	}
}

// Wrong credentials, a missing bucket and an unreachable endpoint: one line, exit 1.
func TestS3MountErrors(t *testing.T) {
	requireRoot(t)
	v := startVersitygw(t)
	if err := v.client.MakeBucket(context.Background(), "real", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(workDir, "s3-bad-mnt")
	os.MkdirAll(mp, 0o755)
	cache := filepath.Join(workDir, "s3-bad-cache")
	run := func(env []string, args ...string) (string, int) {
		cmd := exec.Command(binary, append(args, "--cache-dir", cache)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		return string(out), 0
	}
	for _, c := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"wrong credentials", []string{"AWS_SECRET_ACCESS_KEY=wrong"}, []string{"mount", "s3://real", mp, "--s3-endpoint", v.Endpoint}, "access denied"},
		{"missing bucket", nil, []string{"mount", "s3://nope", mp, "--s3-endpoint", v.Endpoint}, "does not exist"},
		{"unreachable", nil, []string{"mount", "s3://real", mp, "--s3-endpoint", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), "--origin-timeout", "3s"}, "cannot reach origin"},
	} {
		out, code := run(c.env, c.args...)
		if code != 1 || !strings.Contains(out, c.want) || strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Errorf("%s: exit %d, %q; want exit 1 and one line with %q", c.name, code, out, c.want)
		}
		if isMounted(mp) {
			t.Fatalf("%s left a mount", c.name)
		}
	}
}
