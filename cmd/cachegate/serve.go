package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/control"
	"github.com/cachegate/cachegate/internal/nic"
	"github.com/cachegate/cachegate/serve"
	"github.com/prometheus/client_golang/prometheus"
)

// serverFlags configure the built-in HTTP server, for `serve` and `mount --serve`.
type serverFlags struct {
	Transfer      string        `group:"server" env:"CACHEGATE_SERVE_TRANSFER" help:"How file bytes reach sockets: auto, sendfile, mmap or copy (default: ${default})." default:"auto" enum:"auto,sendfile,mmap,copy" placeholder:"METHOD"`
	TLSCert       string        `group:"server" env:"CACHEGATE_SERVE_TLS_CERT" name:"tls-cert" help:"Serve HTTPS with this certificate (PEM); needs --tls-key." type:"existingfile" placeholder:"FILE"`
	TLSKey        string        `group:"server" env:"CACHEGATE_SERVE_TLS_KEY" name:"tls-key" help:"Private key for --tls-cert (PEM)." type:"existingfile" placeholder:"FILE"`
	AuthTokenFile string        `group:"server" env:"CACHEGATE_SERVE_AUTH_TOKEN_FILE" help:"Require 'Authorization: Bearer TOKEN' with the token in this file." type:"existingfile" placeholder:"FILE"`
	MaxConns      int           `group:"server" env:"CACHEGATE_SERVE_MAX_CONNS" help:"Most concurrent client connections: 1 to 1000000 (default: ${default})." default:"10000" placeholder:"N"`
	IdleTimeout   time.Duration `group:"server" env:"CACHEGATE_SERVE_IDLE_TIMEOUT" help:"Close keep-alive connections idle this long: 1s to 24h (default: ${default})." default:"60s" placeholder:"DUR"`
	NotsentLowat  Size          `group:"server" env:"CACHEGATE_SERVE_NOTSENT_LOWAT" help:"Unsent bytes a client's socket may queue, while a body is written from memory (mapping, copy, TLS), before the server waits to send more (TCP_NOTSENT_LOWAT; 0: the kernel's default, no bound) (default: ${default})." default:"64KiB" placeholder:"SIZE"`
	// Its own flag: each method ran far worse at the other's best bound (serve.DefaultNotsentLowatSendfile).
	NotsentLowatSendfile Size   `group:"server" env:"CACHEGATE_SERVE_NOTSENT_LOWAT_SENDFILE" help:"The same bound while a body goes by sendfile (0: the kernel's default, no bound) (default: ${default})." default:"32KiB" placeholder:"SIZE"`
	Metrics              string `group:"server" help:"Serve /-/metrics, /-/healthz and /-/status alone on this address (with --auth-token-file's token, as on --serve's)." placeholder:"ADDR"`
	peerFlags
	AccessLog       string `group:"logging" help:"Log every HTTP request to this file (- for standard output), reopened on SIGHUP (logrotate)." placeholder:"FILE|-"`
	AccessLogFormat string `group:"logging" help:"Access log format: combined (nginx's, then request time, X-Cache and X-Transfer) or json (one object per line) (default: ${default})." default:"combined" enum:"combined,json" placeholder:"FORMAT"`
}

// lowat turns a --notsent-lowat flag into serve.Options' form: the flag's 0 (the
// kernel's default, no bound) is the options' -1, since their 0 means "the default".
func lowat(flag Size) int {
	if flag <= 0 {
		return -1
	}
	return int(flag)
}

// start listens on addr (on none when "") and on --metrics, and serves c in the
// background; extra are more metrics (the mount's).
func (f *serverFlags) start(addr string, c *cache.Cache, log *slog.Logger, extra ...prometheus.Collector) (*serve.Server, error) {
	return f.startWith(addr, c, log, nil, extra...)
}

