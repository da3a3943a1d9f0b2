package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// flagGroupOrder is the order of the flag groups in every command's help.
var flagGroupOrder = []string{"cache", "origin", "mount", "server", "logging"}

// oneShotFlags are flags of one invocation: an environment variable for them, set in a
// shell profile, would change every later command (CACHEGATE_YES would skip `cache
// clear`'s question), so they have none.
var oneShotFlags = []string{"yes", "json", "to", "parallel", "force", "repair", "cached-only", "all", "origin", "version"}

// genericEnvs are names too generic to set in a shell profile without surprises.
var genericEnvs = []string{"YES", "JSON", "TO", "SIZE", "DIR", "ADDR", "FILES", "CONNS", "PARALLEL", "FORCE",
	"REPAIR", "ORIGIN", "ALL", "CACHED_ONLY", "LISTEN", "SERVE", "TRANSFER", "ALLOW_OTHER", "NO_PASSTHROUGH"}

func testModel(t *testing.T) *kong.Kong {
	t.Helper()
	var c cli
	k, err := newParser(&c)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// nodes returns every command of the model, the root included.
func nodes(n *kong.Node) []*kong.Node {
	out := []*kong.Node{n}
	for _, c := range n.Children {
		out = append(out, nodes(c)...)
	}
	return out
}

func findNode(t *testing.T, root *kong.Node, path string) *kong.Node {
	t.Helper()
	for _, n := range nodes(root) {
		if n.Path() == path {
			return n
		}
	}
	t.Fatalf("no command %q", path)
	return nil
}

// helpGroups is the order in which help shows n's flag groups: kong lists them in
// order of first appearance.
func helpGroups(n *kong.Node) []string {
	var out []string
	for _, level := range n.AllFlags(true) {
		for _, f := range level {
			if f.Group != nil && !slices.Contains(out, f.Group.Key) {
				out = append(out, f.Group.Key)
			}
		}
	}
	return out
}

func TestHelpModel(t *testing.T) {
	k := testModel(t)
	if h := k.Model.Help; !strings.Contains(h, "S3") || !strings.Contains(h, "HTTP") {
		t.Errorf("top-level description does not mention S3 and the HTTP server: %q", h)
	}
	for _, n := range nodes(k.Model.Node) {
		where := n.Path()
		if n.Parent != nil && n.Help == "" {
			t.Errorf("%s: no help", where)
		}
		for _, a := range n.Positional {
			if strings.TrimSpace(a.Help) == "" {
				t.Errorf("%s: argument <%s> has no description", where, a.Name)
			}
		}
		for _, f := range n.Flags {
			name := where + " --" + f.Name
			if f.Hidden || f.Name == "help" {
				continue
			}
			if strings.TrimSpace(f.Help) == "" {
				t.Errorf("%s: no help", name)
			}
			// One style for defaults: "(default: X)" at the end of the help text, never
			// kong's --flag="X".
			if f.Default != "" && !f.IsBool() {
				if f.PlaceHolder == "" {
					t.Errorf("%s: kong renders its default as %s; give it a placeholder", name, f.FormatPlaceHolder())
				}
				if !strings.Contains(f.Help, "(default: ") {
					t.Errorf("%s: default %q not shown as (default: …) in %q", name, f.Default, f.Help)
				}
			}
			if slices.Contains(oneShotFlags, f.Name) && len(f.Envs) > 0 {
				t.Errorf("%s: a one-shot flag read from %v", name, f.Envs)
			}
			for _, e := range f.Envs {
				if rest, _ := strings.CutPrefix(e, "CACHEGATE_"); slices.Contains(genericEnvs, rest) {
					t.Errorf("%s: environment variable %s is too generic", name, e)
				}
			}
			// Every flag but the global ones and a command's own one-shot flags is in a group.
			if n.Parent != nil && f.Group == nil && len(f.Envs) > 0 && n.Path() != "bench transfer" && n.Path() != "demo" {
				t.Errorf("%s: a setting in no flag group", name)
			}
		}
	}
	for _, path := range []string{"mount", "serve", "cache ls", "cache warm", "cache pin", "cache evict", "cache gc", "status"} {
		got := helpGroups(findNode(t, k.Model.Node, path))
		want := slices.DeleteFunc(slices.Clone(flagGroupOrder), func(g string) bool { return !slices.Contains(got, g) })
		if !slices.Equal(got, want) {
			t.Errorf("%s: flag groups in order %v, want %v", path, got, want)
		}
	}
	if got := helpGroups(findNode(t, k.Model.Node, "mount")); !slices.Equal(got, flagGroupOrder) {
		t.Errorf("mount: flag groups %v, want %v", got, flagGroupOrder)
	}
	if got := helpGroups(findNode(t, k.Model.Node, "serve")); !slices.Equal(got, []string{"cache", "origin", "server", "logging"}) {
		t.Errorf("serve: flag groups %v", got)
	}
}

// TestMountHelpHeadings checks the sections of `cachegate mount --help`, as printed.
func TestMountHelpHeadings(t *testing.T) {
	out, _, code := runCaptured(t, "mount", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" && l[0] != ' ' && strings.HasSuffix(l, ":") {
			got = append(got, l)
		}
	}
	want := []string{"Arguments:", "Flags:", "Cache flags:", "Origin flags:", "Mount flags:", "Server flags:", "Logging flags:"}
	if !slices.Equal(got, want) {
		t.Errorf("mount --help headings %q, want %q\n%s", got, want, out)
	}
	if strings.Contains(out, `="`) {
		t.Errorf("mount --help shows a default in kong's --flag=\"X\" style:\n%s", out)
	}
}
