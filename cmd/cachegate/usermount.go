package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/cachegate/cachegate/fusefs"
	"golang.org/x/sys/unix"
)

// fuseConf is where fusermount3 reads whether users may mount with allow_other.
const fuseConf = "/etc/fuse.conf"

// checkUserMount refuses, in one line that says what to do, what would make
// fusermount3 fail for a process that cannot mount by itself (no CAP_SYS_ADMIN: an
// ordinary user), before the cache directory is made or the origin asked. Left to
// fusermount3, each failure is its own line on stderr followed by go-fuse's
// "fusermount exited with code 256".
func checkUserMount(mountpoint string, allowOther bool) error {
	if fusefs.CanMountDirectly() {
		return nil
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		if _, err := os.Stat("/bin/fusermount3"); err != nil { // go-fuse looks there too
			return fmt.Errorf("an ordinary user mounts through fusermount3, which is not installed: install fuse3 (apt install fuse3), or mount as root")
		}
	}
	if err := unix.Access(mountpoint, unix.W_OK); err != nil {
		return fmt.Errorf("mountpoint %s is not writable by you (%v): fusermount3 lets an ordinary user mount only on a directory it may write: use one of yours (mkdir ~/mnt) or have root chown it to you", mountpoint, err)
	}
	if err := unix.Access("/dev/fuse", unix.R_OK|unix.W_OK); err != nil {
		// udev makes it 0666 on a normal system; containers often leave it 0600.
		return fmt.Errorf("/dev/fuse is not open to this user (%v): as root, chmod 0666 /dev/fuse (what udev does on a normal system), or mount as root", err)
	}
	if allowOther && !userAllowOther(fuseConf) {
		return usagef("--allow-other: fusermount3 lets an ordinary user mount with allow_other only when %s has the line user_allow_other: add it as root, or mount without --allow-other (only you will see the files)", fuseConf)
	}
	return nil
}

// userAllowOther reports whether the fuse.conf at path has user_allow_other on a line
// of its own, as fusermount3 reads it (# starts a comment).
func userAllowOther(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for s.Scan() {
		line, _, _ := strings.Cut(s.Text(), "#")
		if strings.TrimSpace(line) == "user_allow_other" {
			return true
		}
	}
	return false
}
