package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// httpGet fetches u with a User-Agent and returns the status and body.
func httpGet(t *testing.T, method, u, ua string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", ua)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// waitLines waits until the file at p holds n lines and returns them.
func waitLines(t *testing.T, p string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(p)
		var lines []string
		if len(b) > 0 {
			lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		}
		if len(lines) >= n || time.Now().After(deadline) {
			if len(lines) != n {
				t.Fatalf("%s: %d lines, want %d:\n%s", p, len(lines), n, b)
			}
			return lines
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAccessLogRotate: `serve --access-log FILE` writes one combined line per
// request; after logrotate's rename and SIGHUP new lines go to a new file at the
// path and the renamed one keeps the old lines (issue 20 point 12).
func TestAccessLogRotate(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "a.txt"), []byte("hello\n"), 0o644)
	logPath := filepath.Join(t.TempDir(), "access.log")
	s := startServe(t, root, "", "--access-log", logPath)
	// Each line is waited for: lines of requests on different connections may
	// come in any order.
	if code, _ := httpGet(t, "GET", s.URL+"a.txt", `probe "one"`); code != 200 {
		t.Fatalf("GET a.txt: %d", code)
	}
	waitLines(t, logPath, 1)
	httpGet(t, "HEAD", s.URL+"a.txt", "probe-two")
	waitLines(t, logPath, 2)
	httpGet(t, "GET", s.URL+"missing", "probe-three")
	lines := waitLines(t, logPath, 3)
	for i, want := range []string{
		`"GET /a.txt HTTP/1.1" 200 6 "-" "probe \x22one\x22" `,
		`"HEAD /a.txt HTTP/1.1" 200 0 "-" "probe-two" `,
		`"GET /missing HTTP/1.1" 404 `,
	} {
		if !strings.HasPrefix(lines[i], "127.0.0.1 - - [") || !strings.Contains(lines[i], want) {
			t.Errorf("line %d: %q, want it to hold %q", i, lines[i], want)
		}
	}
	if !strings.HasSuffix(lines[0], " MISS copy") && !strings.HasSuffix(lines[0], " MISS mmap") && !strings.HasSuffix(lines[0], " MISS sendfile") {
		t.Errorf("first GET: %q, want X-Cache MISS and a transfer method at the end", lines[0])
	}
	if !strings.HasSuffix(lines[1], " HIT none") {
		t.Errorf("HEAD: %q, want HIT none at the end", lines[1])
	}

	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reopen happens in the background: wait for the new file, then log.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(logPath); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new access log after SIGHUP\n%s", s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	httpGet(t, "GET", s.URL+"a.txt", "after-rotate")
	if l := waitLines(t, logPath, 1); !strings.Contains(l[0], `"after-rotate"`) || !strings.HasSuffix(l[0], " HIT mmap") && !strings.HasSuffix(l[0], " HIT sendfile") {
		t.Errorf("new file: %q", l)
	}
	if old := waitLines(t, logPath+".1", 3); strings.Contains(strings.Join(old, "\n"), "after-rotate") {
		t.Errorf("the rotated file got a new line:\n%s", strings.Join(old, "\n"))
	}
	if s.cmd.ProcessState != nil {
		t.Fatalf("serve exited on SIGHUP")
	}
}

// chromium returns the path of Debian's chromium, skipping the test when it is
// missing outside CI (e2e/run installs it; in CI its absence is a failure).
func chromium(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (e2e/run installs it: apt-get install chromium)")
		}
		t.Skip("chromium is not installed (apt-get install chromium, or run e2e/run)")
	}
	return p
}

