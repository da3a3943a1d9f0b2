package main

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/cachegate/cachegate/fusefs"
)

// attrFlags set the owners and permission bits a mount shows, as rclone's and
// s3fs's do (fusefs.Options.UID…).
type attrFlags struct {
	UID      ID   `group:"mount" name:"uid" env:"CACHEGATE_MOUNT_UID" help:"Owner of every file and directory (default: your uid; a local origin's own)." placeholder:"UID"`
	GID      ID   `group:"mount" name:"gid" env:"CACHEGATE_MOUNT_GID" help:"Group of every file and directory (default: your gid; a local origin's own)." placeholder:"GID"`
	FileMode Perm `group:"mount" env:"CACHEGATE_MOUNT_FILE_MODE" help:"Permission bits of files, in octal (default: 0444; a local origin's own). Write bits are always clear: the mount is read-only." placeholder:"MODE"`
	DirMode  Perm `group:"mount" env:"CACHEGATE_MOUNT_DIR_MODE" help:"Permission bits of directories, in octal (default: 0555; a local origin's own)." placeholder:"MODE"`
	Umask    Perm `group:"mount" env:"CACHEGATE_MOUNT_UMASK" help:"Permission bits to clear on every file and directory, in octal, e.g. 022 or 027 (default: 0; the process's umask is not used)." placeholder:"MASK"`
}

// apply sets the fusefs options of the flags that were given.
func (f *attrFlags) apply(o *fusefs.Options) {
	if f.UID.Set {
		o.UID = &f.UID.V
	}
	if f.GID.Set {
		o.GID = &f.GID.V
	}
	if f.FileMode.Set {
		o.FileMode = &f.FileMode.Mode
	}
	if f.DirMode.Set {
		o.DirMode = &f.DirMode.Mode
	}
	o.Umask = f.Umask.Mode
}

// ID is a numeric user or group id flag; Set tells it was given.
type ID struct {
	V   uint32
	Set bool
}

func (id *ID) UnmarshalText(b []byte) error {
	// 4294967295 is (uid_t)-1, "no change" to chown: no file can have it.
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil || v == 1<<32-1 {
		return fmt.Errorf("%q is not a numeric id (0 to 4294967294)", b)
	}
	*id = ID{V: uint32(v), Set: true}
	return nil
}

// Perm is a permission-bits flag in octal, as chmod takes it: 0440, 440 or 0o440.
type Perm struct {
	Mode fs.FileMode
	Set  bool
}

func (p *Perm) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return fmt.Errorf("%q is not permission bits in octal, 0 to 0777 (e.g. 0444)", b)
	}
	*p = Perm{Mode: fs.FileMode(v), Set: true}
	return nil
}
