package main

import (
	"reflect"
	"strings"
	"testing"
)

// testFlags stands for cachegate mount's flags (the helper takes them from the kong
// model; TestMountFlagKinds checks that).
var testFlags = map[string]bool{
	"cache-dir": false, "cache-size": false, "metadata-ttl": false, "allow-other": true,
	"origin-header": false, "s3-endpoint": false, "log-level": false, "help": true, "version": true,
}

func TestParseMountOptions(t *testing.T) {
	for _, tc := range []struct {
		in       string
		sloppy   bool
		args     []string
		env      []string
		errMatch string
	}{
		{in: "", args: nil},
		{in: "cache_dir=/var/cache/cg,cache_size=10GiB,metadata_ttl=5m,allow_other",
			args: []string{"--cache-dir=/var/cache/cg", "--cache-size=10GiB", "--metadata-ttl=5m", "--allow-other"}},
		// mount(8)'s and fstab's own options are accepted and ignored.
		{in: "rw,ro,defaults,auto,noauto,nofail,_netdev,user,users,user=alice,nosuid,nodev,x-systemd.automount,x-systemd.requires=network-online.target,comment=systemd.x,cache_size=64MiB",
			args: []string{"--cache-size=64MiB"}},
		// What mount(8) passes for a user mount (user implies noexec,nosuid,nodev),
		// and the kernel's other per-mount flags.
		{in: "rw,noexec,nosuid,nodev,user,noatime,relatime,exec,suid,dev,sync,async,lazytime,nosymfollow,cache_size=1G",
			args: []string{"--cache-size=1G"}},
		{in: "allow_other=false", args: []string{"--allow-other=false"}},
		{in: "cache-size=1G", args: []string{"--cache-size=1G"}},
		{in: ",,cache_size=1G,", args: []string{"--cache-size=1G"}},
		// Quotes keep commas; fstab's escapes are undone after splitting.
		{in: `origin_header="X-A: 1,2",origin_header=X-B:\0403\0544`, args: []string{"--origin-header=X-A: 1,2", "--origin-header=X-B: 3,4"}},
		{in: `cache_dir=/mnt/a\134b`, args: []string{`--cache-dir=/mnt/a\b`}},
		{in: `cache_dir=/x\9`, args: []string{`--cache-dir=/x\9`}},
		// Credentials go to the environment, not to argv.
		{in: "env.AWS_ACCESS_KEY_ID=AKID,env.AWS_SECRET_ACCESS_KEY=s=e,cret,s3_endpoint=http://h:9000",
			errMatch: `unknown mount option "cret"`},
		{in: `env.AWS_ACCESS_KEY_ID=AKID,env.AWS_SECRET_ACCESS_KEY="s=e,cret",s3_endpoint=http://h:9000,env.EMPTY=`,
			args: []string{"--s3-endpoint=http://h:9000"}, env: []string{"AWS_ACCESS_KEY_ID=AKID", "AWS_SECRET_ACCESS_KEY=s=e,cret", "EMPTY="}},
		{in: "env.1X=a", errMatch: `"env.1X"`},
		{in: "env.A-B=a", errMatch: `"env.A-B"`},
		{in: "env.=a", errMatch: `"env."`},
		{in: "env.A", errMatch: "needs a value"},
		{in: "cache_size", errMatch: `mount option "cache_size" needs a value`},
		{in: "bogus=1,cache_size=1G", errMatch: `unknown mount option "bogus"`},
		{in: "help", errMatch: `unknown mount option "help"`},
		{in: "bogus=1,cache_size=1G", sloppy: true, args: []string{"--cache-size=1G"}},
		{in: `origin_header="X-A: 1`, errMatch: "not closed"},
		{in: strings.Repeat("ro,", maxOptions), errMatch: "more than 256"},
		{in: strings.Repeat("x", maxOptionString+1), errMatch: "more than 65536"},
	} {
		got, err := parseMountOptions(tc.in, testFlags, tc.sloppy)
		if tc.errMatch != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errMatch) {
				t.Errorf("%.60q: err %v, want one containing %q", tc.in, err, tc.errMatch)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got.Args, tc.args) || !reflect.DeepEqual(got.Env, tc.env) {
			t.Errorf("%q: args %q env %q, want %q %q", tc.in, got.Args, got.Env, tc.args, tc.env)
		}
	}
}

// FuzzMountOptions: whatever the option string, the parser ends without panic, and
// what it accepts is only known flags and well-formed environment assignments, no
// more of them than the options given.
func FuzzMountOptions(f *testing.F) {
	for _, s := range []string{
		"cache_size=64MiB,allow_other,_netdev,x-systemd.automount",
		`origin_header="A: b,c",env.K=v`, `a\054b`, `"`, `env.=`, ",,,", `\134\060\061\062`,
	} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, sloppy bool) {
		if len(s) > 2*maxOptionString {
			return
		}
		got, err := parseMountOptions(s, testFlags, sloppy)
		if err != nil {
			return
		}
		if n := len(got.Args) + len(got.Env); n > maxOptions || n > strings.Count(s, ",")+1 {
			t.Fatalf("%q: %d results", s, n)
		}
		for _, a := range got.Args {
			name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if _, ok := testFlags[name]; !ok || !strings.HasPrefix(a, "--") || name == "help" || name == "version" {
				t.Fatalf("%q: arg %q is not a known flag", s, a)
			}
		}
		for _, e := range got.Env {
			name, _, ok := strings.Cut(e, "=")
			if !ok || !validEnvName(name) {
				t.Fatalf("%q: env %q", s, e)
			}
		}
	})
}

func TestEscapeMountpoint(t *testing.T) {
	for in, want := range map[string]string{
		"/mnt/pub":       "mnt-pub",
		"/mnt/pub/":      "mnt-pub",
		"/":              "-",
		"/srv/my-data":   `srv-my\x2ddata`,
		"/home/a b/.x":   `home-a\x20b-.x`,
		"/mnt/../etc/..": "-",
	} {
		if got := escapeMountpoint(in); got != want {
			t.Errorf("escapeMountpoint(%q) = %q, want %q", in, got, want)
		}
	}
}
