package fusefs

import (
	"io/fs"
	"os"
	"testing"
	"time"

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

// TestSameWithinMinute: an open keeps the inode of a file listed with its time to the
// minute (a trusted HTML index) when the origin gives that minute's second, or the
// same wall time in another zone; a new size, or a time listed with its second, does
// not.
func TestSameWithinMinute(t *testing.T) {
	minute := time.Date(2026, 11, 26, 0, 55, 0, 0, time.UTC)
	listed := origin.Entry{Name: "f", Size: 10, ModTime: minute}
	at := func(size int64, t time.Time) origin.Entry { return origin.Entry{Name: "f", Size: size, ModTime: t} }
	for _, c := range []struct {
		name   string
		listed origin.Entry
		got    origin.Entry
		same   bool
	}{
		{"second of the minute", listed, at(10, minute.Add(37*time.Second)), true},
		{"the minute itself", listed, at(10, minute), true},
		{"local time 5:30 ahead", listed, at(10, minute.Add(-5*time.Hour-30*time.Minute+12*time.Second)), true},
		{"next minute", listed, at(10, minute.Add(61*time.Second)), false},
		{"a day later", listed, at(10, minute.Add(24*time.Hour)), false},
		{"new size", listed, at(11, minute.Add(5*time.Second)), false},
		{"listed with its second", at(10, minute.Add(5*time.Second)), at(10, minute.Add(6*time.Second)), false},
		{"no time listed", at(10, time.Time{}), at(10, minute), false},
	} {
		if got := sameWithinMinute(c.listed, c.got); got != c.same {
			t.Errorf("%s: sameWithinMinute = %v, want %v", c.name, got, c.same)
		}
	}
}
