package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/fusefs"
	"github.com/cachegate/cachegate/internal/bwlimit"
	"github.com/cachegate/cachegate/internal/control"
	"github.com/cachegate/cachegate/internal/origin"
	"github.com/cachegate/cachegate/internal/units"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// cacheFlags are shared by every command that owns a cache.
type cacheFlags struct {
	CacheDir         string        `group:"cache" help:"Cache directory (one process owns it at a time) (default: ${default})." default:"${default_cache_dir}" placeholder:"DIR"`
	CacheSize        Size          `group:"cache" help:"Most bytes the cache keeps on disk: at least 4 chunks (default: ${default})." default:"10GiB" placeholder:"SIZE"`
	MinFree          FreeSpace     `group:"cache" help:"Free space to leave on the cache's filesystem: a size or a percentage below 100%; 0 leaves none (default: ${default})." default:"5%" placeholder:"SIZE|PCT"`
	ChunkSize        Size          `group:"cache" help:"Unit of fetching and checksumming: a multiple of 4KiB from 4KiB to 1GiB (default: ${default})." default:"1MiB" placeholder:"SIZE"`
	Readahead        Size          `group:"cache" help:"Largest readahead window of a sequential reader: at least 4KiB (default: ${default})." default:"64MiB" placeholder:"SIZE"`
	Prefetch         int           `group:"cache" help:"Small files (one chunk at most, sized exactly by the listing) fetched ahead of a reader that opens a directory's files in turn, 8 at a time, never evicting for them: 0 (off) to 1000 (default: ${default})." default:"${default_prefetch}" placeholder:"N"`
	MetadataTTL      time.Duration `group:"cache" name:"metadata-ttl" help:"How long attributes and listings are trusted before the origin is asked again: 1ms to 8760h (default: ${default})." default:"1m" placeholder:"DUR"`
	VerifyInterval   time.Duration `group:"cache" help:"Re-hash idle cached files this often in the background, at most 32 MiB/s, dropping chunks that changed on disk: 0 (off) to 8760h (default: ${default})." default:"24h" placeholder:"DUR"`
	OriginTimeout    time.Duration `group:"origin" help:"Give up on an origin stat, listing or read after this long without progress, retries included: the reader gets EIO (mount) or 502 (serve); 100ms to 24h (default: ${default})." default:"30s" placeholder:"DUR"`
	S3Endpoint       string        `group:"origin" name:"s3-endpoint" env:"CACHEGATE_S3_ENDPOINT" help:"URL of an S3-compatible store for s3:// origins (default: AWS); path-style addressing." placeholder:"URL"`
	S3Region         string        `group:"origin" name:"s3-region" env:"CACHEGATE_S3_REGION" help:"Region for s3:// origins (default: AWS_REGION, or us-east-1 with --s3-endpoint)." placeholder:"REGION"`
	MaxDirEntries    int           `group:"origin" name:"max-dir-entries" env:"CACHEGATE_MAX_DIR_ENTRIES" help:"Most entries a directory of the origin may have: a larger one gives EIO (mount) or 502 (serve) and a log line instead of unbounded memory (about 1 KB of RSS each through a mount); 1 to 100000000 (default: ${default})." default:"1000000" placeholder:"N"`
	OriginHeader     []string      `group:"origin" name:"origin-header" env:"CACHEGATE_ORIGIN_HEADER" sep:"none" help:"Header \"Name: value\" sent on every request to an http(s) origin; repeatable (environment: one per line). Wins over the URL's user:password. Values are never logged." placeholder:"HDR"`
	OriginHeaderFile string        `group:"origin" name:"origin-header-file" env:"CACHEGATE_ORIGIN_HEADER_FILE" help:"File of headers, one \"Name: value\" a line (# comments), sent on every http(s) origin request and reread when it changes (a rotated token needs no restart); wins over --origin-header." type:"path" placeholder:"FILE"`
	BWLimit          Rate          `group:"origin" name:"bwlimit" help:"Most bytes per second read from the origin, by all readers and warms of this process together, e.g. 50MiB, 500k, 1.5M; 0: no limit. Bursts are at most a second's worth or one chunk." placeholder:"RATE"`
	OriginCA         string        `group:"origin" name:"origin-ca" env:"CACHEGATE_ORIGIN_CA" help:"PEM file of CA certificates trusted for an https origin (or --s3-endpoint), added to the system roots (and to AWS_CA_BUNDLE)." type:"path" placeholder:"FILE"`
	TrustHTMLIndex   bool          `group:"origin" name:"trust-html-index" env:"CACHEGATE_TRUST_HTML_INDEX" help:"Show the files of an nginx HTML index with the sizes and times it prints (times to the minute) instead of a HEAD per file for the second: ls -l of a big directory then costs its one listing. JSON indexes (autoindex_format json) need no HEAD either way."`
	OriginInsecure   bool          `group:"origin" name:"origin-insecure" env:"CACHEGATE_ORIGIN_INSECURE" help:"Do not verify an https origin's certificate (logged as a warning at start): anyone on the network path could change what is served; prefer --origin-ca."`
}

