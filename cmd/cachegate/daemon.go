package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/fusefs"
	"github.com/cachegate/cachegate/internal/control"
	"github.com/cachegate/cachegate/internal/origin"
	"github.com/cachegate/cachegate/internal/registry"
	"github.com/cachegate/cachegate/internal/sdnotify"
	"github.com/cachegate/cachegate/serve"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// The daemon (issue 22): one process, one cache over every origin of a config file.
//
// Design: the daemon opens ONE cache.Cache over an origin.Mux, whose namespace is
// NAME/… for each configured origin (rclone's "combine"), rather than splitting the
// cache into a shared store and per-origin views. One cache dir, one size cap, one
// LRU and one set of pins across all origins then come with the cache as it is; the
// server exposes /NAME/… by itself, hiding the origins without serve: true
// (serve.Options.Hidden); each origin's mount is a FUSE mount of the subtree NAME/
// (fusefs.Options.Root). The cache learned three small things (cache.Router): it
// names an object by its real origin and path, so cache dirs of single-origin
// mounts and servers open here with their objects; it maps objects back to NAME/…
// at load and when a route is added (Reroute); and it asks each path's metadata TTL
// of its route. Readahead, --origin-timeout and the cache's other options stay the
// process's: they are the cache's, and the cache is one.
//
// SIGHUP rereads the config. An invalid one is logged and the running one kept.
// Otherwise: origins added get their route (and mount); removed ones are hidden from
// the server at once and unmounted, their route kept until the unmount succeeds (a
// busy mount is retried every few seconds, logged, and its open files read on);
// changed ones (any field) get their new route and are remounted. Untouched origins
// and their mounts are not touched. The cache, serve and metrics sections apply at
// the next start (a warning says so).

type daemonCmd struct {
	Config string `help:"Run every origin of this YAML config (see README's Daemon) with one cache, in the foreground; SIGHUP rereads it." env:"-" type:"path" placeholder:"FILE" xor:"daemon"`
	Check  string `help:"Check the config FILE and exit: 0 when it is good, else 2 with one FILE:LINE: problem line each." env:"-" type:"path" placeholder:"FILE" xor:"daemon"`
}

// maxOriginChecks bounds the origins asked at once for their root at the start: a
// config may have thousands, many on one host.
const maxOriginChecks = 16

// daemonRetry is how often a busy mount of a removed or changed origin is retried.
const daemonRetry = 2 * time.Second

func (d *daemonCmd) Run(g *globals) error {
	if d.Check != "" {
		cfg, err := loadDaemonConfig(d.Check)
		if err != nil {
			return configFailed(err)
		}
		mounted, served := 0, 0
		for _, o := range cfg.Origins {
			if o.Mount != "" {
				mounted++
			}
			if o.Serve {
				served++
			}
		}
		fmt.Printf("%s: good: %s (%d mounted, %d served), cache %s in %s\n", d.Check, plural(len(cfg.Origins), "origin"), mounted, served, fmtSize(cfg.CacheSize), cfg.CacheDir)
		return nil
	}
	if d.Config == "" {
		return usagef("give --config FILE (or --check FILE)")
	}
	sig := notifyStop()
	defer signal.Stop(sig)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	log := slog.Default()
	cfg, err := loadDaemonConfig(d.Config)
	if err != nil {
		return configFailed(err)
	}
	dm := &daemon{file: d.Config, log: log, mux: origin.NewMux("cachegate-daemon"), mounts: map[string]*daemonMount{}, going: map[*daemonMount]bool{}, gone: make(chan *daemonMount, 16), later: make(chan func(), 16)}
	dm.served.Store(&map[string]bool{})
	return dm.run(cfg, sig, hup)
}

// configFailed prints a config's problems, one a line, and exits 2.
func configFailed(err error) error {
	var ce *configError
	if !errors.As(err, &ce) {
		return err
	}
	for _, p := range ce.problems {
		fmt.Fprintln(os.Stderr, p)
	}
	panic(exitCode(2))
}