// startWith is start with tune, when set, changing the server's options last (the
// daemon's Hidden).
func (f *serverFlags) startWith(addr string, c *cache.Cache, log *slog.Logger, tune func(*serve.Options), extra ...prometheus.Collector) (*serve.Server, error) {
	opts := serve.Options{Transfer: f.Transfer, Logger: log, MaxConns: f.MaxConns, IdleTimeout: f.IdleTimeout,
		NotsentLowat: lowat(f.NotsentLowat), NotsentLowatSendfile: lowat(f.NotsentLowatSendfile), Collectors: extra,
		Peers: f.group}

	if (f.TLSCert == "") != (f.TLSKey == "") {
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	if f.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(f.TLSCert, f.TLSKey)
		if err != nil {
			return nil, usagef("load TLS certificate: %v", err)
		}
		opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if f.AuthTokenFile != "" {
		b, err := os.ReadFile(f.AuthTokenFile)
		if err != nil {
			return nil, err
		}
		if opts.AuthToken = strings.TrimSpace(string(b)); opts.AuthToken == "" {
			return nil, usagef("--auth-token-file %s is empty", f.AuthTokenFile)
		}
	}
	var err error
	if opts.AccessLog, err = f.openAccessLog(log); err != nil {
		return nil, err
	}
	if tune != nil {
		tune(&opts)
	}
	srv, err := serve.New(c, opts)
	if err != nil {
		return nil, usagef("%v", err)
	}
	if err := f.startMetrics(srv, opts.TLSConfig != nil, log); err != nil {
		return nil, err
	}
	if addr == "" {
		return srv, nil
	}
	addr, exposed, err := listenAddr(addr)
	if err != nil {
		return nil, err
	}
	if exposed && opts.AuthToken == "" {
		log.Warn("serving on an address other machines can reach, without --auth-token-file: whoever reaches it reads the origin through cachegate", "listen", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %v", addr, err)
	}
	logZeroCopy(ln.Addr().(*net.TCPAddr), opts.TLSConfig != nil, log)
	scheme := "http"
	if opts.TLSConfig != nil {
		scheme = "https"
	}
	log.Info("serving", "url", scheme+"://"+ln.Addr().String()+"/", "transfer", f.Transfer)
	go func() {
		if err := srv.Serve(ln); err != nil {
			log.Error("server stopped", "err", err)
		}
	}()
	return srv, nil
}

// logZeroCopy says whether sendfile is truly zero-copy on the listen address's
// interface.
func logZeroCopy(addr *net.TCPAddr, tlsOn bool, log *slog.Logger) {
	if tlsOn {
		log.Info("TLS on: bodies are encrypted in user space, sendfile is never used")
		return
	}
	ifcs, err := nic.ForAddr(addr.IP)
	if err != nil {
		log.Warn("cannot tell the listen interface's scatter-gather state", "err", err)
		return
	}
	for _, ifc := range ifcs {
		info := nic.Describe(ifc)
		log.Info("sendfile", "interface", info.Name, "scatter_gather", info.ScatterGather, "zero_copy", info.ZeroCopySend, "note", info.Explanation)
	}
}

type serveCmd struct {
	Origin     string `arg:"" help:"What to serve: a directory (relative to the working directory or absolute), file:///abs/dir, http://host[:port]/prefix/, https://… or s3://bucket[/prefix]"`
	cacheFlags        // declared in the order of flagGroups
	Listen     string `group:"server" env:"CACHEGATE_SERVE_LISTEN" help:"Address to listen on: PORT (on 127.0.0.1), :PORT (every interface) or HOST:PORT (default: ${default})." default:"127.0.0.1:8080" placeholder:"ADDR"`
	serverFlags
	Pprof string `help:"Serve Go's pprof profiles on this address." hidden:"" placeholder:"ADDR"`
}

func (s *serveCmd) Run(g *globals) error {
	sig := notifyStop()
	defer signal.Stop(sig)
	log := slog.Default()
	startPprof(s.Pprof, log)
	spec, err := originSpec(s.Origin)
	if err != nil {
		return err
	}
	if _, _, err := listenAddr(s.Listen); err != nil {
		return usagef("--listen: %v", err) // before the cache dir is made
	}
	wrap, err := s.wrap(s.Listen, s.AuthTokenFile, int64(s.ChunkSize), log)
	if err != nil {
		return err
	}
	notifyStatus(log, "checking the origin and opening the cache "+s.CacheDir)
	c, err := s.open(spec, log, wrap)
	if err != nil {
		return err
	}
	defer c.Close()
	defer s.peerFlags.close()
	srv, err := s.start(s.Listen, c, log)
	if err != nil {
		return err
	}
	ctl, err := control.Listen(c, srv.ServeStatus, log)
	if err != nil {
		srv.Close()
		return err
	}
	defer ctl.Close()
	defer registerInstance("serve", c, "", s.Listen, log)()
	// Ready: start has listened, so the port accepts.
	defer notifyReady(log, c, fmt.Sprintf("serving %s on %s", control.Redact(c.Origin().String()), s.Listen))()
	got := <-sig
	log.Info("stopping", "signal", got.String())
	notifyStopping(log, got.String())
	bounded(sig, log, nil)
	srv.Close()
	return nil
}

type nicCmd struct {
	Interfaces []string `arg:"" optional:"" name:"iface" help:"Interfaces to report (default: all)."`
	JSON       bool     `help:"Print JSON." env:"-"`
}

func (n *nicCmd) Run(g *globals) error {
	var ifcs []net.Interface
	if len(n.Interfaces) == 0 {
		all, err := net.Interfaces()
		if err != nil {
			return err
		}
		ifcs = all
	}
	for _, name := range n.Interfaces {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return usagef("no interface %q: see ip link", name)
		}
		ifcs = append(ifcs, *ifc)
	}
	var infos []nic.Info
	for _, ifc := range ifcs {
		infos = append(infos, nic.Describe(ifc))
	}
	if n.JSON {
		return printJSON(infos)
	}
	fmt.Printf("%-16s %-15s %s\n", "INTERFACE", "SCATTER-GATHER", "SENDFILE")
	failed := 0
	for _, i := range infos {
		sg := "off"
		if i.Error != "" {
			sg, failed = "unknown", failed+1
		} else if i.ScatterGather {
			sg = "on"
		}
		fmt.Printf("%-16s %-15s %s\n", i.Name, sg, i.Explanation)
	}
	if failed == len(infos) && failed > 0 {
		return errors.New("no interface answered ETHTOOL_GSG")
	}
	return nil
}
