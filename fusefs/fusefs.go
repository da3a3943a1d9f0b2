// Package fusefs presents a cache as a read-only FUSE filesystem (go-fuse v2).
//
// Every inode is a path of the origin. Attributes and listings come from the cache's
// metadata layer and are also cached by the kernel for the metadata TTL. A file's inode
// number is derived from its path, size and modification time, so a replaced object
// becomes a new inode: the kernel's page cache never mixes two versions.
//
// Reads of a complete, verified object use FUSE passthrough (the kernel reads the cache
// file itself, at local-disk speed); partial objects are served by splicing from the
// cache file (fuse.ReadResultFd) once the cache has made the range present. Which of
// the two an open gets is decided in passthrough.go, which keeps the kernel's rule of
// one io mode per inode.
package fusefs

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sync"
	"syscall"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/origin"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/hanwen/go-fuse/v2/splice"
	"golang.org/x/sys/unix"
)

// Options configures a mount.
type Options struct {
	TTL        time.Duration // kernel entry and attribute timeout
	AllowOther bool
	Logger     *slog.Logger
	Debug      bool // log every FUSE request
	// NoPassthrough serves complete files through the daemon too (splice), for
	// measuring that path or for kernels that refuse passthrough.
	NoPassthrough bool
	Stats         *Stats // counters to add to (stats.go); nil: none kept outside
	// Owners and permission bits the mount shows (the kernel enforces them). Entries
	// without their own (web and S3 origins) belong to UID and GID (default: the
	// mounting user) with FileMode or DirMode (default 0444 and 0555). Entries of
	// local origins keep the origin's, except those of the fields that are set.
	// Umask clears bits of every entry; write bits are always clear (read-only).
	UID, GID          *uint32
	FileMode, DirMode *fs.FileMode
	Umask             fs.FileMode
	// Root is the directory of the cache's namespace the mount shows ("": all of
	// it): `cachegate daemon` mounts each origin's NAME of its one cache. FsName is
	// the mount's source in mountinfo (default: the cache's origin).
	Root   string
	FsName string
}

type filesystem struct {
	c             *cache.Cache
	modes         *ioModes
	noPassthrough bool
	log           *slog.Logger
	stats         *Stats
	attrs         attrPolicy
	root          *dirNode // for invalidate
	rootPath      string   // Options.Root: the path of root
}

// attrPolicy decides the owner and permission bits of each entry (Options.UID…).
type attrPolicy struct {
	uid, gid          uint32
	fileMode, dirMode uint32
	umask             uint32
	// set*: the value was given, so it overrides a local origin's own.
	setUID, setGID, setFileMode, setDirMode bool
}

func newAttrPolicy(opts Options) attrPolicy {
	a := attrPolicy{uid: uint32(os.Getuid()), gid: uint32(os.Getgid()), fileMode: 0o444, dirMode: 0o555, umask: uint32(opts.Umask.Perm())}
	if opts.UID != nil {
		a.uid, a.setUID = *opts.UID, true
	}
	if opts.GID != nil {
		a.gid, a.setGID = *opts.GID, true
	}
	if opts.FileMode != nil {
		a.fileMode, a.setFileMode = uint32(opts.FileMode.Perm()), true
	}
	if opts.DirMode != nil {
		a.dirMode, a.setDirMode = uint32(opts.DirMode.Perm()), true
	}
	return a
}

// of returns the owner and permission bits the mount shows for e.
func (a *attrPolicy) of(e origin.Entry) (fuse.Owner, uint32) {
	owner := fuse.Owner{Uid: a.uid, Gid: a.gid}
	perm, set := a.fileMode, a.setFileMode
	if e.IsDir {
		perm, set = a.dirMode, a.setDirMode
	}
	if e.HasOwner {
		if !a.setUID {
			owner.Uid = e.Uid
		}
		if !a.setGID {
			owner.Gid = e.Gid
		}
		if !set {
			perm = uint32(e.Perm.Perm())
		}
	}
	return owner, perm &^ a.umask &^ 0o222
}

// Mount mounts c read-only at mountpoint and returns the running server. The caller
// waits on it (server.Wait) and unmounts it (server.Unmount).
func Mount(mountpoint string, c *cache.Cache, opts Options) (*fuse.Server, error) {
	server, _, err := mount(mountpoint, c, opts)
	return server, err
}

