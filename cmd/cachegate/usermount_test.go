package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestUserAllowOther reads fuse.conf as fusermount3 does: user_allow_other counts
// only on a line of its own, not commented out.
func TestUserAllowOther(t *testing.T) {
	for conf, want := range map[string]bool{
		"# comment\n#user_allow_other\n":           false,
		"mount_max = 1000\nuser_allow_other\n":     true,
		"  user_allow_other  \n":                   true,
		"user_allow_other # let users share\n":     true,
		"user_allow_others\n":                      false,
		"# user_allow_other is off\nmount_max = 5": false,
	} {
		p := filepath.Join(t.TempDir(), "fuse.conf")
		if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := userAllowOther(p); got != want {
			t.Errorf("userAllowOther(%q) = %v, want %v", conf, got, want)
		}
	}
	if userAllowOther(filepath.Join(t.TempDir(), "missing")) {
		t.Error("a missing fuse.conf allows allow_other")
	}
}
