package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Two daemons in one peer group (serve.peers in their configs) over one nginx origin:
// a file read through both comes from the origin once (each span through its
// owner), and every byte is right.
func TestDaemonPeers(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	os.Chmod(root, 0o755)
	want := writeRandom(t, filepath.Join(root, "big.bin"), 24<<20, 31)
	origin := startNginx(t, root, "json")
	ports := []int{freePort(t), freePort(t)}
	list := fmt.Sprintf("[http://127.0.0.1:%d, http://127.0.0.1:%d]", ports[0], ports[1])
	for i, port := range ports {
		file := filepath.Join(t.TempDir(), "cachegate.yaml")
		cfg := fmt.Sprintf("cache:\n  dir: %s\n  size: 256MiB\n  chunk_size: 1MiB\n  min_free: 0\n"+
			"serve:\n  listen: 127.0.0.1:%d\n  peers: %s\n  peer_span: 4MiB\n"+
			"origins:\n  - name: pub\n    url: %s\n    serve: true\n", newCacheDir(t), port, list, origin.URL)
		if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		startDaemon(t, nil, file)
		if err := waitPort(port, 10*time.Second); err != nil {
			t.Fatalf("daemon %d: %v", i, err)
		}
	}
	client := &http.Client{Timeout: 60 * time.Second}
	for i, port := range ports {
		got, x, err := hashGetXCache(client, fmt.Sprintf("http://127.0.0.1:%d/pub/big.bin", port))
		if err != nil || got != want {
			t.Fatalf("daemon %d: sha256 %s, %v; want %s", i, got, err, want)
		}
		t.Logf("daemon %d: X-Cache %s", i, x)
	}
	total := int64(24 << 20)
	got := origin.originBytes(t, "")
	t.Logf("origin sent %d bytes for a file of %d (%.3fx)", got, total, float64(got)/float64(total))
	if float64(got) > 1.05*float64(total) {
		t.Errorf("origin sent %d bytes for a file of %d read through two peered daemons: more than 1.05x", got, total)
	}
	if got < total {
		t.Errorf("origin sent %d bytes, less than the file's %d", got, total)
	}
}