// open opens the origin, checks that it answers, and opens the cache directory.
// wrap, when set, puts a decorator (the peer tier) around the origin.
func (f *cacheFlags) open(spec string, log *slog.Logger, wrap ...func(origin.Origin) (origin.Origin, error)) (*cache.Cache, error) {
	hideCredentials(spec)
	o, err := origin.New(spec, origin.Options{Timeout: f.OriginTimeout, S3Endpoint: f.S3Endpoint, S3Region: f.S3Region, MaxDirEntries: f.MaxDirEntries, Headers: splitHeaderLines(f.OriginHeader), HeaderFile: f.OriginHeaderFile, CAFile: f.OriginCA, Insecure: f.OriginInsecure, TrustHTMLIndex: f.TrustHTMLIndex})
	if err != nil {
		return nil, err
	}
	for _, w := range wrap {
		if w != nil {
			if o, err = w(o); err != nil {
				return nil, err
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(f.OriginTimeout, 30*time.Second))
	defer cancel()
	e, err := origin.CheckRoot(ctx, o)
	var unreachable error
	if err != nil {
		var ne net.Error
		var re *origin.RootError
		switch {
		case errors.As(err, &re):
			return nil, err
		case !errors.As(err, &ne):
			return nil, fmt.Errorf("origin %s: %v", control.Redact(o.String()), err)
		}
		unreachable = fmt.Errorf("cannot reach origin %s: %v: check the address and that the server is up", control.Redact(o.String()), err)
	} else if !e.IsDir {
		return nil, usagef("origin %s is not a directory", control.Redact(o.String()))
	}
	if f.ChunkSize <= 0 || f.ChunkSize%4096 != 0 {
		return nil, usagef("--chunk-size %d is not a positive multiple of 4KiB", f.ChunkSize)
	}
	if f.CacheSize < f.ChunkSize*4 {
		return nil, usagef("--cache-size must hold at least 4 chunks (%d bytes)", f.ChunkSize*4)
	}
	// A fetch gives up when no chunk arrives for --origin-timeout: a limit that
	// passes fewer than two chunks in that time would make every read of a busy
	// mount time out instead of going slowly.
	if r := int64(f.BWLimit); r > 0 && float64(2*f.ChunkSize)/float64(r) > f.OriginTimeout.Seconds() {
		return nil, usagef("--bwlimit %s/s passes fewer than two chunks (--chunk-size %s) per --origin-timeout %v: raise --bwlimit or --origin-timeout, or lower --chunk-size",
			units.FormatSize(r), units.FormatSize(int64(f.ChunkSize)), f.OriginTimeout)
	}
	c, err := cache.Open(o, cache.Options{
		Dir:            f.CacheDir,
		Limit:          int64(f.CacheSize),
		MinFree:        f.MinFree.Bytes,
		MinFreePct:     f.MinFree.Pct,
		ChunkSize:      int64(f.ChunkSize),
		Readahead:      int64(f.Readahead),
		Prefetch:       f.Prefetch,
		TTL:            f.MetadataTTL,
		OriginTimeout:  f.OriginTimeout,
		VerifyInterval: f.VerifyInterval,
		BWLimit:        bwlimit.New(int64(f.BWLimit), int64(f.ChunkSize)),
		Logger:         log,
	})
	if err != nil {
		if unreachable != nil {
			return nil, unreachable
		}
		return nil, err
	}
	if unreachable != nil {
		// Like CernVM-FS offline: with data or listings cached for this origin,
		// start and serve them; misses fail until the origin answers.
		if !c.HasMetadata() && len(c.Objects("")) == 0 {
			c.Close()
			return nil, unreachable
		}
		log.Warn("origin unreachable; serving what is cached until it answers", "err", unreachable)
	}
	if err := writeOwnerInfo(f.CacheDir, ownerInfo{Origin: spec, CacheSize: int64(f.CacheSize), ChunkSize: int64(f.ChunkSize)}); err != nil {
		// Only the cache verbs run without an owner need it (they can be given --origin).
		log.Warn("cannot record the cache's origin for the cache verbs", "dir", f.CacheDir, "err", err)
	}
	st := c.Status()
	log.Info("cache opened", "dir", f.CacheDir, "objects", st.Objects, "used", st.UsedBytes, "limit", st.LimitBytes)
	return c, nil
}

type mountCmd struct {
	Origin     string `arg:"" help:"What to mount: a directory (relative to the working directory or absolute), file:///abs/dir, http://host[:port]/prefix/, https://… or s3://bucket[/prefix]"`
	Mountpoint string `arg:"" help:"An existing, empty directory." type:"path"`
	cacheFlags
	// Declared in the order of flagGroups: cache, origin (in cacheFlags), mount, server, logging.
	AllowOther    bool `group:"mount" env:"CACHEGATE_MOUNT_ALLOW_OTHER" help:"Let other users access the mount (needs user_allow_other in /etc/fuse.conf unless root)."`
	NoPassthrough bool `group:"mount" env:"CACHEGATE_MOUNT_NO_PASSTHROUGH" help:"Serve complete files through cachegate (splice) instead of FUSE passthrough."`
	attrFlags
	Serve string `group:"server" env:"CACHEGATE_MOUNT_SERVE" help:"Also serve the cache over HTTP on this address, from this process: PORT (on 127.0.0.1), :PORT (every interface) or HOST:PORT." placeholder:"ADDR"`
	serverFlags
	DebugFuse bool   `group:"logging" help:"Log every FUSE request."`
	Pprof     string `help:"Serve Go's pprof profiles on this address (for profiling cachegate itself)." hidden:"" placeholder:"ADDR"`
}

func (m *mountCmd) Run(g *globals) error {
	// Catch SIGINT/SIGTERM before mounting: a signal that arrived during mount setup
	// would otherwise kill the process while go-fuse's poll hack holds a file open on
	// the new mount, and closing it at exit would wait forever for this very process.
	sig := notifyStop()
	defer signal.Stop(sig)
	log := slog.Default()
	startPprof(m.Pprof, log)
	if m.AccessLog != "" && m.Serve == "" {
		return usagef("--access-log logs the HTTP server's requests: add --serve ADDR")
	}
	spec, err := originSpec(m.Origin)
	if err != nil {
		return err
	}
	if m.Serve != "" {
		if _, _, err := listenAddr(m.Serve); err != nil {
			return usagef("--serve: %v", err) // before the cache dir is made
		}
	}
	if err := checkMountpoint(m.Mountpoint); err != nil {
		return err
	}
	if err := checkUserMount(m.Mountpoint, m.AllowOther); err != nil {
		return err
	}
	wrap, err := m.wrap(m.Serve, m.AuthTokenFile, int64(m.ChunkSize), log)
	if err != nil {
		return err
	}
	notifyStatus(log, "checking the origin and opening the cache "+m.CacheDir)
	c, err := m.open(spec, log, wrap)
	if err != nil {
		return err
	}
	defer c.Close()
	defer m.peerFlags.close()
	// The server and the control socket start first, so that when the mount
	// appears everything is ready: a script that waits for the mount point can use
	// `cachegate cache …` and the HTTP address at once.
	var serveStatus func() control.ServeStatus
	stats := &fusefs.Stats{}
	if m.Serve != "" || m.Metrics != "" {
		srv, err := m.start(m.Serve, c, log, stats.Collectors()...)
		if err != nil {
			return err
		}
		defer srv.Close()
		if m.Serve != "" {
			serveStatus = srv.ServeStatus
		}
	}
	ctl, err := control.Listen(c, serveStatus, log)
	if err != nil {
		return err
	}
	defer ctl.Close()
	// Registered before it appears, like the control socket, for a script that waits
	// for the mount and then runs a verb on a path inside it.
	defer registerInstance("mount", c, m.Mountpoint, m.Serve, log)()
	opts := fusefs.Options{TTL: m.MetadataTTL, AllowOther: m.AllowOther, Logger: log, Debug: m.DebugFuse, NoPassthrough: m.NoPassthrough, Stats: stats}
	m.attrFlags.apply(&opts)
	server, err := fusefs.Mount(m.Mountpoint, c, opts)
	if err != nil {
		if !fusefs.CanMountDirectly() {
			// fusermount3 said why on stderr, just above; go-fuse only has its exit code.
			return fmt.Errorf("mount %s through fusermount3: %v: its message above says why", m.Mountpoint, strings.TrimSpace(err.Error()))
		}
		return fmt.Errorf("mount %s: %v", m.Mountpoint, err)
	}
	log.Info("mounted", "origin", control.Redact(c.Origin().String()), "mountpoint", m.Mountpoint, "cache_dir", c.Dir())
	// Ready: the kernel's INIT is done (fusefs.Mount waits for it), so the mount answers.
	tellHelper("ready")
	defer notifyReady(log, c, fmt.Sprintf("mounted %s at %s", control.Redact(c.Origin().String()), m.Mountpoint))()
	return serveUntilSignal(server, m.Mountpoint, log, sig)
}

// notifyStop starts catching the signals that ask a long-running command to stop.
func notifyStop() chan os.Signal {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	return sig
}

// stopGrace bounds the graceful part of a stop. Requests and FUSE calls waiting on an
// origin that does not answer would each hold the process for up to --origin-timeout
// (a listing's per-entry HEADs for far longer); past stopGrace they are abandoned and
// the process exits, so SIGTERM ends it within seconds whatever is in flight.
const stopGrace = 5 * time.Second

// bounded makes sure the stop that begins now ends the process: when it has not
// finished within stopGrace, or a second signal comes, force is called (it must not
// block: it detaches the mount) and the process exits 0, as a stop does. Abandoned
// work is as safe as after kill -9: the cache re-verifies what was being written.
func bounded(sig <-chan os.Signal, log *slog.Logger, force func()) {
	go func() {
		select {
		case <-time.After(stopGrace):
			log.Warn("work still in flight (waiting on the origin?); exiting without it", "after", stopGrace)
		case s := <-sig:
			log.Warn("second signal; exiting now", "signal", s.String())
		}
		if force != nil {
			force()
		}
		os.Exit(0)
	}()
}

// serveUntilSignal waits until the mount goes away (someone unmounted it) or a signal
// asks to stop, in which case it unmounts. Either way the rest of the stop is bounded.
func serveUntilSignal(server *fuse.Server, mountpoint string, log *slog.Logger, sig <-chan os.Signal) error {
	done := make(chan struct{})
	go func() { server.Wait(); close(done) }()
	select {
	case <-done:
		log.Info("unmounted", "mountpoint", mountpoint)
		notifyStopping(log, "unmounted")
		bounded(sig, log, nil)
		return nil
	case s := <-sig:
		log.Info("stopping", "signal", s.String())
		notifyStopping(log, s.String())
	}
	bounded(sig, log, func() {
		// Exiting closes /dev/fuse, which fails the requests still waiting; the
		// mount must not stay behind as a dead one.
		if mounted, fstype := isMountpoint(mountpoint); mounted && fstype == cachegateFSType {
			unix.Unmount(mountpoint, unix.MNT_DETACH)
		}
	})
	if err := server.Unmount(); err != nil {
		// Busy (a shell sits in it): detach, so the mount disappears now and the kernel
		// finishes the open files' requests with errors rather than hanging them.
		log.Warn("mount busy; detaching it", "mountpoint", mountpoint, "err", err)
		if err := unix.Unmount(mountpoint, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %v", mountpoint, err)
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	log.Info("unmounted", "mountpoint", mountpoint)
	return nil
}

// checkMountpoint refuses a missing, non-directory, dead or already-mounted mountpoint.
// An automount point (autofs, as systemd makes for x-systemd.automount) is accepted
// untouched: the mount goes on top of its trigger, and the trigger fired is this very
// mount, so a statfs or stat there would wait for it (statfs would trigger it).
func checkMountpoint(mp string) error {
	if mounted, fstype := isMountpoint(mp); mounted && fstype == "autofs" {
		return nil
	}
	// Before anything that would wait on a hung mount's process.
	switch probeMount(mp) {
	case mountDead:
		return fmt.Errorf("%s is a dead mount whose process is gone: run cachegate unmount %s", mp, mp)
	case mountSilent:
		return fmt.Errorf("%s is a mount whose process does not answer (stopped or hung): resume or kill that process, then run cachegate unmount %s", mp, mp)
	}
	fi, err := os.Stat(mp)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return usagef("mountpoint %s does not exist: create it with mkdir -p %s", mp, mp)
	case err != nil:
		return fmt.Errorf("mountpoint %s: %v", mp, err)
	case !fi.IsDir():
		return usagef("mountpoint %s is not a directory", mp)
	}
	if mounted, fstype := isMountpoint(mp); mounted {
		return fmt.Errorf("%s is already a mount point (%s): unmount it first", mp, fstype)
	}
	return nil
}

// isMountpoint reports whether path is the mount point of an entry of
// /proc/self/mountinfo, and the filesystem type of the one on top (the one umount
// would remove, listed last), e.g. "tmpfs" or "fuse.cachegate".
func isMountpoint(path string) (bool, string) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false, ""
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, ""
	}
	defer f.Close()
	mounted, fstype := false, ""
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 10 || unescapeMountinfo(fields[4]) != abs {
			continue
		}
		mounted, fstype = true, ""
		for i, fl := range fields {
			if fl == "-" && i+1 < len(fields) {
				fstype = fields[i+1]
				break
			}
		}
	}
	return mounted, fstype
}

