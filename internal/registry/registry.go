// Package registry records the running cachegate instances, so that `cachegate status`
// can list them and a cache verb can find the cache of a mount without --cache-dir.
//
// Each owner of a cache directory (mount, serve, demo) writes one JSON file, named by
// its pid, in a directory of the user's: /run/cachegate as root,
// $XDG_RUNTIME_DIR/cachegate otherwise (both are emptied at boot). It writes the file
// under a temporary name and renames it into place, so readers never see half an
// entry, and removes it when it exits cleanly. An owner killed leaves its file: a
// reader ignores and removes an entry whose process is gone, telling a reused pid by
// the process's start time.
package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Entry is one running instance.
type Entry struct {
	Pid        int    `json:"pid"`
	ProcStart  uint64 `json:"proc_start"` // the process's start time in clock ticks since boot (/proc/PID/stat), to tell a reused pid
	Command    string `json:"command"`    // mount, serve or demo
	CacheDir   string `json:"cache_dir"`
	Origin     string `json:"origin"` // with credentials redacted
	Mountpoint string `json:"mountpoint,omitempty"`
	// Root is the directory of the cache's namespace the mount shows: a daemon's
	// mount of origin NAME shows NAME/ of its cache ("": all of it).
	Root    string    `json:"root,omitempty"`
	Listen  string    `json:"listen,omitempty"` // the HTTP server's address
	Started time.Time `json:"started"`
}

// Bounds on what a reader holds: the directory is the user's own, but a full or
// damaged one must not cost more than this.
const (
	maxEntries   = 4096
	maxEntrySize = 64 << 10
)

// Dir is the registry directory of this user: /run/cachegate for root,
// $XDG_RUNTIME_DIR/cachegate otherwise, and cachegate-UID in the temporary directory
// when there is no XDG_RUNTIME_DIR of this user's: none (no login session, e.g.
// under runuser or a cron job), or another user's that su or sudo passed on (root's
// /run/user/0). Register makes that directory 0700, and it and List refuse one that
// another user made or may write (checkDir): /tmp is everybody's.
func Dir() string {
	return dirFor(os.Geteuid(), os.Getenv("XDG_RUNTIME_DIR"), os.TempDir())
}

func dirFor(euid int, runtimeDir, tmp string) string {
	if euid == 0 {
		return "/run/cachegate"
	}
	if runtimeDir != "" && filepath.IsAbs(runtimeDir) {
		if fi, err := os.Stat(runtimeDir); err == nil && fi.IsDir() {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == euid {
				return filepath.Join(runtimeDir, "cachegate")
			}
		}
	}
	return filepath.Join(tmp, "cachegate-"+strconv.Itoa(euid))
}

// checkDir makes sure dir is a directory of this user's that nobody else may write
// (not a link someone planted), creating it when missing.
func checkDir(dir string, create bool) error {
	if create {
		mode := os.FileMode(0o700)
		if os.Geteuid() == 0 {
			mode = 0o755 // every user may list root's instances, as mountinfo shows the mounts
		}
		if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("instance registry %s: %w", dir, err)
		}
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("instance registry %s is not a directory", dir)
	case st != nil && int(st.Uid) != os.Geteuid():
		return fmt.Errorf("instance registry %s belongs to uid %d, not to this user", dir, st.Uid)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("instance registry %s is writable by others (mode %v)", dir, fi.Mode().Perm())
	}
	return nil
}

// Register writes e (its Pid and ProcStart filled in for this process) into dir and
// returns the function that removes it, for a clean exit.
func Register(dir string, e Entry) (unregister func(), err error) {
	if err := checkDir(dir, true); err != nil {
		return nil, err
	}
	e.Pid = os.Getpid()
	e.ProcStart, _ = procStart(e.Pid)
	if e.Started.IsZero() {
		e.Started = time.Now()
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return nil, err
	}
	// A daemon registers once for itself and once per mount: PID-ROOT.json (a
	// root is [a-z0-9_-]+, origin.ValidRouteName).
	base := strconv.Itoa(e.Pid)
	if e.Root != "" {
		if strings.ContainsAny(e.Root, "/.\x00") {
			return nil, fmt.Errorf("instance registry: root %q is not a name", e.Root)
		}
		base += "-" + e.Root
	}
	name := filepath.Join(dir, base+".json")
	// CreateTemp opens with O_EXCL: a file planted under the name is never written through.
	f, err := os.CreateTemp(dir, "."+strconv.Itoa(e.Pid)+".json.tmp-*")
	if err != nil {
		return nil, fmt.Errorf("instance registry: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr == nil {
		werr = os.Chmod(f.Name(), 0o644)
	}
	if werr == nil {
		werr = os.Rename(f.Name(), name)
	}
	if werr != nil {
		os.Remove(f.Name())
		return nil, fmt.Errorf("instance registry: %w", werr)
	}
	return func() { os.Remove(name) }, nil
}

// List returns the live instances in dir, oldest first, and removes the entries of
// processes that are gone. A missing directory is an empty registry.
func List(dir string) ([]Entry, error) {
	if err := checkDir(dir, false); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(maxEntries)
	d.Close()
	if err != nil && err != io.EOF {
		return nil, err
	}
	var out []Entry
	for _, n := range names {
		p := filepath.Join(dir, n)
		pidText, ok := strings.CutSuffix(n, ".json")
		if tmp, _, isTmp := strings.Cut(n, ".json.tmp-"); isTmp {
			// A writer killed between create and rename leaves its temporary file.
			if pid, err := strconv.Atoi(strings.TrimPrefix(tmp, ".")); err == nil && pid > 0 {
				if _, err := procStart(pid); err != nil {
					os.Remove(p)
				}
			}
			continue
		}
		pidText, _, _ = strings.Cut(pidText, "-") // PID-ROOT.json: a daemon's mount
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 {
			continue // not an entry
		}
		e, err := readEntry(p)
		if err != nil || e.Pid != pid {
			continue // being replaced, or not ours to judge
		}
		if !Alive(e) {
			os.Remove(p) // stale: its process was killed
			continue
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].Pid < out[j].Pid
	})
	return out, nil
}

func readEntry(p string) (Entry, error) {
	f, err := os.Open(p)
	if err != nil {
		return Entry{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEntrySize+1))
	if err != nil {
		return Entry{}, err
	}
	if len(b) > maxEntrySize {
		return Entry{}, fmt.Errorf("%s is larger than %d bytes", p, maxEntrySize)
	}
	var e Entry
	err = json.Unmarshal(b, &e)
	return e, err
}

// Alive reports whether e's process still runs: its pid exists and, when the entry
// recorded one, started at the same time (else the pid was reused).
func Alive(e Entry) bool {
	start, err := procStart(e.Pid)
	if err != nil {
		return false
	}
	return e.ProcStart == 0 || start == e.ProcStart
}

// procStart reads a process's start time, field 22 of /proc/PID/stat.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: count after its last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22 is the 20th after the name
}

// ByMountpoint returns the entry mounted at mp, a cleaned absolute path.
func ByMountpoint(entries []Entry, mp string) (Entry, bool) {
	for _, e := range entries {
		if e.Mountpoint != "" && e.Mountpoint == mp {
			return e, true
		}
	}
	return Entry{}, false
}