// mount is Mount, also returning the filesystem for tests to look into.
func mount(mountpoint string, c *cache.Cache, opts Options) (*fuse.Server, *filesystem, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.TTL <= 0 {
		opts.TTL = cache.DefaultTTL
	}
	if opts.Stats == nil {
		opts.Stats = &Stats{}
	}
	fsys := &filesystem{c: c, noPassthrough: opts.NoPassthrough, log: opts.Logger, attrs: newAttrPolicy(opts), stats: opts.Stats, rootPath: opts.Root}
	root := &dirNode{fsys: fsys, path: opts.Root}
	if opts.FsName == "" {
		opts.FsName = c.Origin().String()
	}
	fsys.root = root
	ttl := opts.TTL
	nodeOpts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:       opts.AllowOther,
			FsName:           opts.FsName,
			Name:             "cachegate",
			DirectMount:      true,
			DirectMountFlags: syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV,
			Options:          []string{"ro", "default_permissions"}, // the kernel checks the modes we report
			MaxWrite:         maxRequest(),
			MaxReadAhead:     maxRequest(),
			MaxBackground:    64,
			Debug:            opts.Debug,
			// go-fuse logs only what went wrong (a failed splice, a reply the
			// kernel refused): warnings in our log, not lines on stderr.
			Logger: slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
		},
		EntryTimeout:    &ttl,
		AttrTimeout:     &ttl,
		NegativeTimeout: &ttl,
		UID:             fsys.attrs.uid,
		GID:             fsys.attrs.gid,
	}
	// As gofs.Mount, with ioModes between the kernel and go-fuse's node bridge.
	fsys.modes = newIOModes(gofs.NewNodeFS(root, nodeOpts), fsys)
	privileged := CanMountDirectly()
	if !privileged {
		// An ordinary user's mount (through fusermount3): the kernel would refuse
		// every backing file, so do not ask (said once, below, when mounted).
		fsys.modes.disabled = true
	}
	server, err := fuse.NewServer(fsys.modes, mountpoint, &nodeOpts.MountOptions)
	if err != nil {
		return nil, nil, err
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, nil, err
	}
	c.OnInvalidate(fsys.invalidate)
	if !privileged {
		// One line for all that root would have had; /sys/class/bdi is root's to write.
		fsys.log.Info("no CAP_SYS_ADMIN (an ordinary user's mount): no FUSE passthrough, complete files are read through cachegate, and kernel readahead stays at 128 KiB")
	} else if err := setReadahead(mountpoint, kernelReadahead); err != nil {
		fsys.log.Debug("kernel readahead left at its default", "err", err)
	}
	return server, fsys, nil
}

// kernelReadahead is how far ahead the kernel reads a file that is not read by
// passthrough. FUSE mounts start with the kernel's 128 KiB default whatever the
// daemon asks for, so a sequential reader waited for one 128 KiB round trip at a
// time: 1 GiB read through cachegate from a complete cache file took 0.50 s, and
// 0.30-0.35 s with 4 MiB in flight.
const kernelReadahead = 4 << 20

// setReadahead sets the readahead of the mount's backing device info, as
// gcsfuse's documentation tells its users to by hand. It needs root; without it
// the default stays.
func setReadahead(mountpoint string, n int) error {
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		return err
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(p, []byte(fmt.Sprint(n>>10)), 0)
}

// maxRequest is the largest read the kernel may send us: the largest power of two
// up to 1 MiB whose reply, header included, fits one pipe. go-fuse splices a reply
// from the cache file through a pipe it can grow only to /proc/sys/fs/pipe-max-size
// (1 MiB by default); a reply that does not fit falls back to pread and write, two
// copies through user memory. With 1 MiB requests every reply did (go-fuse logged
// each), and a cold read of 1 GiB from nginx took 1.13-1.18 s instead of
// 0.97-1.08 s here.
func maxRequest() int {
	n := 1 << 20
	for n > 64<<10 && n+2*os.Getpagesize() > splice.MaxPipeSize() {
		n /= 2
	}
	return n
}

