package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/control"
	"github.com/cachegate/cachegate/internal/registry"
)

// registerInstance records this owner of c in the instance registry (see package
// registry) and returns what removes the record at a clean exit. A registry that
// cannot be written costs only the lookups it serves: a warning, and the mount or
// server runs.
func registerInstance(command string, c *cache.Cache, mountpoint, listen string, log *slog.Logger) func() {
	if mountpoint != "" {
		mountpoint = realPath(mountpoint)
	}
	unregister, err := registry.Register(registry.Dir(), registry.Entry{
		Command:    command,
		CacheDir:   realPath(c.Dir()),
		Origin:     control.Redact(c.Origin().String()),
		Mountpoint: mountpoint,
		Listen:     listen,
	})
	if err != nil {
		log.Warn("not listed in cachegate status, and cache verbs need --cache-dir", "err", err)
		return func() {}
	}
	return unregister
}

// realPath is p absolute with its links resolved, as mountinfo names mount points.
func realPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	return p
}

// liveInstances lists the running instances; an unreadable registry is an empty one
// (the verbs then fall back to the default cache dir, as before registries).
func liveInstances() []registry.Entry {
	l, err := registry.List(registry.Dir())
	if err != nil {
		fmt.Fprintln(os.Stderr, "cachegate: warning:", err)
	}
	return l
}

// cacheDirFor is the cache dir a verb works on: --cache-dir when given; else that of
// the mount holding a PATH argument; else that of the one running instance; else the
// default. With several instances running and nothing to choose by, it asks.
func cacheDirFor(flag string, args []string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	var mounts []string
	for _, a := range args {
		if filepath.IsAbs(a) {
			if mp := cachegateMountOf(filepath.Clean(a)); mp != "" {
				mounts = append(mounts, mp)
			}
		}
	}
	live := liveInstances()
	if len(mounts) == 0 {
		// NAME:PATH names an origin of a daemon: with one daemon running, its cache.
		for _, a := range args {
			if daemonPathRE.MatchString(a) {
				if dir, ok := onlyDaemon(live); ok {
					return dir, nil
				}
			}
		}
	}
	return pickCacheDir(live, mounts, defaultCacheDir())
}

// onlyDaemon is the cache dir of the one daemon among live, if one alone runs.
func onlyDaemon(live []registry.Entry) (string, bool) {
	dir := ""
	for _, e := range live {
		if e.Command != "daemon" {
			continue
		}
		if dir != "" && dir != e.CacheDir {
			return "", false
		}
		dir = e.CacheDir
	}
	return dir, dir != ""
}

// pickCacheDir chooses among the live instances: mounts are the mount points that
// hold the verb's PATH arguments.
func pickCacheDir(live []registry.Entry, mounts []string, def string) (string, error) {
	if len(mounts) > 0 {
		mp := mounts[0]
		for _, other := range mounts[1:] {
			if other != mp {
				return "", usagef("the paths are in two cachegate mounts, %s and %s: give them one at a time", mp, other)
			}
		}
		e, ok := registry.ByMountpoint(live, mp)
		if !ok {
			return "", usagef("%s is a cachegate mount this user's cachegate did not register (another user's, or an older cachegate): give its --cache-dir", mp)
		}
		return e.CacheDir, nil
	}
	// A daemon registers once for itself and once per mount, all on one cache dir.
	dirs := map[string]bool{}
	for _, e := range live {
		dirs[e.CacheDir] = true
	}
	switch len(dirs) {
	case 0:
		return def, nil
	case 1:
		return live[0].CacheDir, nil
	}
	var b strings.Builder
	for i, e := range live {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s)", e.CacheDir, instancePlace(e))
	}
	return "", usagef("%d cachegate instances are running; choose one with --cache-dir or a path inside its mount: %s", len(live), b.String())
}

// instancePlace says where an instance is reached: its mount point, its server, or both.
func instancePlace(e registry.Entry) string {
	var p []string
	if e.Mountpoint != "" {
		p = append(p, "mounted at "+e.Mountpoint)
	}
	if e.Listen != "" {
		p = append(p, "serving "+e.Listen)
	}
	if len(p) == 0 {
		return e.Command + " pid " + fmt.Sprint(e.Pid)
	}
	return strings.Join(p, ", ")
}

// printInstances is `cachegate status` without --cache-dir: every running instance.
func printInstances(asJSON bool) error {
	live := liveInstances()
	if asJSON {
		if live == nil {
			live = []registry.Entry{}
		}
		return printJSON(live)
	}
	if len(live) == 0 {
		fmt.Println("no cachegate is running (cachegate status --cache-dir DIR shows a cache's use)")
		return nil
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PID\tCOMMAND\tMOUNTPOINT\tLISTEN\tCACHE DIR\tORIGIN\tSTARTED")
	for _, e := range live {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Pid, e.Command, orDash(e.Mountpoint), orDash(e.Listen),
			e.CacheDir, control.Redact(e.Origin), e.Started.Local().Format(time.DateTime))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Println("\ncachegate status --cache-dir DIR shows one's use, hits and traffic.")
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
