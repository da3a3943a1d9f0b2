package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The README's walkthrough: the fenced sh blocks right after a line starting with
// walkthroughMarker are run as printed, line by line, in README order.
const walkthroughMarker = "<!-- walkthrough"

// walkLine is one command of a marked README block.
type walkLine struct {
	n    int    // line number in README.md
	text string // as printed
}

func (l walkLine) String() string { return fmt.Sprintf("README.md:%d: %s", l.n, l.text) }

// readWalkthrough returns the commands of README's marked blocks, in order.
func readWalkthrough(t *testing.T, path string) []walkLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []walkLine
	s := bufio.NewScanner(f)
	n, marked, inBlock, blocks := 0, false, false, 0
	for s.Scan() {
		n++
		text := strings.TrimSpace(s.Text())
		switch {
		case inBlock && text == "```":
			inBlock = false
		case inBlock:
			if text != "" && !strings.HasPrefix(text, "#") {
				lines = append(lines, walkLine{n, text})
			}
		case strings.HasPrefix(text, walkthroughMarker):
			marked = true
		case marked && text == "```sh":
			marked, inBlock = false, true
			blocks++
		case marked && text != "":
			t.Fatalf("README.md:%d: a walkthrough marker must be followed by a ```sh block, found %q", n, text)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if blocks == 0 || inBlock {
		t.Fatalf("README.md: %d walkthrough blocks (marked %q, fenced ```sh … ```), unterminated %v", blocks, walkthroughMarker, inBlock)
	}
	return lines
}

// walk runs README commands in a new user's shell: the README's install puts
// cachegate in gobin, first on PATH, so every `cachegate` is the binary that install
// built, not the harness's -race build.
type walk struct {
	t        *testing.T
	checkout string   // the repository root, where README says to run `go install ./…`
	home     string   // the working directory of every other command
	gobin    string   // GOBIN of the install, first on PATH
	env      []string // the shell's environment
	replace  *strings.Replacer
	mountDir string // what README's mount point stands for
}

// walkPlaceholders are README's stand-ins and what the test puts in their place: the
// only rewrite of a README command. The README's origin host is a real nginx here,
// serving the same /pub/ prefix, and its mount point a new directory.
func walkPlaceholders(nginxURL, mountDir string) []string {
	return []string{
		"http://files.example:8080/", nginxURL,
		"/mnt/pub", mountDir,
	}
}

// Issue 20, acceptance: README's commands work as printed for a new user, against a
// real nginx. The marked blocks of README's Run section are read and each command run
// as printed (README's placeholders replaced, see walkPlaceholders): the install
// from this checkout, --version and --help, `cachegate demo` with each hint it
// prints run as printed and then Ctrl-C, and a first mount: mkdir, mount (left
// running, as README says), ls, a cache verb without --cache-dir, status listing
// the mount, unmount (after which status no longer lists it). A README command that
// stops working (a flag removed, a verb renamed, a placeholder changed) fails the test
// naming its README line.
func TestNewUserWalkthrough(t *testing.T) {
	requireRoot(t)
	lines := readWalkthrough(t, "../README.md")
	checkout, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.MkdirTemp(workDir, "walk-")
	if err != nil {
		t.Fatal(err)
	}
	origin := filepath.Join(base, "www")
	writeRandom(t, filepath.Join(origin, "pub/hello.bin"), 10000, 2101)
	writeRandom(t, filepath.Join(origin, "pub/data/small.bin"), 70000, 2102)
	nx := startNginx(t, origin, "html")

	w := &walk{t: t, checkout: checkout, home: filepath.Join(base, "home"), gobin: filepath.Join(base, "gobin"), mountDir: filepath.Join(base, "mnt/pub")}
	os.MkdirAll(w.home, 0o755)
	os.MkdirAll(filepath.Join(base, "tmp"), 0o755)
	places := walkPlaceholders(nx.URL, w.mountDir)
	w.replace = strings.NewReplacer(places...)
	for i := 0; i < len(places); i += 2 {
		found := false
		for _, l := range lines {
			found = found || strings.Contains(l.text, places[i])
		}
		if !found {
			t.Fatalf("README's walkthrough no longer uses the placeholder %q: update walkPlaceholders with what it uses now", places[i])
		}
	}
	// A new user's shell: none of a profile's CACHEGATE_* settings; modules from the
	// module cache the harness build filled (no network: GOPROXY=off).
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "CACHEGATE_") && k != "PATH" && k != "GOBIN" && k != "GOPROXY" && k != "TMPDIR" {
			w.env = append(w.env, kv)
		}
	}
	w.env = append(w.env, "PATH="+w.gobin+string(os.PathListSeparator)+os.Getenv("PATH"), "GOBIN="+w.gobin, "GOPROXY=off", "TMPDIR="+filepath.Join(base, "tmp"))

	var (
		installed bool
		mnt       *mount
		seen      = map[string]bool{}
	)
	for _, l := range lines {
		cmdline := w.replace.Replace(l.text)
		if strings.Contains(cmdline, "files.example") {
			t.Fatalf("%s: a placeholder the test does not know (walkPlaceholders)", l)
		}
		step := walkStep(l.text)
		seen[step] = true
		if step != "install" && step != "install-latest" && strings.Contains(" "+l.text, " cachegate") && !installed {
			t.Fatalf("%s: runs cachegate before README's go install line made it", l)
		}
		switch step {
		case "install-latest":
			// Needs the network and a published release: not run here. The checkout's
			// form of the same install is.
			t.Logf("%s: not run (needs the network)", l)
		case "install":
			w.run(l, cmdline, w.checkout, 5*time.Minute)
			if _, err := os.Stat(filepath.Join(w.gobin, "cachegate")); err != nil {
				t.Fatalf("%s: no cachegate in GOBIN after it: %v", l, err)
			}
			installed = true
		case "version":
			out := w.run(l, cmdline, w.home, time.Minute)
			if !strings.HasPrefix(out, "cachegate ") || !strings.Contains(out, runtime.Version()) {
				t.Errorf("%s: printed %q, want cachegate's version with the Go version %s", l, out, runtime.Version())
			}
		case "help":
			if out := w.run(l, cmdline, w.home, time.Minute); !strings.Contains(out, "mount") || !strings.Contains(out, "demo") {
				t.Errorf("%s: the help does not list the commands:\n%s", l, out)
			}
		case "demo":
			w.demo(l, cmdline)
		case "mount":
			if mnt != nil {
				t.Fatalf("%s: a second mount; the test knows one", l)
			}
			mnt = w.mount(l, cmdline)
		case "cache":
			if mnt == nil {
				t.Fatalf("%s: a cache verb before the mount", l)
			}
			if strings.Contains(cmdline, "--cache-dir") {
				t.Fatalf("%s: the walkthrough's cache verb must find the mount's cache without --cache-dir", l)
			}
			out := w.run(l, cmdline, w.home, time.Minute)
			t.Logf("%s", out)
			if !strings.Contains(out, "hello.bin") || !strings.Contains(out, "data/small.bin") {
				t.Errorf("%s: does not list the mount's files (hello.bin, data/small.bin):\n%s", l, out)
			}
		case "status":
			out := w.run(l, cmdline, w.home, time.Minute)
			t.Logf("%s", out)
			if mnt != nil && (!strings.Contains(out, w.mountDir) || !strings.Contains(out, strings.TrimPrefix(nx.URL, "http://")+"pub/")) {
				t.Errorf("%s: does not list the mount (%s, origin %spub/):\n%s", l, w.mountDir, nx.URL, out)
			}
		case "unmount":
			if mnt == nil {
				t.Fatalf("%s: unmount before the mount", l)
			}
			w.run(l, cmdline, w.home, time.Minute)
			select {
			case <-mnt.done:
			case <-time.After(15 * time.Second):
				t.Fatalf("%s: the mount's process still runs 15s after it", l)
			}
			if !mnt.cmd.ProcessState.Success() || isMounted(mnt.Dir) {
				t.Fatalf("%s: the mount exited %v, still mounted %v\n%s", l, mnt.cmd.ProcessState, isMounted(mnt.Dir), mnt.logs.String())
			}
			out, err := w.shell(w.home, "cachegate status", time.Minute)
			if err != nil || strings.Contains(out, w.mountDir) {
				t.Errorf("%s: then cachegate status: %v, want the mount no longer listed:\n%s", l, err, out)
			}
			mnt = nil
		default:
			w.run(l, cmdline, w.home, time.Minute)
		}
	}
	for _, step := range []string{"install", "version", "help", "demo", "mount", "cache", "status", "unmount"} {
		if !seen[step] {
			t.Errorf("README's walkthrough has no %s step (see walkStep): a new user's first steps must all be in it", step)
		}
	}
}