// sameWithinMinute reports whether listed, an entry whose time is given to the minute
// (an nginx HTML index trusted with --trust-html-index), may describe the file got,
// whose time has the second: the same size, and got's time in listed's minute, give
// or take a time zone (nginx's autoindex_localtime prints local time without saying
// which). The bytes read are got's whatever the inode shows: this decides only
// whether the open needs a new inode for a new size.
func sameWithinMinute(listed, got origin.Entry) bool {
	t := listed.ModTime
	if listed.IsDir || got.IsDir || listed.Symlink != "" || got.Symlink != "" ||
		listed.Size != got.Size || t.IsZero() || !t.Equal(t.Truncate(time.Minute)) {
		return false
	}
	d := got.ModTime.Truncate(time.Minute).Sub(t)
	return d%(15*time.Minute) == 0 && d > -15*time.Hour && d < 15*time.Hour // zones are whole quarters
}

// inoFor derives a stable inode number. Files include size and mtime so that a new
// version is a new inode.
func inoFor(p string, e origin.Entry) uint64 {
	h := fnv.New64a()
	h.Write([]byte(p))
	if e.Symlink != "" {
		h.Write([]byte("\x00" + e.Symlink)) // a link retargeted is a new inode
	}
	if !e.IsDir {
		var b [16]byte
		for i := 0; i < 8; i++ {
			b[i] = byte(e.Size >> (8 * i))
			b[8+i] = byte(e.ModTime.UnixNano() >> (8 * i))
		}
		h.Write(b[:])
	}
	ino := h.Sum64()
	if ino <= 1 { // 1 is the root
		ino += 2
	}
	return ino
}

// fillAttr describes e, with the owner and permission bits of f.attrs, which the
// kernel checks (default_permissions).
func (f *filesystem) fillAttr(e origin.Entry, ino uint64, out *fuse.Attr) {
	out.Ino = ino
	var perm uint32
	out.Owner, perm = f.attrs.of(e)
	t := e.ModTime
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	out.SetTimes(&t, &t, &t)
	out.Blksize = 4096
	switch {
	case e.IsDir:
		out.Mode = syscall.S_IFDIR | perm
		out.Nlink = 2
		out.Size = 4096
		return
	case e.Symlink != "":
		out.Mode = syscall.S_IFLNK | 0o777
		out.Nlink = 1
		out.Size = uint64(len(e.Symlink))
		return
	}
	out.Mode = syscall.S_IFREG | perm
	out.Nlink = 1
	out.Size = uint64(e.Size)
	out.Blocks = (uint64(e.Size) + 511) / 512
}

// typeOf is the file type bits of e for the kernel.
func typeOf(e origin.Entry) uint32 {
	switch {
	case e.IsDir:
		return syscall.S_IFDIR
	case e.Symlink != "":
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

// errno maps cache and origin errors to what a reader should see.
func (f *filesystem) errno(op, p string, err error) syscall.Errno {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, syscall.EISDIR):
		return syscall.EISDIR
	}
	f.log.Error(op+" failed", "path", "/"+p, "err", err)
	return syscall.EIO
}

type dirNode struct {
	gofs.Inode
	fsys *filesystem
	path string

	mu      sync.Mutex
	lastGen uint64 // listing generation the kernel's readdir cache holds
}

var (
	_ gofs.NodeLookuper       = (*dirNode)(nil)
	_ gofs.NodeGetattrer      = (*dirNode)(nil)
	_ gofs.NodeOpendirHandler = (*dirNode)(nil)
	_ gofs.NodeStatfser       = (*dirNode)(nil)
	_ gofs.NodeGetxattrer     = (*dirNode)(nil)
	_ gofs.NodeGetxattrer     = (*fileNode)(nil)
	_ gofs.NodeOpener         = (*fileNode)(nil)
	_ gofs.NodeGetattrer      = (*fileNode)(nil)
	_ gofs.NodeReadlinker     = (*linkNode)(nil)
	_ gofs.NodeGetattrer      = (*linkNode)(nil)
	_ gofs.FileReader         = (*fileHandle)(nil)
	_ gofs.FileReleaser       = (*fileHandle)(nil)
	_ gofs.FileReaddirenter   = (*dirHandle)(nil)
	_ gofs.FileSeekdirer      = (*dirHandle)(nil)
	_ gofs.FileLookuper       = (*dirHandle)(nil)
)

