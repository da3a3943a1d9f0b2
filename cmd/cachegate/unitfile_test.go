package main

import (
	"os"
	"strings"
	"testing"
)

// TestShippedUnitAndConfig: cachegate.service runs the daemon as Type=notify on the
// config shipped beside it, reloads by SIGHUP, and keeps the hardening a FUSE daemon
// can have: none that gives the unit a mount namespace, where its mounts would stay
// hidden from the host. The shipped config parses.
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
		"NoNewPrivileges":       "yes",
		"CapabilityBoundingSet": "CAP_SYS_ADMIN CAP_DAC_READ_SEARCH",
		"DevicePolicy":          "closed",
		"DeviceAllow":           "/dev/fuse rw",
		"CacheDirectory":        "cachegate",
		// The registry (/run/cachegate) is root's 0755, so that every user's cachegate
		// status lists root's instances (registry.checkDir); systemd sets this mode
		// on it at each start, for every instance listed there.
		"RuntimeDirectory":     "cachegate",
		"RuntimeDirectoryMode": "0755",
	} {
		if got := lines[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	// systemd.exec(5): each of these sets up a mount namespace for the unit.
	for _, k := range []string{"ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
		"ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "BindPaths", "BindReadOnlyPaths", "TemporaryFileSystem",
		"ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
		"ProtectHostname", "ProtectProc", "ProcSubset", "MountFlags", "RootDirectory", "MountAPIVFS"} {
		if v, ok := lines[k]; ok {
			t.Errorf("%s=%s gives the unit a mount namespace: its FUSE mounts would not reach the host", k, v)
		}
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
