package fusefs

import (
	"io"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// ioModes decides, for every open, whether the kernel reads it by FUSE passthrough
// (straight from the cache file) or through the daemon, and owns the backing files
// passthrough needs. It wraps go-fuse's raw bridge instead of using go-fuse's
// FilePassthroughFder because of two kernel rules and one go-fuse behaviour:
//
//   - The kernel keeps an inode in one io mode at a time. An open that asks for
//     the other mode while the inode has opens in one mode fails with EIO, and all
//     passthrough opens of an inode must name the same backing file.
//   - The kernel drops a file from its count before it sends RELEASE, so counts
//     kept by the daemon and lowered at RELEASE are never below the kernel's.
//   - A backing file registered with the kernel holds the file until unregistered;
//     the inode's opens hold their own reference to it.
//   - go-fuse v2.12.1 drops a backing reference at the release of every handle of
//     an inode, cached ones included; a cached handle released late unregistered
//     a backing file that passthrough opens still used, and the next open of the
//     inode failed with EIO (a few opens in 10,000 under the soak test).
//
// Here the decision and the counts live under one mutex: passthrough when the
// object is complete and no cached open of the inode is left (or when passthrough
// opens already share a backing file), cached otherwise. The backing file is
// registered once per cache object and kept with its open files (backingOf).
//
// Lock order: ioModes.mu, then the cache's locks (Handle.Complete, Handle.Attach).
// The cache closes a backing file with its object's lock held, so closing one must
// not take ioModes.mu.
type ioModes struct {
	fuse.RawFileSystem
	fsys *filesystem

	mu       sync.Mutex
	server   *fuse.Server
	disabled bool                // the kernel refused a backing file: no passthrough
	inodes   map[uint64]*ioState // by node id
	files    map[openKey]bool    // open files: true for passthrough
	// opening hands the file handle our Open made to the Open wrapper that called
	// it, keyed by the request's cancel channel (unique among requests in flight).
	opening sync.Map
	flushes atomic.Int64 // FLUSH requests received
	// releasing counts RELEASE requests not yet handed back to the kernel: a handle
	// gone from files may still hold its cache object until the release returns.
	releasing atomic.Int64
	// registered counts backing files registered with the kernel; backings those
	// not unregistered yet.
	registered, backings atomic.Int64
}

type openKey struct{ node, fh uint64 }

// ioState is one inode's opens by mode and its backing file while any passthrough
// open uses it.
type ioState struct {
	backingID   int32
	passthrough int
	cached      int
}

func newIOModes(raw fuse.RawFileSystem, fsys *filesystem) *ioModes {
	return &ioModes{RawFileSystem: raw, fsys: fsys, inodes: map[uint64]*ioState{}, files: map[openKey]bool{}}
}

func (m *ioModes) Init(s *fuse.Server) {
	m.mu.Lock()
	m.server = s
	m.mu.Unlock()
	m.RawFileSystem.Init(s)
}

func (m *ioModes) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	st := m.RawFileSystem.Open(cancel, in, out)
	v, ok := m.opening.LoadAndDelete(cancel)
	if !st.Ok() || !ok {
		return st
	}
	fh := v.(*fileHandle)
	out.OpenFlags |= fuse.FOPEN_NOFLUSH // see Flush
	key := openKey{in.NodeId, out.Fh}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.inodes[in.NodeId]
	if s == nil {
		s = &ioState{}
		m.inodes[in.NodeId] = s
	}
	switch {
	case s.passthrough > 0:
		// Share the backing file. It holds the bytes of a complete object of this
		// inode's version (the inode number includes size and mtime; the ETag
		// cannot change without one of them for passthrough to go wrong).
	case !m.disabled && !m.fsys.noPassthrough && s.cached == 0 && fh.h.Complete():
		b, err := m.backingOf(fh)
		if err != nil {
			m.disabled = true
			m.fsys.log.Warn("the kernel refused a passthrough backing file; reading complete files through cachegate instead", "err", err)
			return m.openCached(s, key, st)
		}
		s.backingID = b.id
	default:
		return m.openCached(s, key, st)
	}
	s.passthrough++
	m.fsys.stats.PassthroughOpens.Add(1)
	m.files[key] = true
	out.BackingID = s.backingID
	out.OpenFlags |= fuse.FOPEN_PASSTHROUGH
	out.OpenFlags &^= fuse.FOPEN_KEEP_CACHE
	return st
}

// openCached records a cached-mode open. m.mu must be held.
func (m *ioModes) openCached(s *ioState, key openKey, st fuse.Status) fuse.Status {
	s.cached++
	m.fsys.stats.CachedOpens.Add(1)
	m.files[key] = false
	return st
}

func (m *ioModes) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	// Count the release before go-fuse recycles the handle number for a new open.
	m.releasing.Add(1)
	defer m.releasing.Add(-1)
	key := openKey{in.NodeId, in.Fh}
	m.mu.Lock()
	if passthrough, ok := m.files[key]; ok {
		delete(m.files, key)
		s := m.inodes[in.NodeId]
		if passthrough {
			if s.passthrough--; s.passthrough == 0 {
				s.backingID = 0 // the object keeps it registered (backingOf)
			}
		} else {
			s.cached--
		}
		if s.passthrough == 0 && s.cached == 0 {
			delete(m.inodes, in.NodeId)
		}
	}
	m.mu.Unlock()
	m.RawFileSystem.Release(cancel, in)
}

// Flush answers ENOSYS: nothing written, nothing to flush. The kernel then sends no
// more FLUSH on this mount (opens also say FOPEN_NOFLUSH, so it sends none at all);
// a close of a small file cost one round trip more than its open.
func (m *ioModes) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	m.flushes.Add(1)
	return fuse.ENOSYS
}

// backing is a data file registered with the kernel for passthrough.
type backing struct {
	m  *ioModes
	id int32
}

// backingOf returns the backing file of fh's cache object, registering its data file
// with the kernel on the object's first passthrough open. The cache keeps it with
// the object's open files and closes it (unregisters it) when they close: when the
// object leaves the cache's set of open objects, is evicted, cleared or replaced,
// never while a handle holds it. So a hot small file costs no ioctl per open, and
// no unlinked file stays held by the kernel. m.mu must be held.
func (m *ioModes) backingOf(fh *fileHandle) (*backing, error) {
	a, err := fh.h.Attach(m, func(fd int) (io.Closer, error) {
		id, errno := m.server.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fd)})
		if errno != 0 {
			return nil, errno
		}
		m.registered.Add(1)
		m.backings.Add(1)
		return &backing{m: m, id: id}, nil
	})
	if err != nil {
		return nil, err
	}
	return a.(*backing), nil
}

// Close unregisters the backing file. Opens that use it keep their own reference;
// after an unmount it fails (EBADF), and the kernel has dropped it already.
func (b *backing) Close() error {
	b.m.backings.Add(-1)
	if errno := b.m.server.UnregisterBackingFd(b.id); errno != 0 && errno != syscall.EBADF && errno != syscall.ENODEV {
		b.m.fsys.log.Warn("unregister passthrough backing file", "err", errno)
	}
	return nil
}