// headless runs chromium headless with args, within a minute, and returns stdout.
func headless(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A profile of its own: concurrent runs must not share one.
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

// domPage is what the test reads of the rendered DOM.
type domPage struct {
	title  string
	crumbs []string   // the heading's link targets
	rows   [][]string // each body row's cells' text
	sorts  map[string]string
	links  []string // every href in the table's name cells
	tags   map[string]int
}

// renderIndex loads u in headless chromium and reads the DOM it ends with.
func renderIndex(t *testing.T, bin, u string) domPage {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(headless(t, bin, "--dump-dom", u)))
	if err != nil {
		t.Fatal(err)
	}
	base, _ := url.Parse(u)
	pg := domPage{sorts: map[string]string{}, tags: map[string]int{}}
	var text func(*html.Node) string
	text = func(n *html.Node) string {
		if n.Type == html.TextNode {
			return n.Data
		}
		var s string
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			s += text(c)
		}
		return s
	}
	attr := func(n *html.Node, k string) string {
		for _, a := range n.Attr {
			if a.Key == k {
				return a.Val
			}
		}
		return ""
	}
	resolve := func(h string) string {
		r, err := base.Parse(h)
		if err != nil {
			return "bad:" + h
		}
		return r.String()
	}
	var walk func(n *html.Node, in string)
	walk = func(n *html.Node, in string) {
		if n.Type == html.ElementNode {
			pg.tags[n.Data]++
			switch {
			case n.Data == "title":
				pg.title = text(n)
			case n.Data == "a" && in == "h1":
				pg.crumbs = append(pg.crumbs, resolve(attr(n, "href")))
			case n.Data == "a" && in == "th":
				pg.sorts[strings.Fields(text(n))[0]] = resolve(attr(n, "href"))
			case n.Data == "a" && in == "td":
				pg.links = append(pg.links, attr(n, "href"))
			case n.Data == "tr" && in == "tbody":
				var cells []string
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					if c.Type == html.ElementNode && c.Data == "td" {
						cells = append(cells, strings.TrimSpace(text(c)))
					}
				}
				pg.rows = append(pg.rows, cells)
			}
			if n.Data == "h1" || n.Data == "th" || n.Data == "td" || n.Data == "tbody" {
				in = n.Data
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, in)
		}
	}
	walk(doc, "")
	return pg
}

// names returns the first cell of each row.
func (pg domPage) names() []string {
	var out []string
	for _, r := range pg.rows {
		if len(r) > 0 {
			out = append(out, r[0])
		}
	}
	return out
}

