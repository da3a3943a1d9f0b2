package main

import (
	"os"
	"strings"
	"testing"
)

// TestShippedUnitAndConfig: cachegate.service runs the daemon as Type=notify on the
// config shipped beside it, reloads by SIGHUP, and keeps the hardening a FUSE daemon
// can have; the shipped config parses.
func TestShippedUnitAndConfig(t *testing.T) {
	unit, err := os.ReadFile("cachegate.service")
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string][]string{}
	for _, l := range strings.Split(string(unit), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			lines[k] = append(lines[k], v)
		}
	}
	for k, want := range map[string]string{
		"Type":                  "notify",
		"ExecStart":             "/usr/local/bin/cachegate daemon --config /etc/cachegate/cachegate.yaml",
		"ExecReload":            "/bin/kill -HUP $MAINPID",
		"ProtectSystem":         "strict",
		"PrivateTmp":            "yes",
		"NoNewPrivileges":       "yes",
		"CapabilityBoundingSet": "CAP_SYS_ADMIN",
		"DeviceAllow":           "/dev/fuse rw",
		"CacheDirectory":        "cachegate",
		"MountFlags":            "shared",
	} {
		if got := lines[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	if _, ok := lines["PrivateDevices"]; ok {
		t.Error("PrivateDevices hides /dev/fuse")
	}
	cfg, err := os.ReadFile("cachegate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseDaemonConfig("cachegate.yaml", cfg)
	if err != nil {
		t.Fatalf("the shipped config: %v", err)
	}
	if c.CacheDir != "/var/cache/cachegate" {
		t.Errorf("the shipped config's cache dir %s is not the unit's CacheDirectory", c.CacheDir)
	}
}
