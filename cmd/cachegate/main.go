// Command cachegate mounts a remote origin (a local directory or a web server) as a
// read-only FUSE filesystem through a persistent, chunked local disk cache.
//
// Run `cachegate demo` for a first look and `cachegate --help` for the commands.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/origin"
	"github.com/cachegate/cachegate/internal/units"
)

type globals struct {
	LogLevel string      `help:"Log level: debug, info, warn or error (default: ${default})." default:"info" enum:"debug,info,warn,error" placeholder:"LEVEL"`
	Version  versionFlag `help:"Print the version and exit." env:"-"`
}

type cli struct {
	globals
	Mount   mountCmd   `cmd:"" help:"Mount ORIGIN read-only at MOUNTPOINT through the disk cache (runs in the foreground)."`
	Unmount unmountCmd `cmd:"" help:"Unmount a cachegate mount. One whose process died is detached even while files there are open."`
	Serve   serveCmd   `cmd:"" help:"Serve ORIGIN over HTTP through the disk cache (sendfile, mmap or copy per file)."`
	Daemon  daemonCmd  `cmd:"" help:"Run the origins of a config file, mounted and served, with one cache (SIGHUP rereads it)."`
	Cache   cacheCmd   `cmd:"" help:"Manage the cache: ls, stat, warm, pin, unpin, evict, verify, gc, clear (also while a mount or server runs)."`
	Status  statusCmd  `cmd:"" help:"Show the cache's use, hits and misses, and the server's traffic by transfer method."`
	Nic     nicCmd     `cmd:"" help:"Report whether interfaces do scatter-gather DMA, i.e. whether sendfile is zero-copy."`
	Bench   benchCmd   `cmd:"" help:"Measure transfer methods on this machine."`
	Demo    demoCmd    `cmd:"" help:"Start a sample origin, mount it under a temporary directory and show what to try."`
	Version versionCmd `cmd:"" help:"Print the version: module version, VCS revision, Go version."`
	Help    helpCmd    `cmd:"" help:"Show the help of a command, e.g. cachegate help cache ls."`
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// Size is a byte count flag: "512KiB", "64MiB", "10GiB", "10G".
type Size int64

func (s *Size) UnmarshalText(b []byte) error {
	n, err := units.ParseSize(string(b))
	*s = Size(n)
	return err
}

// FreeSpace is a --min-free value: a size or a percentage of the filesystem.
type FreeSpace struct {
	Bytes int64
	Pct   float64
}

func (f *FreeSpace) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if p, ok := strings.CutSuffix(s, "%"); ok {
		var v float64
		if _, err := fmt.Sscanf(p, "%g", &v); err != nil || v < 0 || v >= 100 {
			return fmt.Errorf("invalid percentage %q: use e.g. 5%%", s)
		}
		*f = FreeSpace{Pct: v}
		return nil
	}
	n, err := units.ParseSize(s)
	*f = FreeSpace{Bytes: n}
	return err
}

func defaultCacheDir() string {
	if os.Geteuid() == 0 {
		return "/var/cache/cachegate"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "cachegate")
	}
	// No HOME either: one per user, as the registry's fallback (another user's would
	// be unwritable, or worse, shared).
	return filepath.Join(os.TempDir(), "cachegate-"+strconv.Itoa(os.Geteuid()))
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level))
	return slog.New(scrubHandler{slog.NewTextHandler(logOutput, &slog.HandlerOptions{Level: l})})
}

// logOutput is where the log goes: standard error, or a mount helper's log.
var logOutput = helperLog()

func main() {
	if args, ok := isMountHelper(os.Args); ok {
		os.Exit(mountHelper(args))
	}
	args := os.Args[1:]
	if a, ok := takeHelperArgs(); ok { // a mount started by the mount helper
		args = a
	}
	os.Exit(run(args))
}

func run(args []string) int {
	var c cli
	parser, err := newParser(&c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cachegate:", err)
		return 1
	}
	code := 0
	// Started by the mount helper: it waits on a pipe for "ready" or this run's error.
	takeReadyPipe()
	failure := ""
	defer func() {
		if failure == "" {
			failure = fmt.Sprintf("cachegate exited with status %d before the mount was ready", code)
		}
		tellHelper(failure)
	}()
	func() {
		defer func() {
			if r := recover(); r != nil {
				if ec, ok := r.(exitCode); ok {
					code = int(ec)
					return
				}
				panic(r)
			}
		}()
		if len(args) == 0 {
			shortUsage(os.Stderr, parser.Model.Node)
			code = 2
			return
		}
		ctx, err := parser.Parse(args)
		if node := missingCommand(err); node != nil {
			shortUsage(os.Stderr, node)
			code = 2
			return
		}
		if err != nil {
			failure = fmt.Sprintf("%v (see cachegate --help)", err)
			fmt.Fprintf(os.Stderr, "cachegate: %v (see cachegate --help)\n", err)
			code = 2
			return
		}
		slog.SetDefault(newLogger(c.LogLevel))
		if err := ctx.Run(&c.globals); err != nil {
			failure = scrub(oneLine(err))
			fmt.Fprintln(os.Stderr, "cachegate:", failure)
			code = 1
			var ue *usageError
			var oe *origin.UsageError
			if errors.As(err, &ue) || errors.As(err, &oe) {
				code = 2
			}
		}
	}()
	return code
}

// flagGroups are the sections of every command's flags in --help, in this order
// (kong lists groups in order of first appearance, so each command's struct declares
// its flags in this order too; help_test.go checks it). The global flags and a
// command's own one-shot flags (--json, --yes, …) stay in the first, untitled section.
var flagGroups = []kong.Group{
	{Key: "cache", Title: "Cache flags:"},
	{Key: "origin", Title: "Origin flags:"},
	{Key: "mount", Title: "Mount flags:"},
	{Key: "server", Title: "Server flags:"},
	{Key: "logging", Title: "Logging flags:"},
}

// newParser builds the command line's kong model into c.
func newParser(c *cli) (*kong.Kong, error) {
	return kong.New(c, append(rangeMappers(),
		kong.Name("cachegate"),
		kong.Description("A caching file gateway: mount web servers, S3 buckets and directories read-only, or serve them over HTTP, through a persistent, chunked local disk cache."),
		kong.ExplicitGroups(flagGroups),
		kong.DefaultEnvars("CACHEGATE"),
		kong.Vars{"default_cache_dir": defaultCacheDir(), "default_prefetch": strconv.Itoa(cache.DefaultPrefetch)},
		kong.Exit(func(code int) { panic(exitCode(code)) }),
	)...)
}

type exitCode int

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
