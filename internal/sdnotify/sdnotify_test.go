package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen opens a unixgram socket as systemd would and points NOTIFY_SOCKET at it.
func listen(t *testing.T, abstract bool) *net.UnixConn {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify")
	env := name
	if abstract {
		name = "\x00cachegate-sdnotify-test-" + strconv.Itoa(os.Getpid())
		env = "@" + name[1:]
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", env)
	return c
}

func recv(t *testing.T, c *net.UnixConn, wait time.Duration) (string, bool) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 8192)
	n, err := c.Read(buf)
	if err != nil {
		return "", false
	}
	return string(buf[:n]), true
}

func TestNotifyPathAndAbstract(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		c := listen(t, abstract)
		if err := Notify(Ready + "\n" + Status("mounted\nat /mnt")); err != nil {
			t.Fatalf("abstract=%v: %v", abstract, err)
		}
		got, ok := recv(t, c, 5*time.Second)
		if want := "READY=1\nSTATUS=mounted at /mnt"; !ok || got != want {
			t.Errorf("abstract=%v: got %q, want %q", abstract, got, want)
		}
	}
}

func TestNotifyWithoutSocketIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if Enabled() {
		t.Fatal("Enabled with NOTIFY_SOCKET empty")
	}
	if err := Notify(Ready); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", "relative/sock")
	if err := Notify(Ready); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative NOTIFY_SOCKET: %v, want an error saying it must be absolute", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		ok, err   bool
	}{
		{"", "", 0, false, false},
		{"400000", "", 200 * time.Millisecond, true, false},
		{"400000", strconv.Itoa(os.Getpid()), 200 * time.Millisecond, true, false},
		{"400000", "1", 0, false, false}, // meant for another process
		{"1", "", time.Millisecond, true, false},
		{"0", "", 0, false, true},
		{"-5", "", 0, false, true},
		{"x", "", 0, false, true},
	} {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		d, ok, err := WatchdogInterval()
		if d != tc.want || ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("USEC=%q PID=%q: %v %v %v, want %v %v err=%v", tc.usec, tc.pid, d, ok, err, tc.want, tc.ok, tc.err)
		}
	}
}

func TestWatchdogPings(t *testing.T) {
	c := listen(t, false)
	t.Setenv("WATCHDOG_USEC", "100000") // pings every 50ms
	t.Setenv("WATCHDOG_PID", "")
	stop, err := StartWatchdog(func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n := 0
	for n < 5 {
		got, ok := recv(t, c, 5*time.Second)
		if !ok {
			t.Fatalf("only %d watchdog pings", n)
		}
		if got != Watchdog {
			t.Fatalf("got %q, want %q", got, Watchdog)
		}
		n++
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("5 pings in %v: faster than every 50ms", el)
	}
	stop()
	stop() // twice is fine
	// Drain what was in flight, then nothing more comes.
	for {
		if _, ok := recv(t, c, 300*time.Millisecond); !ok {
			break
		}
	}
	if got, ok := recv(t, c, 300*time.Millisecond); ok {
		t.Errorf("ping %q after stop", got)
	}
}

// TestReloadingNow: RELOADING=1 comes with MONOTONIC_USEC, CLOCK_MONOTONIC now in
// microseconds, as Type=notify-reload wants.
func TestReloadingNow(t *testing.T) {
	var before unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &before)
	msg := ReloadingNow()
	lines := strings.Split(msg, "\n")
	if len(lines) != 2 || lines[0] != Reloading || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("%q", msg)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || usec < before.Nano()/1000 || usec > before.Nano()/1000+10_000_000 {
		t.Fatalf("MONOTONIC_USEC %d (err %v), CLOCK_MONOTONIC was %d µs", usec, err, before.Nano()/1000)
	}
}

// TestWatchdogStopsWhenUnhealthy: the pings stop while the health check hangs (a
// deadlocked cache), so that systemd's watchdog restarts the process; they were sent
// by a goroutine of their own whatever the rest of the process did.
func TestWatchdogStopsWhenUnhealthy(t *testing.T) {
	c := listen(t, false)
	t.Setenv("WATCHDOG_USEC", "100000") // pings every 50ms
	t.Setenv("WATCHDOG_PID", "")
	var hung atomic.Bool
	release := make(chan struct{})
	stop, err := StartWatchdogIf(func() {
		if hung.Load() {
			<-release
		}
	}, func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := recv(t, c, 5*time.Second); !ok || got != Watchdog {
		t.Fatalf("no ping while healthy (%q)", got)
	}
	hung.Store(true)
	for range 5 { // drain what was in flight (bounded: pings that go on fail below)
		if _, ok := recv(t, c, 200*time.Millisecond); !ok {
			break
		}
	}
	if got, ok := recv(t, c, 500*time.Millisecond); ok {
		t.Fatalf("ping %q while the health check hangs", got)
	}
	hung.Store(false)
	close(release)
	if got, ok := recv(t, c, 5*time.Second); !ok || got != Watchdog {
		t.Fatalf("no ping once healthy again (%q)", got)
	}
	stop()
}
