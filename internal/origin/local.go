package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Local is a directory on this machine (or an NFS mount). Access goes through os.Root,
// so neither ".." nor a symlink can reach outside the directory.
//
// Listings show symlinks as links (Entry.Symlink) when they resolve inside the
// directory, and leave out the others; Stat and ReadRange follow links inside the
// directory, as a web server serving it would. Entries carry the owner and the
// permission bits, write bits removed. Only regular files are read: a FIFO or device
// is never opened for long enough to block.
type Local struct {
	dir  string
	root *os.Root
	max  int // entries one directory may list (Options.MaxDirEntries)
}

// NewLocal opens the directory dir as an origin.
func NewLocal(dir string) (*Local, error) {
	if !filepath.IsAbs(dir) {
		return nil, &UsageError{fmt.Sprintf("local origin %q must be an absolute path", dir)}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open origin directory: %w", err)
	}
	return &Local{dir: filepath.Clean(dir), root: root, max: DefaultMaxDirEntries}, nil
}

func (l *Local) String() string { return "file://" + l.dir }

func (l *Local) name(p string) string {
	if p == "" {
		return "."
	}
	return p
}

// localVersion names the content of a local file: a change of size, mtime or inode
// (an atomic rename replacing it) gives a new version.
func localVersion(fi fs.FileInfo) string {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%x-%x-%x", fi.ModTime().UnixNano(), fi.Size(), ino)
}

func localEntry(name string, fi fs.FileInfo) Entry {
	e := Entry{Name: name, IsDir: fi.IsDir(), ModTime: fi.ModTime(), Exact: true}
	if !e.IsDir {
		e.Size = fi.Size()
		e.Version = localVersion(fi)
	}
	setOwner(&e, fi)
	return e
}

// setOwner copies fi's owner and permission bits into e, without the write bits: the
// mount and the server are read-only.
func setOwner(e *Entry, fi fs.FileInfo) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.HasOwner, e.Uid, e.Gid = true, st.Uid, st.Gid
		e.Perm = fi.Mode().Perm() &^ 0o222
	}
}

// linkEntry describes the symlink p (lstat fi) when its target stays inside the
// root: a relative target that does not climb above the root as written (the kernel
// resolves it so, from the link's directory in the mount) and that os.Root resolves,
// links along the way included, to a directory or regular file inside the root.
func (l *Local) linkEntry(p, name string, fi fs.FileInfo) (Entry, bool) {
	target, err := l.root.Readlink(p)
	if err != nil || target == "" || path.IsAbs(target) {
		return Entry{}, false
	}
	if j := path.Join(path.Dir(p), target); j == ".." || strings.HasPrefix(j, "../") {
		return Entry{}, false
	}
	if to, err := l.root.Stat(p); err != nil || !(to.IsDir() || to.Mode().IsRegular()) {
		return Entry{}, false
	}
	e := Entry{Name: name, Symlink: target, Size: int64(len(target)), ModTime: fi.ModTime(), Exact: true}
	setOwner(&e, fi)
	e.Perm = 0o777 // a link's own bits mean nothing; ls shows lrwxrwxrwx
	return e, true
}

// escapes reports os.Root's refusal of a path that leaves the root (through ".." or a
// symlink). Its error value is not exported; for a client such a path does not exist.
func escapes(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && pe.Err != nil && pe.Err.Error() == "path escapes from parent"
}

