package fusefs

import (
	"io/fs"
	"os"
	"testing"

	"github.com/cachegate/cachegate/internal/origin"
)

func TestAttrPolicy(t *testing.T) {
	u32 := func(v uint32) *uint32 { return &v }
	mode := func(m fs.FileMode) *fs.FileMode { return &m }
	me := uint32(os.Getuid())
	web := origin.Entry{Name: "f"}
	webDir := origin.Entry{Name: "d", IsDir: true}
	local := origin.Entry{Name: "f", HasOwner: true, Uid: 1234, Gid: 1235, Perm: 0o440} // the origin drops write bits
	localDir := origin.Entry{Name: "d", IsDir: true, HasOwner: true, Uid: 1234, Gid: 1235, Perm: 0o550}
	for _, c := range []struct {
		name     string
		opts     Options
		e        origin.Entry
		uid, gid uint32
		perm     uint32
	}{
		{"web file, defaults", Options{}, web, me, uint32(os.Getgid()), 0o444},
		{"web dir, defaults", Options{}, webDir, me, uint32(os.Getgid()), 0o555},
		{"web file, all set", Options{UID: u32(1001), GID: u32(1002), FileMode: mode(0o440), DirMode: mode(0o550)}, web, 1001, 1002, 0o440},
		{"web dir, all set", Options{UID: u32(1001), GID: u32(1002), FileMode: mode(0o440), DirMode: mode(0o550)}, webDir, 1001, 1002, 0o550},
		{"web, umask on defaults", Options{Umask: 0o027}, web, me, uint32(os.Getgid()), 0o440},
		{"web dir, umask on defaults", Options{Umask: 0o027}, webDir, me, uint32(os.Getgid()), 0o550},
		{"write bits never shown", Options{FileMode: mode(0o666)}, web, me, uint32(os.Getgid()), 0o444},
		{"local keeps its own", Options{}, local, 1234, 1235, 0o440},
		{"local dir keeps its own", Options{FileMode: mode(0o400)}, localDir, 1234, 1235, 0o550},
		{"local, flags override", Options{GID: u32(7), FileMode: mode(0o400)}, local, 1234, 7, 0o400},
		{"local, umask on its own", Options{Umask: 0o077}, localDir, 1234, 1235, 0o500},
	} {
		a := newAttrPolicy(c.opts)
		owner, perm := a.of(c.e)
		if owner.Uid != c.uid || owner.Gid != c.gid || perm != c.perm {
			t.Errorf("%s: %d:%d %04o, want %d:%d %04o", c.name, owner.Uid, owner.Gid, perm, c.uid, c.gid, c.perm)
		}
	}
}