// TestIndexInChromium renders the HTML index in a real browser and checks the DOM it
// ends with: a table with a header row, directories first, the order after following
// a sort link, breadcrumb links that lead to each ancestor, hostile names shown as
// text and never run; and saves screenshots at desktop and phone width (issue 20
// point 14). CACHEGATE_SCREENSHOTS=DIR keeps them.
func TestIndexInChromium(t *testing.T) {
	bin := chromium(t)
	root := t.TempDir()
	os.Chmod(root, 0o755)
	hostileNames := []string{
		`<script>document.title='pwned'`,
		`javascript:document.title='pwned'`,
		`"quoted" 'name'.txt`,
		`<img src=x onerror="document.title='pwned'">`,
	}
	files := map[string]int{"small.txt": 12, "medium.bin": 300 << 10, "large.iso": 2 << 20, "empty": 0}
	for _, n := range hostileNames {
		files[n] = 5
	}
	for n, size := range files {
		if err := os.WriteFile(filepath.Join(root, n), bytes.Repeat([]byte("x"), size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"docs/guides", "archive"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "docs/guides/intro.md"), []byte("# intro\n"), 0o644)
	s := startServe(t, root, "", "--cache-size", "64MiB", "--chunk-size", "64KiB")
	// Cache one file whole and pin it, another in part.
	httpGet(t, "GET", s.URL+"medium.bin", "test")
	req, _ := http.NewRequest("GET", s.URL+"large.iso", nil)
	req.Header.Set("Range", "bytes=0-1023")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if out, code := runCLI(t, "cache", "pin", "--cache-dir", s.CacheDir, "small.txt"); code != 0 {
		t.Fatalf("cache pin: %s", out)
	}

	pg := renderIndex(t, bin, s.URL)
	if pg.title != "Index of /" {
		t.Errorf("title %q: a name ran as script?", pg.title)
	}
	if pg.tags["table"] != 1 || pg.tags["thead"] != 1 || pg.tags["th"] != 4 || pg.tags["script"] != 0 || pg.tags["img"] != 0 {
		t.Errorf("elements %v: want one table with 4 headings, no script or img", pg.tags)
	}
	names := pg.names()
	if len(names) != len(files)+2 || names[0] != "archive/" || names[1] != "docs/" {
		t.Fatalf("rows %q: want the 2 directories first, then %d files", names, len(files))
	}
	for _, n := range hostileNames {
		if !slices.Contains(names, n) {
			t.Errorf("hostile name %q not shown as text in %q", n, names)
		}
	}
	for _, l := range pg.links {
		if !strings.HasPrefix(l, "./") {
			t.Errorf("link %q is not relative", l)
		}
	}
	row := func(pg domPage, name string) []string {
		for _, r := range pg.rows {
			if len(r) == 4 && r[0] == name {
				return r
			}
		}
		t.Fatalf("no row %q in %q", name, pg.rows)
		return nil
	}
	if r := row(pg, "medium.bin"); r[1] != "300.0 KiB" || r[3] != "100%" {
		t.Errorf("medium.bin row %q: want 300.0 KiB, 100%%", r)
	}
	if r := row(pg, "small.txt"); !strings.Contains(r[3], "100%") || !strings.Contains(r[3], "pinned") {
		t.Errorf("small.txt row %q: want 100%% and pinned", r)
	}
	if r := row(pg, "large.iso"); r[3] == "0%" || r[3] == "100%" || !strings.HasSuffix(r[3], "%") {
		t.Errorf("large.iso row %q: want a part of it cached (a range and its readahead)", r)
	}
	if r := row(pg, "empty"); r[1] != "0 B" {
		t.Errorf("empty row %q", r)
	}

	// Follow the Size heading's link: largest files first, directories still first.
	sizeURL := pg.sorts["Size"]
	if !strings.Contains(sizeURL, "sort=size") {
		t.Fatalf("Size heading links to %q", sizeURL)
	}
	bySize := renderIndex(t, bin, sizeURL)
	if n := bySize.names(); len(n) < 5 || n[2] != "empty" || n[len(n)-1] != "large.iso" {
		t.Errorf("after the Size link (%s): %q, want directories, then ascending sizes", sizeURL, n)
	}
	desc := renderIndex(t, bin, bySize.sorts["Size"])
	if n := desc.names(); len(n) < 5 || n[0] != "archive/" || n[2] != "large.iso" || n[3] != "medium.bin" {
		t.Errorf("after the Size link twice (%s): %q, want directories, then descending sizes", bySize.sorts["Size"], n)
	}

	// Breadcrumbs of a nested directory lead to each ancestor.
	deep := renderIndex(t, bin, s.URL+"docs/guides/")
	if want := []string{s.URL, s.URL + "docs/", s.URL + "docs/guides/"}; !slices.Equal(deep.crumbs, want) {
		t.Errorf("breadcrumbs %q, want %q", deep.crumbs, want)
	}
	if n := deep.names(); !slices.Equal(n, []string{"../", "intro.md"}) {
		t.Errorf("docs/guides rows %q", n)
	}

	// Screenshots: a desktop window and a phone's width.
	keep := os.Getenv("CACHEGATE_SCREENSHOTS")
	for _, shot := range []struct {
		name string
		w, h int
	}{{"index-desktop.png", 1100, 620}, {"index-phone.png", 390, 844}} {
		p := filepath.Join(t.TempDir(), shot.name)
		headless(t, bin, "--screenshot="+p, fmt.Sprintf("--window-size=%d,%d", shot.w, shot.h), s.URL+"?sort=size&order=desc")
		f, err := os.Open(p)
		if err != nil {
			t.Fatalf("no screenshot: %v", err)
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err != nil || cfg.Width != shot.w {
			t.Errorf("%s: %v, %dx%d, want width %d", shot.name, err, cfg.Width, cfg.Height, shot.w)
		}
		t.Logf("screenshot %s", p)
		if keep != "" {
			b, _ := os.ReadFile(p)
			os.WriteFile(filepath.Join(keep, shot.name), b, 0o644)
		}
	}
}

// scrape fetches a metrics page and returns its samples by "name{labels}" as written.
func scrape(t *testing.T, u, token string) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	out := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", l, err)
		}
		out[l[:i]] = v
	}
	return out
}

