package fusefs

import "golang.org/x/sys/unix"

// CanMountDirectly reports whether this process holds CAP_SYS_ADMIN, which both
// mount(2) of a FUSE filesystem and FUSE passthrough (registering a backing file,
// FUSE_DEV_IOC_BACKING_OPEN) need. Without it go-fuse mounts through the setuid
// fusermount3, as ordinary users do, and every read goes through the daemon.
func CanMountDirectly() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_SYS_ADMIN/32].Effective&(1<<(unix.CAP_SYS_ADMIN%32)) != 0
}
