package fusefs

import (
	"strings"
	"syscall"
)

// invalidate makes the kernel forget what it keeps of path p: its attributes and
// cached pages (NotifyContent on the inode, when the kernel has one) and its directory
// entry (NotifyEntry on the parent), so the next access looks p up again and reads one
// version, whole. The cache calls it whenever it drops or replaces an object version
// (evict, clear, a new version found). Paths the kernel never looked up cost nothing.
//
// It must not run inside a FUSE request on p or its parent: the kernel takes their
// locks to invalidate. The cache calls it from management requests, or asynchronously.
func (f *filesystem) invalidate(p string) {
	if f.rootPath != "" {
		// A mount of part of the namespace (Options.Root) knows only paths below it.
		rel, ok := strings.CutPrefix(p, f.rootPath+"/")
		if !ok {
			return
		}
		p = rel
	}
	if p == "" || f.root == nil {
		return
	}
	dir := f.root.EmbeddedInode()
	names := strings.Split(p, "/")
	for _, name := range names[:len(names)-1] {
		if dir = dir.GetChild(name); dir == nil {
			return // the kernel knows nothing below here
		}
	}
	name := names[len(names)-1]
	if child := dir.GetChild(name); child != nil {
		notifyErr(f, p, "content", child.NotifyContent(0, 0))
	}
	notifyErr(f, p, "entry", dir.NotifyEntry(name))
}

// notifyErr logs a failed notification. ENOENT (the kernel dropped it already) and
// ENOTCONN (unmounted) are expected.
func notifyErr(f *filesystem, p, what string, errno syscall.Errno) {
	if errno != 0 && errno != syscall.ENOENT && errno != syscall.ENOTCONN {
		f.log.Debug("kernel cache invalidation failed", "path", "/"+p, "what", what, "err", errno)
	}
}