// walkStep names what a README line does, by its command as printed.
func walkStep(text string) string {
	f := strings.Fields(text)
	switch {
	case len(f) >= 3 && f[0] == "go" && f[1] == "install" && strings.Contains(f[2], "@"):
		return "install-latest"
	case len(f) >= 3 && f[0] == "go" && f[1] == "install":
		return "install"
	case len(f) < 2 || f[0] != "cachegate":
		return "shell"
	case f[1] == "--version":
		return "version"
	case f[1] == "--help":
		return "help"
	case f[1] == "demo", f[1] == "mount", f[1] == "cache", f[1] == "status", f[1] == "unmount":
		return f[1]
	}
	return "cachegate"
}

// shell runs cmdline with bash -e in dir, in the walkthrough's environment.
func (w *walk) shell(dir, cmdline string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", cmdline)
	cmd.Dir, cmd.Env, cmd.WaitDelay = dir, w.env, 5*time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("still running after %v", timeout)
	}
	return string(out), err
}

// run runs a README line, failing the test with the line when it fails.
func (w *walk) run(l walkLine, cmdline, dir string, timeout time.Duration) string {
	w.t.Helper()
	start := time.Now()
	out, err := w.shell(dir, cmdline, timeout)
	if err != nil {
		w.t.Fatalf("%s\n  ran as: %s\n  failed: %v\n%s", l, cmdline, err, out)
	}
	w.t.Logf("%s (%v)", l, time.Since(start).Round(time.Millisecond))
	return out
}

