package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
)

// cmdPackage is cachegate's main package, for the `go run …@latest` form of a hint.
const cmdPackage = "github.com/cachegate/cachegate/cmd/cachegate"

// hintEnv is what decides how the demo's hints name cachegate.
type hintEnv struct {
	exe     string // this binary (os.Executable)
	onPath  string // what PATH runs as "cachegate" ("" when nothing)
	srcDir  string // this package's source directory at build time ("" with -trimpath)
	modRoot string // the checkout holding it: the directory of its go.mod ("" when unknown)
}

func currentHintEnv() hintEnv {
	var e hintEnv
	e.exe, _ = os.Executable()
	e.onPath, _ = exec.LookPath("cachegate")
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		e.srcDir = filepath.Dir(file)
		for d, i := e.srcDir, 0; i < 64; d, i = filepath.Dir(d), i+1 { // bounded: a path has few parts
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				e.modRoot = d
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return e
}

// hintCommand is how the demo's hints start a cachegate command so that they run as
// printed, in another terminal: "cachegate" only when PATH finds this very binary.
// After `go run` the binary is in go-build's temporary directory, removed when the
// demo ends; the hint then builds it again from this checkout (go -C makes that work
// from any directory). Any other binary is named by its path.
func hintCommand(e hintEnv, same func(a, b string) bool) string {
	if isGoRunBinary(e.exe) {
		if e.srcDir == "" || e.modRoot == "" {
			return "go run " + cmdPackage + "@latest"
		}
		rel, err := filepath.Rel(e.modRoot, e.srcDir)
		if err != nil || strings.HasPrefix(rel, "..") {
			return "go run " + cmdPackage + "@latest"
		}
		return "go -C " + shellQuote(e.modRoot) + " run ./" + filepath.ToSlash(rel)
	}
	if e.onPath != "" && same(e.onPath, e.exe) {
		return "cachegate"
	}
	if e.exe == "" {
		return "cachegate"
	}
	return shellQuote(e.exe)
}

// isGoRunBinary reports whether exe is a binary `go run` built: $WORK/b001/exe/NAME,
// with $WORK a go-build* directory under $GOTMPDIR or the system's temporary directory.
func isGoRunBinary(exe string) bool {
	for _, part := range strings.Split(filepath.ToSlash(filepath.Dir(exe)), "/") {
		if strings.HasPrefix(part, "go-build") {
			return true
		}
	}
	return false
}

// sameFile reports whether two paths name one file (PATH may reach it through a link).
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_./:@%+=,-]+$`)

// shellQuote quotes s for a POSIX shell when it needs it, so that a printed command
// can be pasted as is.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
