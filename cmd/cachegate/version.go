package main

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/alecthomas/kong"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise the
// module version from the build info is used (a tag for `go install …@v1.2.3`).
var version = "dev"

// buildVersion is what `cachegate version` prints: enough to tell which code a bug
// report is about.
type buildVersion struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"` // VCS commit the binary was built from
	Time     string `json:"time,omitempty"`     // commit time
	Dirty    bool   `json:"dirty"`              // built from a tree with uncommitted changes
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// versionOf reads bi (nil when the binary has no build info). The ldflags version
// wins over the module's, which is "(devel)" for a build from a checkout.
func versionOf(bi *debug.BuildInfo, ldflags string) buildVersion {
	v := buildVersion{Version: ldflags, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		return v
	}
	if ldflags == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		v.Go = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Dirty = s.Value == "true"
		}
	}
	return v
}

func currentVersion() buildVersion {
	bi, _ := debug.ReadBuildInfo()
	return versionOf(bi, version)
}

// String is the one line of --version: "cachegate v1.2.3 (0123456789ab, dirty) go1.26.8 linux/amd64".
func (v buildVersion) String() string {
	s := "cachegate " + v.Version
	if v.Revision != "" {
		rev := v.Revision[:min(12, len(v.Revision))]
		if v.Dirty {
			rev += ", dirty"
		}
		s += " (" + rev + ")"
	}
	return s + " " + v.Go + " " + v.Platform
}

type versionCmd struct {
	JSON bool `help:"Print JSON: version, revision, time, dirty, go, platform." env:"-"`
}

func (c *versionCmd) Run() error {
	v := currentVersion()
	if c.JSON {
		return printJSON(v)
	}
	fmt.Println(v)
	return nil
}

// versionFlag is --version: it prints the version line and exits 0 before the rest of
// the command line is checked, so `cachegate --version` needs no command.
type versionFlag bool

func (versionFlag) BeforeReset(app *kong.Kong) error {
	fmt.Fprintln(app.Stdout, currentVersion())
	app.Exit(0)
	return nil
}

type helpCmd struct {
	Command []string `arg:"" optional:"" help:"The command to describe, e.g. mount or cache ls (default: all)."`
}

// Run prints the help of the command named, exactly as `cachegate COMMAND… --help` does.
func (h *helpCmd) Run(kctx *kong.Context) error {
	ctx, err := kong.Trace(kctx.Kong, h.Command)
	if err != nil {
		return err
	}
	if ctx.Error != nil {
		return usagef("help: no command %q: see cachegate help", strings.Join(h.Command, " "))
	}
	return ctx.PrintUsage(false)
}

// shortUsage writes the usage line of node and its commands, one line each: what a
// bare `cachegate` or `cachegate cache` prints instead of kong's truncated "expected
// one of" list.
func shortUsage(w io.Writer, node *kong.Node) {
	path := "cachegate"
	if node.Type != kong.ApplicationNode {
		path += " " + node.Path()
	}
	fmt.Fprintf(w, "Usage: %s <command> [flags]\n\n", path)
	if node.Help != "" {
		fmt.Fprintf(w, "%s\n\n", node.Help)
	}
	fmt.Fprintln(w, "Commands:")
	width := 0
	for _, c := range node.Children {
		width = max(width, len(c.Name))
	}
	for _, c := range node.Children {
		if !c.Hidden {
			fmt.Fprintf(w, "  %-*s  %s\n", width, c.Name, c.Help)
		}
	}
	fmt.Fprintf(w, "\nRun \"cachegate help %s\" for a command's flags.\n", strings.TrimPrefix(path+" COMMAND", "cachegate "))
}

// missingCommand reports the node whose command is missing when err is kong's
// "expected one of …" for a command line that stops at a group of commands.
func missingCommand(err error) *kong.Node {
	var pe *kong.ParseError
	if !errors.As(err, &pe) || pe.Context == nil || !strings.HasPrefix(pe.Error(), "expected one of ") {
		return nil
	}
	node := pe.Context.Selected()
	if node == nil {
		node = pe.Context.Model.Node
	}
	if len(node.Children) == 0 {
		return nil
	}
	return node
}
