package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// TestREADMEMatchesHelp keeps README's usage sections and --help from drifting
// apart: every flag and command README names exists in the CLI, and every flag and
// command the CLI has is named in README.
func TestREADMEMatchesHelp(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	k := testModel(t)

	flags := map[string]bool{}
	var commands []string
	for _, n := range nodes(k.Model.Node) {
		if n.Hidden {
			continue
		}
		if n.Parent != nil {
			commands = append(commands, n.Path())
		}
		for _, f := range n.Flags {
			if !f.Hidden {
				flags[f.Name] = true
			}
		}
	}
	flags["help"] = true

	// README's flags: --name, --name=…, and the --a[-b] shorthand for two flags.
	for _, m := range regexp.MustCompile("(?m)(?:^|[^\\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)(\\[-([a-z0-9-]+)\\])?(?:[^\\w-]|$)").FindAllStringSubmatch(text, -1) {
		name := m[1]
		if !flags[name] && !notOurFlag(text, "--"+name) {
			t.Errorf("README names --%s, which no command has", name)
		}
		if m[3] != "" && !flags[name+"-"+m[3]] {
			t.Errorf("README names --%s-%s, which no command has", name, m[3])
		}
	}
	for name := range flags {
		if !strings.Contains(text, "--"+name) && !strings.Contains(text, "--"+strings.TrimSuffix(name, "-sendfile")+"[-sendfile]") {
			t.Errorf("--%s is in --help but README never mentions it", name)
		}
	}
	for _, c := range commands {
		if !strings.Contains(text, "cachegate "+c) && !strings.Contains(text, "`"+c) {
			t.Errorf("command %q is in --help but README never shows it", c)
		}
	}
	// README's command lines (in its code blocks) name real commands.
	for _, m := range regexp.MustCompile("(?m)^cachegate ([a-z][a-z ]*[a-z])").FindAllStringSubmatch(codeBlocks(text), -1) {
		if !isCommandPrefix(k, m[1]) {
			t.Errorf("README runs `cachegate %s`, which is not a command", m[1])
		}
	}
}

// notOurFlag reports whether README names the flag of another program (curl -K,
// go test -fuzztime, rclone's --vfs-cache-mode, …) rather than one of cachegate's:
// the line it is on runs or names that program.
func notOurFlag(text, flag string) bool {
	others := []string{"curl", "go test", "go run", "rclone", "wrk", "hyperfine", "fusermount", "umount", "mount -", "nginx", "versitygw", "openssl", "jq", "tar", "e2e/", "mountpoint", "gcsfuse", "git ", "systemd", "systemctl"}
	for _, line := range strings.Split(text, "\n") {
		if !strings.Contains(line, flag) {
			continue
		}
		i := strings.Index(line, flag)
		before := line[:i]
		if j := strings.LastIndex(before, "`"); j >= 0 {
			before = before[j:]
		}
		if !slices.ContainsFunc(others, func(o string) bool { return strings.Contains(before, o) }) {
			return false
		}
	}
	return true
}

// isCommandPrefix reports whether words start with a command path of the CLI
// ("cache ls" and "cache ls PATH" do, "cache list" does not).
func isCommandPrefix(k *kong.Kong, words string) bool {
	fields := strings.Fields(words)
	n := k.Model.Node
	for _, w := range fields {
		var next *kong.Node
		for _, c := range n.Children {
			if c.Name == w || slices.Contains(c.Aliases, w) {
				next = c
			}
		}
		if next == nil {
			return n != k.Model.Node || w == "help"
		}
		n = next
	}
	return true
}

// codeBlocks returns the lines of text's fenced code blocks.
func codeBlocks(text string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			in = !in
			continue
		}
		if in {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
