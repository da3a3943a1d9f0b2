package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// netnsPeer is a network namespace joined to this host by a veth pair: the host
// side HostIf has HostIP, the namespace side 10.231.7.2. Clients run inside the
// namespace reach the host through the veth, as remote clients reach it through a NIC.
type netnsPeer struct {
	NS, HostIf string
	HostIP     string
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// startNetns creates the namespace and veth pair, removed when t ends. It skips
// the test where namespaces or veth devices cannot be made.
func startNetns(t testing.TB) *netnsPeer {
	t.Helper()
	requireRoot(t)
	for _, tool := range []string{"ip", "ethtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian: iproute2, ethtool)", tool)
		}
	}
	id := os.Getpid() % 100000
	p := &netnsPeer{NS: fmt.Sprintf("cgtest%d", id), HostIf: fmt.Sprintf("cgh%d", id), HostIP: "10.231.7.1"}
	peerIf := fmt.Sprintf("cgp%d", id)
	if err := run("ip", "netns", "add", p.NS); err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() { run("ip", "netns", "del", p.NS) })
	if err := run("ip", "link", "add", p.HostIf, "type", "veth", "peer", "name", peerIf); err != nil {
		t.Skipf("cannot create a veth pair: %v", err)
	}
	t.Cleanup(func() { run("ip", "link", "del", p.HostIf) })
	for _, cmd := range [][]string{
		{"ip", "link", "set", peerIf, "netns", p.NS},
		{"ip", "addr", "add", p.HostIP + "/24", "dev", p.HostIf},
		{"ip", "link", "set", p.HostIf, "up"},
		{"ip", "netns", "exec", p.NS, "ip", "addr", "add", "10.231.7.2/24", "dev", peerIf},
		{"ip", "netns", "exec", p.NS, "ip", "link", "set", peerIf, "up"},
	} {
		if err := run(cmd...); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// xTransfer GETs u with curl, from inside the namespace when ns is set, and
// returns the response's X-Transfer header.
func xTransfer(t *testing.T, ns, u string) string {
	t.Helper()
	args := []string{"curl", "-sf", "-D", "-", "-o", os.DevNull, u}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "X-Transfer") {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no X-Transfer in\n%s", out)
	return ""
}

// `--transfer auto` decides per connection from the interface the bytes leave by:
// complete files of 32 KiB and 2 MiB go to a client behind an interface with
// scatter-gather by sendfile, behind one without from the mapping, and to a client
// on this host (loopback, whatever address it dials) by sendfile, whatever the
// interface of the address it dialled does.
func TestAutoFollowsScatterGather(t *testing.T) {
	p := startNetns(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	writeRandom(t, filepath.Join(dir, "f32k"), 32<<10, 1)
	writeRandom(t, filepath.Join(dir, "f2m"), 2<<20, 2)
	cacheDir := filepath.Join(workDir, fmt.Sprintf("egress-cache-%d", os.Getpid()))
	t.Cleanup(func() { os.RemoveAll(cacheDir) })

	for _, sg := range []string{"on", "off"} {
		// A fresh server for each state: servers reread interfaces every 10 s.
		if err := run("ethtool", "-K", p.HostIf, "sg", sg); err != nil {
			t.Fatal(err)
		}
		port := freePort(t)
		addr := net.JoinHostPort(p.HostIP, fmt.Sprint(port))
		srv := startProc(t, []string{"serve", dir, "--listen", addr, "--cache-dir", cacheDir}, func() bool {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		for _, f := range []string{"f32k", "f2m"} {
			u := "http://" + addr + "/" + f
			xTransfer(t, p.NS, u) // fills the cache
			want := map[string]string{"on": "sendfile", "off": "mmap"}[sg]
			if got := xTransfer(t, p.NS, u); got != want {
				t.Errorf("%s through a veth with scatter-gather %s: X-Transfer %s, want %s", f, sg, got, want)
			}
			if got := xTransfer(t, "", u); got != "sendfile" {
				t.Errorf("%s from this host to %s: X-Transfer %s, want sendfile (loopback)", f, addr, got)
			}
		}
		srv.stop()
	}
}

// BenchmarkEgress measures what the thresholds of `--transfer auto` rest on: one
// writev from the mapping against send+sendfile, for bodies of 16 KiB to 8 MiB,
// through a veth into a network namespace with scatter-gather on and off (the
// namespace stands in for a remote client behind a NIC):
//
//	go test ./e2e -run '^$' -bench Egress -benchtime 1x
//
// It prints requests/s and the server's CPU per request for each method, and the
// two ratios, each above 1 where the mapping did better.
func BenchmarkEgress(b *testing.B) {
	p := startNetns(b)
	dir := b.TempDir()
	os.Chmod(dir, 0o755)
	sizes := []int64{16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 1 << 20, 8 << 20}
	for i, n := range sizes {
		writeRandom(b, filepath.Join(dir, fmt.Sprint(n)), n, uint64(i))
	}
	cacheDir := filepath.Join(workDir, "egress-bench-cache")
	b.Cleanup(func() { os.RemoveAll(cacheDir) })
	type result struct{ rps, cpu float64 } // cpu: server CPU-s per request
	for i := 0; i < b.N; i++ {
		var sb strings.Builder
		sb.WriteString("\n| scatter-gather | body | mmap req/s | sendfile req/s | req/s, mmap ÷ sendfile | CPU per request, sendfile ÷ mmap |\n|---|---|---|---|---|---|\n")
		for _, sg := range []string{"on", "off"} {
			if err := run("ethtool", "-K", p.HostIf, "sg", sg); err != nil {
				b.Fatal(err)
			}
			res := map[string]map[int64]result{}
			for _, method := range []string{"mmap", "sendfile"} {
				res[method] = map[int64]result{}
				addr := net.JoinHostPort(p.HostIP, fmt.Sprint(freePort(b)))
				srv := startProc(b, []string{"serve", dir, "--listen", addr, "--cache-dir", cacheDir, "--transfer", method}, func() bool {
					c, err := net.DialTimeout("tcp", addr, time.Second)
					if err == nil {
						c.Close()
					}
					return err == nil
				})
				for _, n := range sizes {
					u := fmt.Sprintf("http://%s/%d", addr, n)
					timeCmd(b, "ip", "netns", "exec", p.NS, "curl", "-sf", "-o", os.DevNull, u) // cache it
					c0 := procCPU(b, srv.cmd.Process.Pid)
					start := time.Now()
					rps := wrkRate(b, p.NS, u, "", "3s")
					reqs := rps * time.Since(start).Seconds()
					res[method][n] = result{rps, (procCPU(b, srv.cmd.Process.Pid) - c0) / reqs}
				}
				srv.stop()
			}
			for _, n := range sizes {
				m, s := res["mmap"][n], res["sendfile"][n]
				fmt.Fprintf(&sb, "| %s | %d KiB | %.0f | %.0f | %.2fx | %.2fx |\n", sg, n>>10, m.rps, s.rps, m.rps/s.rps, s.cpu/m.cpu)
			}
		}
		run("ethtool", "-K", p.HostIf, "sg", "on")
		fmt.Print(sb.String())
	}
}