// TestMountMetricsAlone: `mount --metrics ADDR` without --serve serves /-/metrics,
// /-/healthz and /-/status (and nothing else) with the token of --auth-token-file;
// after reads through the mount the new series are there with sensible values:
// origin requests and errors by kind, evictions, fill latency, bytes read through
// cachegate, opens by mode, open handles (issue 20 point 13).
func TestMountMetricsAlone(t *testing.T) {
	root := t.TempDir()
	os.Chmod(root, 0o755)
	const size = 192 << 10
	for _, n := range []string{"a.bin", "b.bin"} {
		writeRandom(t, filepath.Join(root, n), size, 7)
	}
	tokFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokFile, []byte("s3cret\n"), 0o600)
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d/-/", port)
	// Room for one file: reading the second evicts the first.
	m := startMount(t, root, "", "--metrics", fmt.Sprintf("127.0.0.1:%d", port), "--auth-token-file", tokFile,
		"--chunk-size", "64KiB", "--cache-size", "256KiB", "--min-free", "0")
	if err := waitPort(port, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path, token string
		code        int
	}{{"healthz", "", 200}, {"metrics", "", 401}, {"status", "", 401}, {"status", "s3cret", 200}, {"../a.bin", "s3cret", 404}} {
		req, _ := http.NewRequest("GET", base+c.path, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("GET /-/%s (token %q): %d, want %d", c.path, c.token, resp.StatusCode, c.code)
		}
	}

	f, err := os.Open(filepath.Join(m.Dir, "a.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, f); err != nil || n != size {
		t.Fatalf("read a.bin: %d, %v", n, err)
	}
	held := scrape(t, base+"metrics", "s3cret")
	f.Close()
	if held["cachegate_mount_open_handles"] != 1 {
		t.Errorf("open handles with a.bin open: %v", held["cachegate_mount_open_handles"])
	}
	// The release reaches the daemon after close returns; a.bin is evictable once
	// it has.
	waitHandles := func() map[string]float64 {
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := scrape(t, base+"metrics", "s3cret")
			if got["cachegate_mount_open_handles"] == 0 || time.Now().After(deadline) {
				return got
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitHandles()
	if b, err := os.ReadFile(filepath.Join(m.Dir, "b.bin")); err != nil || len(b) != size {
		t.Fatalf("read b.bin: %d, %v", len(b), err)
	}
	os.ReadFile(filepath.Join(m.Dir, "a.bin")) // complete again now: may go by passthrough
	if _, err := os.Stat(filepath.Join(m.Dir, "missing")); err == nil {
		t.Fatal("stat of a missing file succeeded")
	}

	got := waitHandles()
	for _, c := range []struct {
		series string
		min    float64
		max    float64
	}{
		{`cachegate_origin_requests_total{op="read"}`, 2, 100},
		{`cachegate_origin_requests_total{op="stat"}`, 1, 1000},
		// A lookup of a missing name is answered from the directory's listing.
		{`cachegate_origin_errors_total{kind="not_found",op="stat"}`, 0, 0},
		{`cachegate_origin_requests_total{op="list"}`, 1, 100},
		{`cachegate_origin_errors_total{kind="timeout",op="read"}`, 0, 0},
		{`cachegate_origin_retries_total{op="read"}`, 0, 0},
		{`cachegate_cache_evictions_total`, 1, 10},
		{`cachegate_cache_evicted_bytes_total`, size, 10 * size},
		{`cachegate_stale_answers_total{kind="stat"}`, 0, 0},
		{`cachegate_cache_fill_duration_seconds_count`, 2, 1000},
		{`cachegate_cache_fill_duration_seconds_bucket{le="+Inf"}`, 2, 1000},
		{`cachegate_mount_read_bytes_total{path="splice"}`, 2 * size, 3 * size},
		{`cachegate_mount_read_bytes_total{path="origin"}`, 0, 0},
		{`cachegate_mount_opens_total{mode="cached"}`, 2, 3},
		{`cachegate_mount_opens_total{mode="passthrough"}`, 0, 1},
		{`cachegate_mount_open_handles`, 0, 0},
	} {
		v, ok := got[c.series]
		if !ok {
			t.Errorf("no series %s", c.series)
			continue
		}
		if v < c.min || v > c.max {
			t.Errorf("%s = %v, want %v..%v", c.series, v, c.min, c.max)
		}
	}
	if got[`cachegate_mount_opens_total{mode="cached"}`]+got[`cachegate_mount_opens_total{mode="passthrough"}`] != 3 {
		t.Errorf("opens: %v cached + %v passthrough, want 3", got[`cachegate_mount_opens_total{mode="cached"}`], got[`cachegate_mount_opens_total{mode="passthrough"}`])
	}
	for k := range got {
		if strings.HasPrefix(k, "cachegate_http_requests_total") {
			t.Errorf("scrapes counted as HTTP traffic: %s", k)
		}
	}
}
