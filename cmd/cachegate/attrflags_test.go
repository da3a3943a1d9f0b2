package main

import (
	"os"
	"testing"
)

func TestPermAndIDFlags(t *testing.T) {
	for in, want := range map[string]os.FileMode{"0444": 0o444, "444": 0o444, "0o550": 0o550, "027": 0o027, "0": 0, "0777": 0o777} {
		var p Perm
		if err := p.UnmarshalText([]byte(in)); err != nil || p.Mode != want || !p.Set {
			t.Errorf("Perm %q = %+v, %v; want %04o", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "0999", "04755", "1000", "-1", "rw-r--r--", "0x1ff"} {
		var p Perm
		if err := p.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("Perm %q accepted as %04o", bad, p.Mode)
		}
	}
	var id ID
	if err := id.UnmarshalText([]byte("1001")); err != nil || id.V != 1001 || !id.Set {
		t.Errorf("ID 1001 = %+v, %v", id, err)
	}
	for _, bad := range []string{"", "-1", "4294967295", "alice", "1e3"} {
		if err := new(ID).UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("ID %q accepted", bad)
		}
	}
}
