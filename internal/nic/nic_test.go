package nic

import (
	"os/exec"
	"strings"
	"testing"
)

// The ioctl must agree with ethtool where ethtool is installed.
func TestScatterGatherMatchesEthtool(t *testing.T) {
	sg, err := ScatterGather("lo")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ethtool", "-k", "lo").Output()
	if err != nil {
		t.Skip("ethtool not installed")
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "scatter-gather:") {
			if want := strings.Contains(line, ": on"); want != sg {
				t.Fatalf("ioctl says %v, ethtool says %q", sg, line)
			}
			return
		}
	}
	t.Fatal("ethtool printed no scatter-gather line")
}

func TestUnknownInterface(t *testing.T) {
	if _, err := ScatterGather("nonexistent0"); err == nil {
		t.Fatal("want an error for a missing interface")
	}
}