func (n *dirNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	e := origin.Entry{IsDir: true}
	if n.path == "" {
		// A local origin's root has an owner and modes. Other origins are not
		// asked: their roots have none, and a stat of an unreachable one would
		// make `ls` of the mount wait for --origin-timeout.
		if _, ok := n.fsys.c.Origin().(*origin.Local); ok {
			if st, err := n.fsys.c.Stat(ctx, ""); err == nil && st.IsDir {
				e = st
			}
		}
	} else {
		var err error
		if e, err = n.fsys.c.Lookup(ctx, parentOf(n.path), path.Base(n.path)); err != nil {
			return n.fsys.errno("getattr", n.path, err)
		}
	}
	n.fsys.fillAttr(e, n.StableAttr().Ino, &out.Attr)
	return 0
}

func (n *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	// Report the cache's size and room, so df shows something true about the mount.
	used, limit := n.fsys.c.Used()
	const bs = 4096
	out.Bsize = bs
	out.Frsize = bs
	out.Blocks = uint64(limit / bs)
	out.Bfree = uint64(max(0, limit-used) / bs)
	out.Bavail = out.Bfree
	out.NameLen = 255
	return 0
}

func (n *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	p := origin.Join(n.path, name)
	e, err := n.fsys.c.Lookup(ctx, n.path, name)
	if err != nil {
		return nil, n.fsys.errno("lookup", p, err)
	}
	return n.child(ctx, name, e, out), 0
}

// child returns the inode of the entry e called name, filling out. An inode the
// kernel already holds for the same entry is reused: readdirplus of a directory
// read before would otherwise allocate a second inode per entry (measured: 1M
// entries, +280 MB per ls).
func (n *dirNode) child(ctx context.Context, name string, e origin.Entry, out *fuse.EntryOut) *gofs.Inode {
	p := origin.Join(n.path, name)
	ino := inoFor(p, e)
	n.fsys.fillAttr(e, ino, &out.Attr)
	if ch := n.GetChild(name); ch != nil && ch.StableAttr().Ino == ino {
		return ch
	}
	var ops gofs.InodeEmbedder
	switch {
	case e.IsDir:
		ops = &dirNode{fsys: n.fsys, path: p}
	case e.Symlink != "":
		ops = &linkNode{fsys: n.fsys, path: p, entry: e}
	default:
		ops = &fileNode{fsys: n.fsys, path: p, entry: e}
	}
	return n.NewInode(ctx, ops, gofs.StableAttr{Mode: typeOf(e), Ino: ino})
}

func (n *dirNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	l, err := n.fsys.c.List(ctx, n.path)
	if err != nil {
		return nil, 0, n.fsys.errno("readdir", n.path, err)
	}
	ents := make([]fuse.DirEntry, len(l.Entries))
	for i, e := range l.Entries {
		ents[i] = fuse.DirEntry{Name: e.Name, Mode: typeOf(e), Ino: inoFor(origin.Join(n.path, e.Name), e), Off: uint64(i + 1)}
	}
	// Let the kernel keep this directory's entries in its cache while the listing
	// is unchanged; a changed listing opens without the flags, which resets it.
	n.mu.Lock()
	var fl uint32
	if n.lastGen == l.Gen {
		fl = fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
	}
	n.lastGen = l.Gen
	n.mu.Unlock()
	return &dirHandle{node: n, listing: l, ents: ents}, fl, 0
}

// dirHandle streams a directory listing taken at opendir.
type dirHandle struct {
	node    *dirNode
	listing *cache.Listing // what ents were made from
	ents    []fuse.DirEntry
	i       int
}

// Lookup answers readdirplus for one entry, from the listing the names came from.
// An entry the listing describes exactly gets its attributes at once; for the others
// (an HTML index rounds sizes) it declines, and the kernel lists the name without
// attributes and looks it up when something stats it: reading a directory never
// costs an origin request per entry.
func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	e, ok := d.node.fsys.c.LookupListed(d.listing, d.node.path, name)
	if !ok {
		return nil, syscall.EAGAIN // any errno: go-fuse then sends the entry without a node
	}
	return d.node.child(ctx, name, e, out), 0
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if d.i >= len(d.ents) {
		return nil, 0
	}
	e := &d.ents[d.i]
	d.i++
	return e, 0
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off > uint64(len(d.ents)) {
		return syscall.EINVAL
	}
	d.i = int(off)
	return 0
}