type daemon struct {
	file string
	log  *slog.Logger
	mux  *origin.Mux
	c    *cache.Cache
	srv  *serve.Server
	// served is the set of names the server shows (serve: true), swapped whole.
	served atomic.Pointer[map[string]bool]
	// gone receives a mount whose server ended (unmounted by someone, or by us);
	// later, what is to run on run's goroutine once a busy mount went.
	gone  chan *daemonMount
	later chan func()

	// Owned by run's goroutine.
	cfg    *daemonConfig
	mounts map[string]*daemonMount // by origin name
	// going are the mounts of removed or changed origins that were busy: they stay
	// until their files close, hold their mount points meanwhile (an origin mounted
	// there again waits for them) and are taken at a stop like the others.
	going map[*daemonMount]bool
}

// daemonMount is one origin's mount.
type daemonMount struct {
	o          daemonOrigin
	server     *fuse.Server
	unregister func()
	done       chan struct{} // closed when server.Wait returns
	stopping   atomic.Bool   // we asked it to go
}

func (d *daemon) run(cfg *daemonConfig, sig, hup <-chan os.Signal) error {
	for _, o := range cfg.Origins {
		if err := d.route(o); err != nil {
			return err
		}
	}
	d.checkOrigins(cfg.Origins)
	notifyStatus(d.log, "opening the cache "+cfg.CacheDir)
	// A peer group puts its tier around the routes: what another member owns is
	// read from it (README's Scaling out).
	var o origin.Origin = d.mux
	var peers peerFlags
	if cfg.Serve != nil {
		peers = cfg.Serve.Peers // a copy: the group stays out of the config compared at reloads
		wrap, err := peers.wrap(cfg.Serve.Listen, cfg.Serve.AuthTokenFile, cfg.ChunkSize, d.log)
		if err != nil {
			return err
		}
		if wrap != nil {
			if o, err = wrap(d.mux); err != nil {
				return err
			}
			defer peers.close()
		}
	}
	c, err := cache.Open(o, cache.Options{
		Dir: cfg.CacheDir, Limit: cfg.CacheSize, MinFree: cfg.MinFree.Bytes, MinFreePct: cfg.MinFree.Pct,
		ChunkSize: cfg.ChunkSize, VerifyInterval: 24 * time.Hour, Prefetch: cache.DefaultPrefetch, Logger: d.log,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	d.c, d.cfg = c, cfg
	// index.db may hold the root's listing (the names) of the last run's config,
	// and the trees of names that led to other origins then.
	c.Invalidate("")
	last := readOwnerInfo(cfg.CacheDir).Routes
	now := d.routes()
	for name, was := range last {
		if now[name] != was {
			c.InvalidateTree(name)
			d.log.Info("origin's metadata from the last run forgotten: its name now leads elsewhere", "origin", name)
		}
	}
	d.writeOwnerInfo()
	st := c.Status()
	d.log.Info("cache opened", "dir", cfg.CacheDir, "objects", st.Objects, "used", st.UsedBytes, "limit", st.LimitBytes)
	d.setServed(cfg)
	var serveStatus func() control.ServeStatus
	listen := ""
	if cfg.Serve != nil || cfg.Metrics != "" {
		f := &serverFlags{Transfer: "auto", MaxConns: 10000, IdleTimeout: 60 * time.Second, NotsentLowat: 64 << 10, NotsentLowatSendfile: 32 << 10, Metrics: cfg.Metrics, AccessLogFormat: "combined"}
		if cfg.Serve != nil {
			f.Transfer, f.AuthTokenFile, listen = cfg.Serve.Transfer, cfg.Serve.AuthTokenFile, cfg.Serve.Listen
			f.group = peers.group
		}
		srv, err := f.startWith(listen, c, d.log, func(o *serve.Options) { o.Hidden = d.hidden })
		if err != nil {
			return err
		}
		defer srv.Close()
		d.srv = srv
		if listen != "" {
			serveStatus = srv.ServeStatus
		}
	}
	ctl, err := control.Listen(c, serveStatus, d.log)
	if err != nil {
		return err
	}
	defer ctl.Close()
	defer d.register(registry.Entry{Command: "daemon", CacheDir: realPath(cfg.CacheDir), Origin: d.file, Listen: listen})()
	for _, o := range cfg.Origins {
		if o.Mount == "" {
			continue
		}
		if err := d.mount(o); err != nil {
			d.unmountAll()
			return err
		}
	}
	stopWatchdog := notifyReady(d.log, d.c, d.summary())
	defer stopWatchdog()
	for {
		select {
		case <-hup:
			d.reload()
		case f := <-d.later:
			f()
		case m := <-d.gone:
			if cur := d.mounts[m.o.Name]; cur == m {
				// Unmounted by someone else (umount): the origin stays routed and
				// served; the next reload mounts it again.
				d.log.Warn("mount went away", "origin", m.o.Name, "mountpoint", m.o.Mount)
				delete(d.mounts, m.o.Name)
			}
		case s := <-sig:
			d.log.Info("stopping", "signal", s.String())
			notifyStopping(d.log, s.String())
			bounded(sig, d.log, d.detachAll)
			d.unmountAll()
			return nil
		}
	}
}

// route gives origin o its route in the mux, and makes the cache forget what it
// knew of NAME and the root's listing (the names): a mount of NAME looks NAME up in
// the root's listing at once, and one cached before the route would lack it.
func (d *daemon) route(o daemonOrigin) error {
	hideCredentials(o.URL)
	oo, err := newDaemonOrigin(o)
	if err != nil {
		return fmt.Errorf("origin %s: %w", o.Name, err)
	}
	if err := d.mux.Set(o.Name, oo, o.MetadataTTL); err != nil {
		return err
	}
	if d.c != nil {
		d.c.InvalidateTree(o.Name) // what the old route's origin said is no answer now
	}
	return nil
}

// routes returns each route's name and the origin it leads to, as the origin names
// itself (the name its objects are keyed by).
func (d *daemon) routes() map[string]string {
	m := map[string]string{}
	for _, name := range d.mux.Names() {
		if on, _, ok := d.mux.Route(name); ok {
			m[name] = on
		}
	}
	return m
}

// writeOwnerInfo records the cache's sizes for the cache verbs and the routes for the
// next start.
func (d *daemon) writeOwnerInfo() {
	cfg := d.cfg
	if err := writeOwnerInfo(cfg.CacheDir, ownerInfo{CacheSize: cfg.CacheSize, ChunkSize: cfg.ChunkSize, Config: realPath(d.file), Routes: d.routes()}); err != nil {
		d.log.Warn("cannot record the cache's sizes and routes", "dir", cfg.CacheDir, "err", err)
	}
}

// checkOrigins asks each origin for its root, all at once and bounded: one that does
// not answer is a warning (the daemon serves what is cached of it, and the rest), one
// that answers wrongly too, with what is wrong.
func (d *daemon) checkOrigins(origins []daemonOrigin) {
	var wg sync.WaitGroup
	// One deadline for all: many origins down cost the start 10 s, not 10 s each
	// per maxOriginChecks; those not reached by then are checked by their first use.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sem := make(chan struct{}, maxOriginChecks)
	for _, o := range origins {
		oo, ok := d.mux.Get(o.Name)
		if !ok {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			d.log.Warn("origin not checked at the start: the check of the others took its time", "origin", o.Name)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			e, err := origin.CheckRoot(ctx, oo)
			switch {
			case err != nil:
				d.log.Warn("origin does not answer; serving what is cached of it until it does", "origin", o.Name, "url", control.Redact(o.URL), "err", err)
			case !e.IsDir:
				d.log.Warn("origin is not a directory", "origin", o.Name, "url", control.Redact(o.URL))
			}
		}()
	}
	wg.Wait()
}

func (d *daemon) setServed(cfg *daemonConfig) {
	m := map[string]bool{}
	for _, o := range cfg.Origins {
		if o.Serve {
			m[o.Name] = true
		}
	}
	d.served.Store(&m)
}

// hidden is the server's Options.Hidden: the root is shown, and below it only the
// origins with serve: true.
func (d *daemon) hidden(p string) bool {
	if p == "" {
		return false
	}
	name, _, _ := strings.Cut(p, "/")
	return !(*d.served.Load())[name]
}

// register records an instance in the registry; a failure costs only lookups.
func (d *daemon) register(e registry.Entry) func() {
	unregister, err := registry.Register(registry.Dir(), e)
	if err != nil {
		d.log.Warn("not listed in cachegate status, and cache verbs need --cache-dir", "err", err)
		return func() {}
	}
	return unregister
}

// mount mounts origin o's subtree at its mount point.
func (d *daemon) mount(o daemonOrigin) error {
	// A dead cachegate mount here is a killed one's (this daemon's last run, killed
	// by the watchdog or -9): under Restart=on-failure nobody is there to unmount
	// it, so it is detached rather than the start refused for good.
	if mounted, fstype := isMountpoint(o.Mount); mounted && fstype == cachegateFSType && probeMount(o.Mount) == mountDead {
		d.log.Warn("detaching the dead mount of a killed cachegate", "origin", o.Name, "mountpoint", o.Mount)
		if err := unix.Unmount(o.Mount, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("origin %s: %s is a dead mount and cannot be detached (%v): run cachegate unmount %s", o.Name, o.Mount, err, o.Mount)
		}
	}
	if err := checkMountpoint(o.Mount); err != nil {
		return fmt.Errorf("origin %s: %w", o.Name, err)
	}
	if err := checkUserMount(o.Mount, o.AllowOther); err != nil {
		return fmt.Errorf("origin %s: %w", o.Name, err)
	}
	ttl := o.MetadataTTL
	if ttl <= 0 {
		ttl = cache.DefaultTTL
	}
	opts := fusefs.Options{TTL: ttl, AllowOther: o.AllowOther, Logger: d.log.With("origin", o.Name), Root: o.Name, FsName: control.Redact(o.URL), UID: o.UID, GID: o.GID}
	m := &daemonMount{o: o, done: make(chan struct{})}
	// Registered before it appears, as mount does, for a script that waits for it.
	m.unregister = d.register(registry.Entry{Command: "daemon", CacheDir: realPath(d.cfg.CacheDir), Origin: control.Redact(o.URL), Mountpoint: realPath(o.Mount), Root: o.Name})
	server, err := fusefs.Mount(o.Mount, d.c, opts)
	if err != nil {
		// A mount whose start failed after the kernel made it (its root did not
		// answer) would stay as a dead one in the way of the next try: this process
		// lives on, unlike mount's.
		if mounted, fstype := isMountpoint(o.Mount); mounted && fstype == cachegateFSType {
			unix.Unmount(o.Mount, unix.MNT_DETACH)
		}
		m.unregister()
		return fmt.Errorf("origin %s: mount %s: %v", o.Name, o.Mount, err)
	}
	m.server = server
	go func() {
		server.Wait()
		m.unregister()
		close(m.done)
		d.gone <- m
	}()
	d.mounts[o.Name] = m
	d.log.Info("mounted", "origin", o.Name, "url", control.Redact(o.URL), "mountpoint", o.Mount)
	return nil
}

// unmount asks m to go; when it is busy, it is retried every daemonRetry (logged once)
// until its files close, and then is called (on run's goroutine, through d.later),
// after the origins configured at m's mount point meanwhile are mounted there.
func (d *daemon) unmount(m *daemonMount, then func()) {
	m.stopping.Store(true)
	if err := m.server.Unmount(); err == nil {
		<-m.done
		then()
		return
	}
	d.log.Warn("mount busy: it stays until its files close (retrying)", "origin", m.o.Name, "mountpoint", m.o.Mount, "every", daemonRetry)
	d.going[m] = true
	next := then
	then = func() {
		delete(d.going, m)
		next()
		d.unrouteIfGone(m.o.Name) // removed by a later reload while it was busy
		d.mountAt(m.o.Mount)
	}
	go func() {
		for {
			select {
			case <-m.done:
			case <-time.After(daemonRetry):
				if err := m.server.Unmount(); err != nil {
					continue
				}
				<-m.done
			}
			d.later <- then
			return
		}
	}()
}

// unmountAll unmounts every mount at a stop, the busy ones of removed origins too;
// a busy one is detached (its open files get errors): the process is going.
func (d *daemon) unmountAll() {
	all := maps.Clone(d.mounts)
	for m := range d.going {
		all["removed "+m.o.Name+" "+m.o.Mount] = m
	}
	for name, m := range all {
		if err := m.server.Unmount(); err != nil {
			d.log.Warn("mount busy; detaching it", "origin", name, "mountpoint", m.o.Mount, "err", err)
			unix.Unmount(m.o.Mount, unix.MNT_DETACH)
		}
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
		}
		d.log.Info("unmounted", "origin", name, "mountpoint", m.o.Mount)
	}
}

// detachAll is bounded's last resort: detach whatever is still mounted.
func (d *daemon) detachAll() {
	for _, m := range append(slices.Collect(maps.Values(d.mounts)), slices.Collect(maps.Keys(d.going))...) {
		if mounted, fstype := isMountpoint(m.o.Mount); mounted && fstype == cachegateFSType {
			unix.Unmount(m.o.Mount, unix.MNT_DETACH)
		}
	}
}

// summary is the STATUS= line of a running daemon.
func (d *daemon) summary() string {
	names := make([]string, 0, len(d.mounts))
	for n := range d.mounts {
		names = append(names, n)
	}
	sort.Strings(names)
	s := fmt.Sprintf("%s, %d mounted", plural(len(d.cfg.Origins), "origin"), len(d.mounts))
	if d.cfg.Serve != nil {
		s += ", serving on " + d.cfg.Serve.Listen
	}
	return s
}

// reload rereads the config (SIGHUP).
func (d *daemon) reload() {
	if err := sdnotify.Notify(sdnotify.ReloadingNow() + "\n" + sdnotify.Status("reloading "+d.file)); err != nil {
		d.log.Warn("cannot notify systemd", "err", err)
	}
	defer func() {
		if err := sdnotify.Notify(sdnotify.Ready + "\n" + sdnotify.Status(d.summary())); err != nil {
			d.log.Warn("cannot notify systemd", "err", err)
		}
	}()
	cfg, err := loadDaemonConfig(d.file)
	if err != nil {
		var ce *configError
		msg := err.Error()
		if errors.As(err, &ce) {
			msg = strings.Join(ce.problems, "; ")
		}
		d.log.Error("config refused; the running one stays", "file", d.file, "problems", msg)
		return
	}
	old := d.cfg
	if old.CacheDir != cfg.CacheDir || old.CacheSize != cfg.CacheSize || old.MinFree != cfg.MinFree || old.ChunkSize != cfg.ChunkSize {
		d.log.Warn("the cache section changed: it applies at the next start", "file", d.file)
	}
	if !old.Serve.same(cfg.Serve) || old.Metrics != cfg.Metrics {
		d.log.Warn("the serve or metrics section changed: it applies at the next start", "file", d.file)
	}
	// Routes first: a new origin must be refused before anything changes.
	was := map[string]daemonOrigin{}
	for _, o := range old.Origins {
		was[o.Name] = o
	}
	now := map[string]daemonOrigin{}
	var added, changed, removed []string
	for _, o := range cfg.Origins {
		now[o.Name] = o
		prev, ok := was[o.Name]
		switch {
		case !ok:
			added = append(added, o.Name)
		case !prev.same(o):
			changed = append(changed, o.Name)
		}
	}
	for _, o := range old.Origins {
		if _, ok := now[o.Name]; !ok {
			removed = append(removed, o.Name)
		}
	}
	// What applies at the next start stays as it runs (and is warned of again at
	// each reload until then).
	cfg.CacheDir, cfg.CacheSize, cfg.MinFree, cfg.ChunkSize = old.CacheDir, old.CacheSize, old.MinFree, old.ChunkSize
	cfg.Serve, cfg.Metrics = old.Serve, old.Metrics
	d.cfg = cfg
	d.setServed(cfg) // removed origins are hidden from the server at once
	for _, name := range removed {
		name := name
		if m := d.mounts[name]; m != nil {
			delete(d.mounts, name)
			d.unmount(m, func() { d.unrouteIfGone(name); d.log.Info("unmounted", "origin", name, "mountpoint", m.o.Mount) })
		} else {
			d.unrouteIfGone(name)
		}
		d.log.Info("origin removed", "origin", name)
	}
	// The routes of changed URLs go before any is set: an origin may take the URL
	// another one leaves (two swapped), and the mux routes a URL once. (Those of
	// other changes are replaced in place: their open files read on.)
	for _, name := range changed {
		if now[name].URL != was[name].URL {
			d.mux.Remove(name)
		}
	}
	for _, name := range changed {
		o := now[name]
		if err := d.route(o); err != nil {
			d.log.Error("origin not changed; a reload retries", "origin", name, "err", err)
			if err := d.route(was[name]); err != nil {
				d.log.Error("origin has no route until a reload", "origin", name, "err", err)
			}
			d.keep(name, was[name], true)
			continue
		}
		if m := d.mounts[name]; m != nil {
			delete(d.mounts, name)
			d.unmount(m, func() { d.remount(name) })
		} else {
			d.remount(name)
		}
		d.log.Info("origin changed", "origin", name)
	}
	for _, name := range added {
		o := now[name]
		if err := d.route(o); err != nil {
			d.log.Error("origin not added; a reload retries", "origin", name, "err", err)
			d.keep(name, daemonOrigin{}, false)
			continue
		}
		if n := d.c.Reroute(); n > 0 {
			d.log.Info("cached objects of the origin found", "origin", name, "objects", n)
		}
		d.remount(name)
		d.log.Info("origin added", "origin", name)
	}
	// Untouched origins whose mount is missing (unmounted by hand, or its mount
	// failed at an earlier reload) are mounted again: a reload of the same file
	// brings the config's mounts back. remount skips those mounted or waiting.
	for _, o := range d.cfg.Origins {
		if o.Mount != "" && d.mounts[o.Name] == nil && !slices.Contains(changed, o.Name) && !slices.Contains(added, o.Name) {
			d.remount(o.Name)
		}
	}
	d.c.Invalidate("") // the root's listing is the names
	d.writeOwnerInfo()
	d.log.Info("config reloaded", "file", d.file, "added", len(added), "changed", len(changed), "removed", len(removed))
}

// keep makes the running config's origin name what runs when its new route was
// refused (prev, or none), so that the next reload of the file tries it again.
func (d *daemon) keep(name string, prev daemonOrigin, ok bool) {
	cfg := *d.cfg
	cfg.Origins = slices.DeleteFunc(slices.Clone(cfg.Origins), func(o daemonOrigin) bool { return o.Name == name })
	if ok {
		cfg.Origins = append(cfg.Origins, prev)
	}
	d.cfg = &cfg
	d.setServed(&cfg)
}

// remount mounts origin name as the config now has it, if it has a mount; when a
// busy mount of a removed or changed origin still holds that mount point, it is
// mounted once that one goes (mountAt).
func (d *daemon) remount(name string) {
	for _, o := range d.cfg.Origins {
		if o.Name == name && o.Mount != "" && d.mounts[name] == nil {
			if d.busyAt(o.Mount) {
				d.log.Info("origin waits for the busy mount it replaces to go", "origin", name, "mountpoint", o.Mount)
				continue
			}
			if err := d.mount(o); err != nil {
				d.log.Error("origin not mounted", "origin", name, "err", err)
			}
		}
	}
}

// busyAt reports whether a going mount still holds mount point mp.
func (d *daemon) busyAt(mp string) bool {
	for m := range d.going {
		if m.o.Mount == mp {
			return true
		}
	}
	return false
}

// mountAt mounts the origins of the config at mount point mp that are not mounted:
// those that waited for a going mount there.
func (d *daemon) mountAt(mp string) {
	for _, o := range d.cfg.Origins {
		if o.Mount == mp && d.mounts[o.Name] == nil {
			d.remount(o.Name)
		}
	}
}

// unrouteIfGone removes the route of name unless the config has it again, or a
// busy mount of it still reads through it (its going unroutes it then).
func (d *daemon) unrouteIfGone(name string) {
	for _, o := range d.cfg.Origins {
		if o.Name == name {
			return
		}
	}
	for m := range d.going {
		if m.o.Name == name {
			return
		}
	}
	d.mux.Remove(name)
	d.c.InvalidateTree(name)
	d.writeOwnerInfo()
}
