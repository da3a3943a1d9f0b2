package main

import (
	"log/slog"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/sdnotify"
)

// systemd's Type=notify (see package sdnotify): every call is a no-op outside
// systemd, and a failed notification is a warning, never a failed mount.

// notifyStatus sends a STATUS= line.
func notifyStatus(log *slog.Logger, status string) {
	if err := sdnotify.Notify(sdnotify.Status(status)); err != nil {
		log.Warn("cannot notify systemd", "err", err)
	}
}

// notifyReady tells systemd the mount answers or the server accepts, and starts the
// watchdog pings WatchdogSec= asks for; the returned func stops them.
func notifyReady(log *slog.Logger, c *cache.Cache, status string) (stopWatchdog func()) {
	if err := sdnotify.Notify(sdnotify.Ready + "\n" + sdnotify.Status(status)); err != nil {
		log.Warn("cannot notify systemd", "err", err)
	}
	// A ping is sent only once the cache answers (its lock is free): a cache that
	// hangs every read and listing stops the pings, and systemd restarts us.
	stop, err := sdnotify.StartWatchdogIf(func() { c.Status() }, func(err error) { log.Warn("cannot send systemd's watchdog ping", "err", err) })
	if err != nil {
		log.Warn("no watchdog pings", "err", err)
	}
	return stop
}

// notifyStopping tells systemd the process is stopping, and why.
func notifyStopping(log *slog.Logger, why string) {
	if err := sdnotify.Notify(sdnotify.Stopping + "\n" + sdnotify.Status("stopping: "+why)); err != nil {
		log.Warn("cannot notify systemd", "err", err)
	}
}