// background starts cmdline as README prints it, in the walkthrough's environment,
// for a command that runs in the foreground until Ctrl-C (bash execs it, so signals
// reach cachegate itself).
func (w *walk) background(cmdline string, extraEnv ...string) *proc {
	w.t.Helper()
	p := &proc{logs: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command("bash", "-e", "-c", "exec "+cmdline)
	p.cmd.Dir, p.cmd.Env = w.home, append(append([]string{}, w.env...), extraEnv...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	return p
}

// waitFor waits until ready, or fails the test naming l when p exits or 60s pass.
func (w *walk) waitFor(l walkLine, p *proc, what string, ready func() bool) {
	w.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !ready(); time.Sleep(20 * time.Millisecond) {
		select {
		case <-p.done:
			w.t.Fatalf("%s: exited (%v) before %s\n%s", l, p.cmd.ProcessState, what, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: not %s after 60s\n%s", l, what, p.logs.String())
		}
	}
}

// demo runs `cachegate demo`, then each hint it prints as printed, then Ctrl-C, as
// README says.
func (w *walk) demo(l walkLine, cmdline string) {
	t := w.t
	p := w.background(cmdline)
	var mnt string // the demo's mount point, once it printed it
	stopped := false
	t.Cleanup(func() {
		p.stopWith(func() { abortFuse(mnt) })
		if mnt != "" && isMounted(mnt) {
			abortFuse(mnt)
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
		if t.Failed() && !stopped {
			t.Logf("%s: its output:\n%s", l, p.logs.String())
		}
	})
	w.waitFor(l, p, "printing its hints", func() bool { return strings.Contains(p.logs.String(), "Press Ctrl-C") })
	t.Logf("%s (hints printed)", l)
	out := p.logs.String()
	hints, mnt, err := parseDemoHints(out)
	if err != nil {
		t.Fatalf("%s: %v\n%s", l, err, out)
	}
	if !isMounted(mnt) {
		t.Fatalf("%s: %s is not mounted while the demo runs", l, mnt)
	}
	verb := false
	for _, h := range hints {
		start := time.Now()
		hout, err := w.shell(w.home, h, 2*time.Minute)
		if err != nil {
			t.Fatalf("%s: the demo's hint %q failed: %v\n%s", l, h, err, hout)
		}
		t.Logf("  demo hint: %s (%v)", h, time.Since(start).Round(time.Millisecond))
		if strings.Contains(h, " cache ls") {
			verb = true
			if !strings.Contains(hout, "data/large.bin") {
				t.Errorf("demo hint %q does not list data/large.bin, which the hints before it read:\n%s", h, hout)
			}
		}
	}
	if !verb {
		t.Errorf("%s: no `cache ls` among the demo's hints: %q", l, hints)
	}
	// Ctrl-C unmounts and cleans up.
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: still running 15s after Ctrl-C", l)
	}
	if !p.cmd.ProcessState.Success() || isMounted(mnt) {
		t.Fatalf("%s: after Ctrl-C: exit %v, still mounted %v", l, p.cmd.ProcessState, isMounted(mnt))
	}
	stopped = true
	if _, err := os.Stat(mnt); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: its temporary directory is still there after Ctrl-C (%s: %v)", l, mnt, err)
	}
}

// parseDemoHints reads the commands the demo prints under "Try, in another
// terminal:" (one a line, indented, up to a blank line) and its mount point (the line
// after "is mounted at").
func parseDemoHints(out string) (hints []string, mnt string, err error) {
	lines := strings.Split(out, "\n")
	for i, line := range lines {
		if strings.HasSuffix(line, "is mounted at") && i+1 < len(lines) {
			mnt = strings.TrimSpace(lines[i+1])
		}
		if strings.TrimSpace(line) != "Try, in another terminal:" {
			continue
		}
		for _, h := range lines[i+1:] {
			if strings.TrimSpace(h) == "" {
				break
			}
			hints = append(hints, strings.TrimSpace(h))
		}
	}
	if mnt == "" || len(hints) == 0 {
		return nil, "", fmt.Errorf("no mount point (%q) or no hints in the demo's output", mnt)
	}
	return hints, mnt, nil
}

// mount starts README's mount line in the background (README: it stays in the
// foreground; the rest runs in another terminal) and waits until it is mounted.
func (w *walk) mount(l walkLine, cmdline string) *mount {
	t := w.t
	if !strings.Contains(cmdline, w.mountDir) {
		t.Fatalf("%s: does not mount README's mount point", l)
	}
	// The mount's terminal has its own cache dir (root's default, /var/cache/cachegate,
	// is the machine's); every other command runs without one, so the cache verb that
	// finds this cache finds it through the mount.
	cacheDir := filepath.Join(filepath.Dir(w.mountDir), "cache")
	m := &mount{Dir: w.mountDir, CacheDir: cacheDir}
	m.proc = w.background(cmdline, "CACHEGATE_CACHE_DIR="+cacheDir)
	t.Cleanup(func() {
		m.stop(t)
		if t.Failed() {
			t.Logf("%s: its log:\n%s", l, m.logs.String())
		}
	})
	w.waitFor(l, m.proc, "mounted", func() bool { return isMounted(m.Dir) && strings.Contains(m.logs.String(), "msg=mounted") })
	t.Logf("%s (mounted)", l)
	return m
}