func (l *Local) Stat(ctx context.Context, p string) (Entry, error) {
	fi, err := l.root.Stat(l.name(p))
	if escapes(err) {
		return Entry{}, fmt.Errorf("%s: leaves the origin directory: %w", p, fs.ErrNotExist)
	}
	if err != nil {
		return Entry{}, err
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() {
		return Entry{}, fmt.Errorf("%s: not a regular file or directory: %w", p, fs.ErrNotExist)
	}
	name := filepath.Base(p)
	if p == "" {
		name = ""
	}
	return localEntry(name, fi), nil
}

func (l *Local) List(ctx context.Context, p string) ([]Entry, error) {
	f, err := l.root.Open(l.name(p))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Names are read in batches and go through the same builder as HTTP and S3
	// listings, so a huge directory fails at the cap instead of being held whole.
	b := listingBuilder{max: l.max, dir: l.String() + "/" + p}
	for {
		names, err := f.Readdirnames(1024)
		for _, n := range names {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if e, ok := l.listEntry(p, n); ok {
				if err := b.add(e); err != nil {
					return nil, err
				}
			}
		}
		if err == io.EOF || (err == nil && len(names) == 0) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return b.finish(), nil
}

// listEntry is the entry for name in directory p, or false for what a listing
// leaves out (gone since, not a file, directory or link within the root).
func (l *Local) listEntry(p, n string) (Entry, bool) {
	cp := Join(p, n)
	fi, err := l.root.Lstat(cp)
	if err != nil {
		return Entry{}, false
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		// Shown as the link it is, so that a link to "." or ".." makes no
		// endless tree; one leading outside is left out rather than exposing
		// (or pointing the kernel at) what is there.
		return l.linkEntry(cp, n, fi)
	}
	if fi.IsDir() || fi.Mode().IsRegular() {
		return localEntry(n, fi), true
	}
	return Entry{}, false
}

func (l *Local) ReadRange(ctx context.Context, p, version string, off, n int64) (io.ReadCloser, error) {
	f, err := l.open(ctx, p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", p, ErrChanged)
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		// Stat saw a regular file (only those have versions): it was replaced.
		f.Close()
		return nil, fmt.Errorf("%s: now a %s, not a regular file: %w", p, fileType(fi.Mode()), ErrChanged)
	}
	if localVersion(fi) != version {
		f.Close()
		return nil, fmt.Errorf("%s: %w", p, ErrChanged)
	}
	if off+n > fi.Size() {
		f.Close()
		return nil, fmt.Errorf("%s: range %d+%d beyond size %d: %w", p, off, n, fi.Size(), ErrChanged)
	}
	return &localReader{ctx: ctx, f: f, pos: off, end: off + n, version: version, p: p}, nil
}

// open opens file p for reading without waiting on it: O_NONBLOCK makes the open of
// a FIFO (which waits for a writer) or a device return at once, for the caller to
// refuse; a regular file ignores the flag. An open stuck in the kernel anyway (a hung
// NFS server) is abandoned when ctx ends, and its file closed when it returns.
func (l *Local) open(ctx context.Context, p string) (*os.File, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type result struct {
		f   *os.File
		err error
	}
	res := make(chan result, 1)
	go func() {
		f, err := l.root.OpenFile(l.name(p), os.O_RDONLY|syscall.O_NONBLOCK, 0)
		res <- result{f, err}
	}()
	select {
	case r := <-res:
		return r.f, r.err
	case <-ctx.Done():
		go func() {
			if r := <-res; r.f != nil {
				r.f.Close()
			}
		}()
		return nil, fmt.Errorf("open %s: %w", p, ctx.Err())
	}
}

// fileType names a mode's file type for an error message.
func fileType(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m.IsDir():
		return "directory"
	}
	return "special file"
}

// localReader re-checks the version when it reaches the end of its range: a file
// rewritten in place while it was read must not pass as the old version.
type localReader struct {
	ctx      context.Context // a read after it ends fails
	f        *os.File
	pos, end int64
	version  string
	p        string
}

func (r *localReader) Read(b []byte) (int, error) {
	if r.pos >= r.end {
		return 0, r.recheck()
	}
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	if int64(len(b)) > r.end-r.pos {
		b = b[:r.end-r.pos]
	}
	n, err := r.f.ReadAt(b, r.pos)
	r.pos += int64(n)
	if err == io.EOF {
		return n, fmt.Errorf("%s: shrank while read: %w", r.p, ErrChanged)
	}
	if err == nil && r.pos == r.end {
		err = r.recheck()
	}
	return n, err
}

func (r *localReader) recheck() error {
	fi, err := r.f.Stat()
	if err != nil {
		return err
	}
	if localVersion(fi) != r.version {
		return fmt.Errorf("%s: changed while read: %w", r.p, ErrChanged)
	}
	return io.EOF
}

// WriteToFile copies the next n bytes into f inside the kernel (copy_file_range; a
// reflink where the filesystem shares extents).
func (r *localReader) WriteToFile(f *os.File, off, n int64, mu sync.Locker) error {
	if n > r.end-r.pos {
		return fmt.Errorf("%s: asked for %d bytes, %d left", r.p, n, r.end-r.pos)
	}
	for n > 0 {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		src, dst := r.pos, off
		mu.Lock()
		m, err := unix.CopyFileRange(int(r.f.Fd()), &src, int(f.Fd()), &dst, int(n), 0)
		mu.Unlock()
		if err != nil {
			return err
		}
		if m == 0 {
			return fmt.Errorf("%s: shrank while read: %w", r.p, ErrChanged)
		}
		r.pos += int64(m)
		off += int64(m)
		n -= int64(m)
	}
	if r.pos == r.end {
		if err := r.recheck(); err != io.EOF {
			return err
		}
	}
	return nil
}

func (r *localReader) Close() error { return r.f.Close() }

// newLocal is NewLocal with the listing cap of opts.
func newLocal(dir string, opts Options) (*Local, error) {
	l, err := NewLocal(dir)
	if err != nil {
		return nil, err
	}
	l.max = opts.maxDirEntries()
	return l, nil
}
