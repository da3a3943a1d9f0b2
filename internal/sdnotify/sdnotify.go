// Package sdnotify speaks systemd's readiness protocol (sd_notify(3)), so that a unit
// with Type=notify knows when a mount answers or a server accepts, and a unit with
// WatchdogSec= sees the process alive.
//
// The protocol: systemd puts the path of a unix datagram socket in NOTIFY_SOCKET (a
// name starting with '@' is in the abstract namespace: '@' stands for a NUL byte);
// the service sends newline-separated KEY=VALUE assignments, one datagram per
// message: READY=1, STATUS=text, RELOADING=1, STOPPING=1, WATCHDOG=1. With
// WatchdogSec= set, systemd sets WATCHDOG_USEC (and WATCHDOG_PID, the pid it is meant
// for) and kills the service when no WATCHDOG=1 comes within that time; sd_watchdog_enabled(3)
// advises pinging at half of it. Without NOTIFY_SOCKET every call is a no-op, so the
// same binary runs under systemd and from a shell.
//
// It is the dozen lines of the protocol rather than a dependency (go-systemd's daemon
// package does the same): nothing here needs more.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Sent states (sd_notify(3)).
const (
	Ready     = "READY=1"
	Stopping  = "STOPPING=1"
	Reloading = "RELOADING=1"
	Watchdog  = "WATCHDOG=1"
)

// Status is a STATUS= line: free text systemctl status shows. Newlines would start a
// new assignment, so they become spaces.
func Status(text string) string {
	return "STATUS=" + strings.ReplaceAll(text, "\n", " ")
}

// ReloadingNow is RELOADING=1 with the MONOTONIC_USEC= that systemd's
// Type=notify-reload asks to come with it (the CLOCK_MONOTONIC time of the reload's
// start, so that systemd can tell this reload from an earlier one).
func ReloadingNow() string {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return Reloading + "\nMONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
}

// maxMessage bounds one datagram: systemd reads up to PIPE_BUF-ish sizes happily, and
// nothing cachegate sends is near this; a longer STATUS is cut, not refused.
const maxMessage = 4096

// Enabled reports whether systemd (or a test) listens: NOTIFY_SOCKET is set.
func Enabled() bool { return os.Getenv("NOTIFY_SOCKET") != "" }

// Notify sends state (one or more assignments joined by newlines) to NOTIFY_SOCKET.
// It returns nil without NOTIFY_SOCKET; an error says what failed, and callers log it
// and go on: a missing notification costs the unit's start-up, not the mount.
func Notify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if len(state) > maxMessage {
		state = state[:maxMessage]
	}
	addr := &net.UnixAddr{Name: name, Net: "unixgram"}
	switch {
	case strings.HasPrefix(name, "@"):
		addr.Name = "\x00" + name[1:]
	case !strings.HasPrefix(name, "/"):
		return fmt.Errorf("NOTIFY_SOCKET %q is neither an absolute path nor an abstract name (@…)", name)
	}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", name, err)
	}
	defer conn.Close()
	// A datagram socket that nobody reads would block a write only when its queue is
	// full; a deadline keeps a stuck systemd from stopping the caller.
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", name, err)
	}
	return nil
}

// WatchdogInterval is how often to send WATCHDOG=1: half of WATCHDOG_USEC, as
// sd_watchdog_enabled(3) advises. ok is false when no watchdog is asked for this
// process (WATCHDOG_USEC unset, or WATCHDOG_PID names another process).
func WatchdogInterval() (d time.Duration, ok bool, err error) {
	s := os.Getenv("WATCHDOG_USEC")
	if s == "" {
		return 0, false, nil
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(os.Getpid()) {
		return 0, false, nil
	}
	usec, err := strconv.ParseUint(s, 10, 63)
	if err != nil || usec == 0 {
		return 0, false, fmt.Errorf("WATCHDOG_USEC %q is not a positive number of microseconds", s)
	}
	// Bounded below so a tiny value cannot turn into a busy loop.
	return max(time.Duration(usec)*time.Microsecond/2, time.Millisecond), true, nil
}

// StartWatchdog sends WATCHDOG=1 every WatchdogInterval until the returned stop is
// called (stop waits for the pinger to end); without a watchdog it does nothing. The
// first failure to send is reported through onErr (may be nil); later ones are not,
// so a gone systemd cannot flood the log.
func StartWatchdog(onErr func(error)) (stop func(), err error) {
	return StartWatchdogIf(nil, onErr)
}

// StartWatchdogIf is StartWatchdog pinging only once healthy returns (nil: always):
// the pinger calls it before each ping, so that a process whose health check hangs
// (its cache deadlocked, say) stops pinging and systemd's watchdog restarts it. A
// stop while healthy hangs does not wait for it.
func StartWatchdogIf(healthy func(), onErr func(error)) (stop func(), err error) {
	every, ok, err := WatchdogInterval()
	if err != nil || !ok {
		return func() {}, err
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		reported := false
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				if healthy != nil {
					healthy()
					select {
					case <-quit:
						return
					default:
					}
				}
				if err := Notify(Watchdog); err != nil && !reported && onErr != nil {
					reported = true
					onErr(err)
				}
			}
		}
	}()
	var stopped bool
	return func() {
		if !stopped {
			stopped = true
			close(quit)
			select {
			case <-done:
			case <-time.After(every): // stuck in healthy: it returns without a ping
			}
		}
	}, nil
}
