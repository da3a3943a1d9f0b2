package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A cold small file that nginx's JSON listing describes exactly (size and mtime)
// costs one origin request: a GET of the whole file, whose validators name the cached
// version, not a HEAD and then a GET (issue 21, goal 2).
func TestColdSmallFileIsOneGET(t *testing.T) {
	root, err := os.MkdirTemp(workDir, "origin-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(root, 0o755)
	os.Mkdir(filepath.Join(root, "d"), 0o755)
	want := map[string][]byte{}
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("f%d", i)
		want[name] = bytes.Repeat([]byte{'a' + byte(i)}, 1+i*5000)
		os.WriteFile(filepath.Join(root, "d", name), want[name], 0o644)
	}
	n := startNginx(t, root, "json")
	m := startMount(t, n.URL, "")
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(m.Dir, "d", name))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("read d/%s: %d bytes, %v; want %d", name, len(got), err, len(b))
		}
	}
	// Read again from the cache: no request more.
	for name := range want {
		if _, err := os.ReadFile(filepath.Join(m.Dir, "d", name)); err != nil {
			t.Fatal(err)
		}
	}
	// nginx writes its access log a moment after it answers.
	var reqs map[string][]string
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		reqs = fileRequests(t, n)
		if len(reqs) >= len(want) || time.Now().After(deadline) {
			break
		}
	}
	for name := range want {
		if got := reqs["/d/"+name]; len(got) != 1 || got[0] != "GET" {
			t.Errorf("reading d/%s cold then warm sent %v to the origin, want one GET", name, got)
		}
	}
}

// fileRequests returns the methods of the requests nginx logged for each file (not
// directory listings), by URI.
func fileRequests(t *testing.T, n *nginx) map[string][]string {
	t.Helper()
	f, err := os.Open(n.accessLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	reqs := map[string][]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.SplitN(s.Text(), " ", 4) // method status bytes uri
		if len(fields) == 4 && !strings.HasSuffix(fields[3], "/") {
			reqs[fields[3]] = append(reqs[fields[3]], fields[0])
		}
	}
	return reqs
}
