package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Local is a directory on this machine (or an NFS mount). Access goes through os.Root,
// so neither ".." nor a symlink can reach outside the directory.
type Local struct {
	dir  string
	root *os.Root
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
	return &Local{dir: filepath.Clean(dir), root: root}, nil
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
	return e
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
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(names))
	for _, n := range names {
		// Stat follows symlinks inside the root; one pointing outside fails and is
		// left out of the listing rather than exposing what it points at.
		fi, err := l.root.Stat(l.name(Join(p, n)))
		if err != nil || !(fi.IsDir() || fi.Mode().IsRegular()) {
			continue
		}
		out = append(out, localEntry(n, fi))
	}
	return out, nil
}

func (l *Local) ReadRange(ctx context.Context, p, version string, off, n int64) (io.ReadCloser, error) {
	f, err := l.root.Open(l.name(p))
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
	if localVersion(fi) != version {
		f.Close()
		return nil, fmt.Errorf("%s: %w", p, ErrChanged)
	}
	if off+n > fi.Size() {
		f.Close()
		return nil, fmt.Errorf("%s: range %d+%d beyond size %d: %w", p, off, n, fi.Size(), ErrChanged)
	}
	return &localReader{f: f, pos: off, end: off + n, version: version, p: p}, nil
}

// localReader re-checks the version when it reaches the end of its range: a file
// rewritten in place while it was read must not pass as the old version.
type localReader struct {
	f        *os.File
	pos, end int64
	version  string
	p        string
}

func (r *localReader) Read(b []byte) (int, error) {
	if r.pos >= r.end {
		return 0, r.recheck()
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
