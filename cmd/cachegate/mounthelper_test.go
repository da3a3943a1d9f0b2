package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestIsMountHelper(t *testing.T) {
	for _, tc := range []struct {
		args []string
		rest []string
		ok   bool
	}{
		{[]string{"/sbin/mount.cachegate", "o", "d"}, []string{"o", "d"}, true},
		{[]string{"/usr/sbin/mount.fuse.cachegate", "o", "d", "-o", "x"}, []string{"o", "d", "-o", "x"}, true},
		{[]string{"cachegate", "mount.cachegate", "o", "d"}, []string{"o", "d"}, true},
		{[]string{"cachegate", "mount", "o", "d"}, nil, false},
		{[]string{"cachegate"}, nil, false},
	} {
		rest, ok := isMountHelper(tc.args)
		if ok != tc.ok || !reflect.DeepEqual(rest, tc.rest) {
			t.Errorf("%q: %q %v, want %q %v", tc.args, rest, ok, tc.rest, tc.ok)
		}
	}
}

// mount(8) calls helpers as: mount.TYPE SOURCE TARGET [-sfnv] [-N NS] [-o OPTS] [-t TYPE].
func TestParseHelperArgs(t *testing.T) {
	h, err := parseHelperArgs([]string{"http://h/", "/mnt", "-sv", "-n", "-o", "a=1", "-ob", "-t", "fuse.cachegate"})
	if err != nil {
		t.Fatal(err)
	}
	want := helperArgs{source: "http://h/", target: "/mnt", options: []string{"a=1", "b"}, sloppy: true, verbose: true}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("got %+v, want %+v", h, want)
	}
	if h, err := parseHelperArgs([]string{"-f", "-o", "x", "/o", "/m"}); err != nil || !h.fake || h.source != "/o" || h.target != "/m" {
		t.Errorf("flags first: %+v %v", h, err)
	}
	for args, msg := range map[string]string{
		"/o":                    "usage",
		"/o /m /x":              "usage",
		"/o /m -o":              "-o needs a value",
		"/o /m -t ext4":         `type "ext4"`,
		"/o /m -N /proc/1/ns":   "-N",
		"/o /m -x":              "unknown flag -x",
		"/o /m -t cachegate -w": "unknown flag -w",
	} {
		if _, err := parseHelperArgs(strings.Fields(args)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want an error with %q", args, err, msg)
		}
	}
}

// Every flag of cachegate mount is an option, with its kind from the kong model.
func TestMountFlagKinds(t *testing.T) {
	kinds, err := mountFlagKinds()
	if err != nil {
		t.Fatal(err)
	}
	for name, isBool := range map[string]bool{"cache-dir": false, "cache-size": false, "metadata-ttl": false,
		"allow-other": true, "s3-endpoint": false, "origin-header": false, "uid": false, "log-level": false, "no-passthrough": true} {
		if got, ok := kinds[name]; !ok || got != isBool {
			t.Errorf("flag %s: known %v bool %v, want bool %v", name, ok, got, isBool)
		}
	}
}

func TestChildEnvDropsNotify(t *testing.T) {
	got := childEnv([]string{"A=1", "NOTIFY_SOCKET=/run/x", "WATCHDOG_USEC=5", "WATCHDOG_PID=3", readyFDEnv + "=9", "B=2"})
	if want := []string{"A=1", "B=2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("%q, want %q", got, want)
	}
}
