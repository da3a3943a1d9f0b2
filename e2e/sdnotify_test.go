package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 22: under systemd's Type=notify, cachegate mount sends READY=1 only once the
// mount answers, STATUS= lines, WATCHDOG=1 at half of WATCHDOG_USEC, and STOPPING=1
// on SIGTERM. The test is systemd: it listens on the unixgram NOTIFY_SOCKET.
func TestSdNotifyMount(t *testing.T) {
	requireRoot(t)
	root := filepath.Join(workDir, "notify-origin")
	writeRandom(t, filepath.Join(root, "n.bin"), 10000, 2203)
	nx := startNginx(t, root, "json")
	sock := filepath.Join(t.TempDir(), "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir, err := os.MkdirTemp(workDir, "mnt-")
	if err != nil {
		t.Fatal(err)
	}
	p := startProcEnv(t, []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=400000"},
		[]string{"mount", nx.URL, dir, "--cache-dir", dir + "-cache"}, func() bool { return true })
	t.Cleanup(func() { (&mount{proc: p, Dir: dir}).stop(t) })

	buf := make([]byte, 4096)
	recv := func(wait time.Duration) (string, bool) {
		ln.SetReadDeadline(time.Now().Add(wait))
		n, err := ln.Read(buf)
		if err != nil {
			return "", false
		}
		return string(buf[:n]), true
	}
	var statuses []string
	for {
		msg, ok := recv(20 * time.Second)
		if !ok {
			t.Fatalf("no READY=1 within 20s (got %q)\n%s", statuses, p.logs.String())
		}
		if strings.Contains(msg, "WATCHDOG=1") {
			t.Fatalf("watchdog ping %q before READY=1", msg)
		}
		if !strings.Contains(msg, "READY=1") {
			statuses = append(statuses, msg)
			continue
		}
		// The mount answers the moment READY=1 arrives.
		if !isMounted(dir) {
			t.Fatalf("READY=1 (%q) before %s is mounted", msg, dir)
		}
		if _, err := os.Stat(filepath.Join(dir, "n.bin")); err != nil {
			t.Fatalf("READY=1 but the mount does not answer: %v", err)
		}
		if !strings.Contains(msg, "STATUS=mounted") || !strings.Contains(msg, dir) {
			t.Errorf("READY=1 message %q: want a STATUS= naming the mount", msg)
		}
		break
	}
	if len(statuses) == 0 || !strings.HasPrefix(statuses[0], "STATUS=") {
		t.Errorf("before READY=1: %q, want a STATUS= line", statuses)
	}

	// WATCHDOG_USEC=400000: a ping every 200ms; about 10 in 2s, bounds generous.
	pings := 0
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		msg, ok := recv(time.Until(end))
		if !ok {
			break
		}
		if msg != "WATCHDOG=1" {
			t.Errorf("unexpected %q between READY and stop", msg)
		}
		pings++
	}
	if pings < 4 || pings > 20 {
		t.Errorf("%d watchdog pings in 2s, want about 10 (every 200ms)", pings)
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	for {
		msg, ok := recv(10 * time.Second)
		if !ok {
			t.Fatal("no STOPPING=1 within 10s of SIGTERM")
		}
		if strings.Contains(msg, "STOPPING=1") {
			break
		}
	}
	select {
	case <-p.done:
		if c := p.cmd.ProcessState.ExitCode(); c != 0 {
			t.Errorf("exit %d after SIGTERM", c)
		}
	case <-time.After(15 * time.Second):
		t.Error("still running 15s after SIGTERM")
	}
}

// Issue 22: cachegate serve sends READY=1 once its port accepts, and STOPPING=1 on
// SIGTERM.
func TestSdNotifyServe(t *testing.T) {
	requireRoot(t)
	root := filepath.Join(workDir, "notify-serve-origin")
	writeRandom(t, filepath.Join(root, "s.bin"), 1000, 2204)
	sock := filepath.Join(t.TempDir(), "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := freePort(t)
	p := startProcEnv(t, []string{"NOTIFY_SOCKET=" + sock}, []string{"serve", root, "--listen", "127.0.0.1:" + strconv.Itoa(port),
		"--cache-dir", filepath.Join(t.TempDir(), "cache")}, func() bool { return true })
	buf := make([]byte, 4096)
	for {
		ln.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := ln.Read(buf)
		if err != nil {
			t.Fatalf("no READY=1 within 20s\n%s", p.logs.String())
		}
		if strings.Contains(string(buf[:n]), "READY=1") {
			break
		}
	}
	if err := waitPort(port, 0); err != nil {
		t.Fatalf("READY=1 but the port does not accept: %v", err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	for {
		ln.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := ln.Read(buf)
		if err != nil {
			t.Fatal("no STOPPING=1 within 10s of SIGTERM")
		}
		if strings.Contains(string(buf[:n]), "STOPPING=1") {
			break
		}
	}
}
