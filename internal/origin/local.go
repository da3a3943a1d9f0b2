package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
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

func (l *Local) Stat(ctx context.Context, p string) (Entry, error) {
	fi, err := l.root.Stat(l.name(p))
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
	return &localReader{f: f, r: io.NewSectionReader(f, off, n), version: version, p: p}, nil
}

// localReader re-checks the version when it reaches the end of its range: a file
// rewritten in place while it was read must not pass as the old version.
type localReader struct {
	f       *os.File
	r       *io.SectionReader
	version string
	p       string
}

func (r *localReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if err == io.EOF {
		fi, serr := r.f.Stat()
		if serr != nil {
			return n, serr
		}
		if localVersion(fi) != r.version {
			return n, fmt.Errorf("%s: changed while read: %w", r.p, ErrChanged)
		}
	}
	return n, err
}

func (r *localReader) Close() error { return r.f.Close() }
