package main

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersionAndHelp: --version and `version` print the build's version and Go
// version (exit 0), `version --json` the same as fields, `help [COMMAND…]` the help of
// that command (exit 0), and a bare cachegate the short usage with every command
// (exit 2), as kong users expect.
func TestVersionAndHelp(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, errOut, code := runCaptured(t, args...)
		if code != 0 || !strings.HasPrefix(out, "cachegate ") || !strings.Contains(out, runtime.Version()) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 0 and the version with %s", args, code, out, errOut, runtime.Version())
		}
	}

	out, errOut, code := runCaptured(t, "version", "--json")
	var v buildVersion
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Go != runtime.Version() || v.Version == "" {
		t.Errorf("version --json: exit %d, %v, %+v (stderr %q)", code, err, v, errOut)
	}

	out, errOut, code = runCaptured(t, "help")
	if code != 0 || !strings.Contains(out, "Usage: cachegate <command>") || !strings.Contains(out, "mount") || !strings.Contains(out, "demo") {
		t.Errorf("help: exit %d, stdout %q, stderr %q; want exit 0 and the full help", code, out, errOut)
	}
	out, errOut, code = runCaptured(t, "help", "cache", "ls")
	want, _, _ := runCaptured(t, "cache", "ls", "--help")
	if code != 0 || out != want || !strings.Contains(out, "--cached-only") {
		t.Errorf("help cache ls: exit %d, stdout %q, stderr %q; want exit 0 and cache ls --help's text %q", code, out, errOut, want)
	}
	_, errOut, code = runCaptured(t, "help", "nope")
	if code != 2 || !strings.Contains(errOut, `"nope"`) {
		t.Errorf("help nope: exit %d, stderr %q; want exit 2 naming the unknown command", code, errOut)
	}

	out, errOut, code = runCaptured(t)
	if code != 2 || !strings.Contains(errOut, "Usage: cachegate <command>") || !strings.Contains(errOut, "cachegate help") {
		t.Errorf("bare cachegate: exit %d, stdout %q, stderr %q; want exit 2 and the short usage", code, out, errOut)
	}
	for _, cmd := range []string{"mount", "unmount", "serve", "cache", "status", "nic", "bench", "demo", "version", "help"} {
		if !strings.Contains(errOut, "\n  "+cmd+" ") {
			t.Errorf("bare cachegate: the short usage lacks %q:\n%s", cmd, errOut)
		}
	}
	_, errOut, code = runCaptured(t, "cache")
	if code != 2 || !strings.Contains(errOut, "Usage: cachegate cache <command>") || !strings.Contains(errOut, "\n  clear ") {
		t.Errorf("bare cachegate cache: exit %d, stderr %q; want exit 2 and the cache verbs", code, errOut)
	}
}

// TestBuildVersion: the version names the module version, the VCS revision and
// whether the tree was modified, from the build info.
func TestBuildVersion(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}, {Key: "vcs.time", Value: "2026-12-03T10:00:00Z"},
	}}
	v := versionOf(bi, "dev")
	if v.Version != "v1.2.3" || v.Revision != "0123456789abcdef0123" || !v.Dirty || v.Go != "go1.99.1" || v.Time != "2026-12-03T10:00:00Z" {
		t.Errorf("versionOf = %+v", v)
	}
	if s := v.String(); !strings.Contains(s, "v1.2.3") || !strings.Contains(s, "0123456789ab") || !strings.Contains(s, "dirty") || !strings.Contains(s, "go1.99.1") {
		t.Errorf("String() = %q", s)
	}
	// -ldflags "-X main.version=…" wins over the module's "(devel)".
	bi.Main.Version = "(devel)"
	if v := versionOf(bi, "v9.9.9"); v.Version != "v9.9.9" {
		t.Errorf("with -X main.version: %+v", v)
	}
	if v := versionOf(nil, "dev"); v.Version != "dev" || v.Go != runtime.Version() {
		t.Errorf("without build info: %+v", v)
	}
}
