package main

import (
	"fmt"
	"strings"
)

// helperOptions is what a mount helper's -o string asks of `cachegate mount`.
type helperOptions struct {
	Args []string // flags for cachegate mount: --cache-size=64MiB, --allow-other
	// Env is NAME=VALUE assignments (from env.NAME=VALUE) for the mount process's
	// environment, where credentials stay out of ps (argv is world-readable,
	// /proc/PID/environ only the owner's).
	Env []string
}

// Bounds on an option string: fstab lines are short, and the helper must not hold
// whatever a caller passes.
const (
	maxOptionString = 64 << 10
	maxOptions      = 256
)

// ignoredOptions are mount(8)'s and fstab's own options: mount(8), systemd's fstab
// generator or the kernel act on them (or they hold anyway: every cachegate mount is
// read-only, nosuid and nodev), so the helper accepts and ignores them.
var ignoredOptions = map[string]bool{
	"ro": true, "rw": true, // mount(8) passes rw when ro is absent
	"defaults": true, "auto": true, "noauto": true, "nofail": true, "_netdev": true,
	"user": true, "users": true, "nouser": true, "owner": true, "group": true,
	// The kernel's per-mount flags (MS_*): mount(8) passes them to helpers (a user
	// mount gets noexec,nosuid,nodev) and sets them on the mount itself. Every
	// cachegate mount is read-only, nosuid and nodev whatever they say.
	"nosuid": true, "suid": true, "nodev": true, "dev": true, "noexec": true, "exec": true,
	"sync": true, "async": true, "dirsync": true, "atime": true, "noatime": true,
	"diratime": true, "nodiratime": true, "relatime": true, "norelatime": true,
	"strictatime": true, "nostrictatime": true, "lazytime": true, "nolazytime": true,
	"iversion": true, "noiversion": true, "mand": true, "nomand": true,
	"silent": true, "loud": true, "symfollow": true, "nosymfollow": true,
}

// ignoredPrefixes are option families mount(8) defines as comments or as another
// program's: x-systemd.automount and the like, comment=…, and user=NAME, which
// mount(8) passes to helpers for a user mount.
var ignoredPrefixes = []string{"x-", "comment=", "user="}

// parseMountOptions turns a mount(8) option string ("cache_size=64MiB,allow_other,
// env.AWS_PROFILE=ci,_netdev") into cachegate mount's flags and environment. flags
// maps each flag name of cachegate mount (with dashes: "cache-size") to whether it
// is a boolean. Options are the flag names with _ (or -) between words; a boolean
// stands alone or takes =true/false. Options are split at commas outside double
// quotes (libmount's quoting: origin_header="X-A: 1,2"); the quotes around a value
// are dropped, and fstab's octal escapes (\054 for a comma, \040 a space) are undone
// in each option after splitting. An unknown option is an error naming it, unless
// sloppy (mount -s), when it is skipped.
func parseMountOptions(s string, flags map[string]bool, sloppy bool) (helperOptions, error) {
	var out helperOptions
	if len(s) > maxOptionString {
		return out, fmt.Errorf("mount options are %d bytes, more than %d", len(s), maxOptionString)
	}
	opts, err := splitOptions(s)
	if err != nil {
		return out, err
	}
	if len(opts) > maxOptions {
		return out, fmt.Errorf("%d mount options, more than %d", len(opts), maxOptions)
	}
	for _, raw := range opts {
		opt := unescapeOctal(raw)
		if opt == "" {
			continue
		}
		name, value, hasValue := strings.Cut(opt, "=")
		value = unquote(value)
		if ignoredOption(opt) {
			continue
		}
		if env, ok := strings.CutPrefix(name, "env."); ok {
			if !validEnvName(env) {
				return out, fmt.Errorf("mount option %q: env.NAME=VALUE needs a NAME of letters, digits and _, not starting with a digit", name)
			}
			if !hasValue {
				return out, fmt.Errorf("mount option %q needs a value: env.%s=VALUE", name, env)
			}
			out.Env = append(out.Env, env+"="+value)
			continue
		}
		flag := strings.ReplaceAll(name, "_", "-")
		isBool, known := flags[flag]
		switch {
		case !known || flag == "help" || flag == "version":
			if sloppy {
				continue
			}
			return out, fmt.Errorf("unknown mount option %q: options are cachegate mount's flags with _ for - (cache_size=10GiB, allow_other; see cachegate mount --help), env.NAME=VALUE, and mount(8)'s own", name)
		case hasValue:
			out.Args = append(out.Args, "--"+flag+"="+value)
		case isBool:
			out.Args = append(out.Args, "--"+flag)
		default:
			return out, fmt.Errorf("mount option %q needs a value: %s=VALUE", name, name)
		}
	}
	return out, nil
}

// splitOptions splits s at commas outside double quotes.
func splitOptions(s string) ([]string, error) {
	var opts []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				opts = append(opts, s[start:i])
				start = i + 1
			}
		}
	}
	if quoted {
		return nil, fmt.Errorf("mount options %q: a double quote is not closed", s)
	}
	return append(opts, s[start:]), nil
}

func ignoredOption(opt string) bool {
	if ignoredOptions[opt] {
		return true
	}
	for _, p := range ignoredPrefixes {
		if strings.HasPrefix(opt, p) {
			return true
		}
	}
	return false
}

// unquote drops one pair of double quotes around v.
func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

// unescapeOctal undoes fstab's escapes: a backslash and three octal digits is that
// byte (\040 space, \011 tab, \012 newline, \054 comma, \134 backslash).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) && s[i+1] <= '3' {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
