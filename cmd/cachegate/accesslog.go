package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/cachegate/cachegate/serve"
)

// openAccessLog opens --access-log (nil when not set). A file is reopened on SIGHUP,
// as logrotate expects (rename it, send SIGHUP, new lines go to a new file); the
// server closes the log when it stops.
func (f *serverFlags) openAccessLog(log *slog.Logger) (*serve.AccessLog, error) {
	if f.AccessLog == "" {
		return nil, nil
	}
	al, err := serve.OpenAccessLog(f.AccessLog, f.AccessLogFormat, log)
	if err != nil {
		return nil, err
	}
	if f.AccessLog != "-" {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		go func() {
			for range hup {
				if err := al.Reopen(); err == nil {
					log.Info("access log reopened", "path", f.AccessLog)
				}
			}
		}()
	}
	return al, nil
}

// startMetrics listens on --metrics, if set, for srv's /-/ endpoints alone.
func (f *serverFlags) startMetrics(srv *serve.Server, tlsOn bool, log *slog.Logger) error {
	if f.Metrics == "" {
		return nil
	}
	addr, exposed, err := listenAddr(f.Metrics)
	if err != nil {
		return usagef("--metrics: %v", err)
	}
	if exposed && f.AuthTokenFile == "" {
		log.Warn("serving metrics on an address other machines can reach, without --auth-token-file", "listen", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s (--metrics): %v", addr, err)
	}
	scheme := "http"
	if tlsOn {
		scheme = "https"
	}
	log.Info("serving metrics", "url", scheme+"://"+ln.Addr().String()+"/-/metrics")
	go func() {
		if err := srv.ServeAdmin(ln); err != nil {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	return nil
}