type fileNode struct {
	gofs.Inode
	fsys  *filesystem
	path  string
	entry origin.Entry // the version this inode stands for

	mu          sync.Mutex
	lastVersion string
}

func (n *fileNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	e := n.entry
	if cur, err := n.fsys.c.Lookup(ctx, parentOf(n.path), path.Base(n.path)); err == nil && inoFor(n.path, cur) == n.StableAttr().Ino {
		e = cur
	}
	n.fsys.fillAttr(e, n.StableAttr().Ino, &out.Attr)
	return 0
}

func (n *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	h, err := n.fsys.c.Open(ctx, n.path)
	if err != nil {
		return nil, 0, n.fsys.errno("open", n.path, err)
	}
	if inoFor(n.path, h.Entry()) != n.StableAttr().Ino && !sameWithinMinute(n.entry, h.Entry()) {
		// The object is no longer the version this inode stands for (a listing said
		// 10 bytes, the origin now 3 MiB): the kernel would read it under the old
		// size, part of the new version. ESTALE makes the kernel look the path up
		// again (once) and open the new inode.
		h.Close()
		n.fsys.c.Invalidate(n.path)
		go n.fsys.invalidate(n.path)
		return nil, 0, syscall.ESTALE
	}
	fh := &fileHandle{h: h, node: n}
	n.fsys.stats.OpenHandles.Add(1)
	if fc, ok := ctx.(*fuse.Context); ok && n.fsys.modes != nil {
		n.fsys.modes.opening.Store(fc.Cancel, fh) // for ioModes.Open to pick the io mode
	}
	var fl uint32
	n.mu.Lock()
	// Kept only for a cached-mode open (ioModes drops it for passthrough).
	if n.lastVersion == h.Entry().Version {
		fl |= fuse.FOPEN_KEEP_CACHE
	}
	n.lastVersion = h.Entry().Version
	n.mu.Unlock()
	return fh, fl, 0
}

// linkNode is a symlink of a local origin whose target is inside it: the kernel
// follows it through the mount, so a link to "." or ".." is one entry, not a tree.
type linkNode struct {
	gofs.Inode
	fsys  *filesystem
	path  string
	entry origin.Entry // the link this inode stands for (its target is in the inode number)
}

func (n *linkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(n.entry.Symlink), 0
}

func (n *linkNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	e := n.entry
	if cur, err := n.fsys.c.Lookup(ctx, parentOf(n.path), path.Base(n.path)); err == nil && cur.Symlink == e.Symlink && inoFor(n.path, cur) == n.StableAttr().Ino {
		e = cur
	}
	n.fsys.fillAttr(e, n.StableAttr().Ino, &out.Attr)
	return 0
}

type fileHandle struct {
	h    *cache.Handle
	node *fileNode
}

func (f *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := f.h.Fill(ctx, off, int64(len(dest)))
	if err == nil {
		if n == 0 {
			return fuse.ReadResultData(nil), 0
		}
		f.node.fsys.stats.SpliceBytes.Add(n)
		return fuse.ReadResultFd(f.h.Fd(), off, int(n)), 0
	}
	if errors.Is(err, cache.ErrNoSpace) {
		// No room in the cache, or bytes it does not keep (another member's
		// span, --peer-copy owner): read this range straight from the origin
		// (its owner), by one stream per handle for a sequential reader.
		var m int
		if m, err = f.h.ReadAt(ctx, dest, off); err == nil || err == io.EOF {
			f.node.fsys.stats.OriginBytes.Add(int64(m))
			return fuse.ReadResultData(dest[:m]), 0
		}
	}
	return nil, f.node.fsys.errno("read", f.node.path, err)
}

func (f *fileHandle) Release(ctx context.Context) syscall.Errno {
	f.node.fsys.stats.OpenHandles.Add(-1)
	f.h.Close()
	return 0
}

// xattrs are not supported. Answering ENOSYS (rather than go-fuse's default ENOATTR)
// makes the kernel stop asking: `ls -l` otherwise costs two round trips per file.
func (n *dirNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

func (n *fileNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

func parentOf(p string) string {
	d := path.Dir(p)
	if d == "." {
		return ""
	}
	return d
}