// cachegateFSType is the type of cachegate's mounts in mountinfo: FUSE with the
// subtype fusefs.Mount gives them (MountOptions.Name "cachegate").
const cachegateFSType = "fuse.cachegate"

// unescapeMountinfo undoes the octal escapes (\040 for a space) of mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

type unmountCmd struct {
	Mountpoint string `arg:"" help:"The mount point." type:"path"`
}

func (u *unmountCmd) Run(g *globals) error {
	mp := u.Mountpoint
	mounted, fstype := isMountpoint(mp)
	switch {
	case !mounted:
		return fmt.Errorf("%s is not mounted", mp)
	case fstype != cachegateFSType:
		// A typo must not take down an NFS or data mount: only cachegate's are ours.
		if fstype == "" {
			fstype = "unknown"
		}
		return fmt.Errorf("%s is a %s mount, not cachegate's: use umount", mp, fstype)
	}
	err := unix.Unmount(mp, 0)
	if err == nil {
		return nil
	}
	state := mountAnswers
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EPERM) {
		state = probeMount(mp)
	}
	switch {
	case errors.Is(err, unix.EBUSY) && state == mountDead:
		// Its process is gone, so every access there fails anyway; waiting for the
		// holders to close their files only keeps the mount point from being reused.
		// Detach it now, as fusermount3 -uz would; the kernel frees it when the last
		// holder lets go.
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s (its process died): %v", mp, err)
		}
		fmt.Fprintf(os.Stderr, "cachegate: %s: its process had died and files there were still open; detached it (their holders get errors until they close them)\n", mp)
		return nil
	case errors.Is(err, unix.EBUSY) && state == mountSilent:
		return fmt.Errorf("%s is busy and the cachegate process serving it does not answer (stopped or hung): resume or kill that process and retry", mp)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%s is busy: close the files and shells using it (see fuser -vm %s) and retry", mp, mp)
	case errors.Is(err, unix.EPERM):
		// Not root: fusermount3 is setuid and may unmount the user's own mounts.
		args := []string{"-u", mp}
		if state == mountDead {
			args = []string{"-uz", mp}
		}
		out, ferr := exec.Command("fusermount3", args...).CombinedOutput()
		if ferr != nil {
			return fmt.Errorf("unmount %s: %s", mp, strings.TrimSpace(string(out)))
		}
		return nil
	}
	return fmt.Errorf("unmount %s: %v", mp, err)
}

// mountState is what probeMount found of a FUSE mount's process.
type mountState int

const (
	mountAnswers mountState = iota // it answered (with or without an error)
	mountDead                      // the connection is gone: the process died or was aborted
	mountSilent                    // no answer within a second: stopped or hung
)

// probeMount asks the FUSE mount at mp's process, if mp is one, for its filesystem's
// statistics (any other path just answers). statfs always reaches the process (stat
// may be answered from cached attributes); a dead one is ENOTCONN (connection gone)
// or ECONNABORTED (aborted through /sys/fs/fuse/connections). A hung one is given a
// second, so that the command does not hang with it (the statfs is abandoned when
// the command exits).
func probeMount(mp string) mountState {
	res := make(chan error, 1)
	go func() {
		var st unix.Statfs_t
		res <- unix.Statfs(mp, &st)
	}()
	select {
	case err := <-res:
		if errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED) {
			return mountDead
		}
		return mountAnswers
	case <-time.After(time.Second):
		return mountSilent
	}
}

// splitHeaderLines splits each --origin-header value at newlines, so
// CACHEGATE_ORIGIN_HEADER can carry one header per line; blank lines are skipped.
func splitHeaderLines(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, l := range strings.Split(v, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}
