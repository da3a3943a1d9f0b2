// Package origin reads the remote data that cachegate fronts: local directories, web
// servers and S3-compatible object stores. Every origin offers the same four operations — stat, list, ranged read and a
// version string — so the cache above it never needs to know where bytes come from.
//
// Paths are slash-separated, relative to the origin's root, without a leading slash;
// "" is the root. Use Clean to turn user or kernel input into such a path.
package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"path"
	"strings"
	"time"
)

// Entry describes one file or directory of an origin.
type Entry struct {
	Name    string // base name; "" for the root
	IsDir   bool
	Size    int64
	ModTime time.Time
	// Version identifies the content of a file: it changes whenever the bytes may have
	// changed. Empty when the entry came from a listing that does not carry one.
	Version string
	// Exact is true when Size and ModTime are authoritative. Listings that round sizes
	// ("1.2K") or times (to the minute) produce inexact entries; Stat is always exact.
	// An nginx HTML index's byte sizes are taken as exact with its times to the minute
	// only where the origin was opened with Options.TrustHTMLIndex.
	Exact bool
	// HasOwner is true for origins with owners and permission bits (local
	// directories): the mount shows Uid, Gid and Perm and lets the kernel check them,
	// and the server refuses a file that is not world-readable. Web and S3 origins
	// have none.
	HasOwner bool
	Uid, Gid uint32
	Perm     fs.FileMode // permission bits only (fs.ModePerm)
	// Symlink is the target of a symbolic link, as written in it ("sub/f", ".."):
	// the mount shows the entry as that link and lets the kernel follow it. Only
	// listings of local origins have links, and only links whose target is inside the
	// origin; Stat follows links instead. IsDir is false and Size is the target's
	// length. Web and S3 origins never set it.
	Symlink string
}

// Origin is a read-only source of files.
type Origin interface {
	// Stat describes the file or directory at p. It returns an error wrapping
	// fs.ErrNotExist when there is none.
	Stat(ctx context.Context, p string) (Entry, error)
	// List returns the entries of the directory p, in no particular order.
	List(ctx context.Context, p string) ([]Entry, error)
	// ReadRange returns a reader of exactly n bytes of file p starting at off, provided
	// the file still has the given version. When it does not, the error (returned here
	// or by the reader) wraps ErrChanged: bytes of two versions are never mixed.
	ReadRange(ctx context.Context, p, version string, off, n int64) (io.ReadCloser, error)
	// String names the origin for logs and the cache's identity.
	String() string
}

// WholeGetter is an origin that can read a whole small object in one request and
// describe the version it sent (an HTTP GET: its bytes and validators together).
type WholeGetter interface {
	// GetWhole returns the attributes and all bytes of file p, when it is at most max
	// bytes long (else an error): both of the same version.
	GetWhole(ctx context.Context, p string, max int64) (Entry, []byte, error)
}

// ErrChanged reports that an object no longer has the version a read asked for.
var ErrChanged = errors.New("origin object changed")

// ErrNotExist is fs.ErrNotExist, re-exported for callers that only import origin.
var ErrNotExist = fs.ErrNotExist

// Options configures the origins that need it.
type Options struct {
	// Timeout bounds each origin request (connect, headers, and idle time in a body).
	Timeout time.Duration
	// S3Endpoint is the URL of an S3-compatible store (default: AWS); S3Region its
	// region (default: AWS_REGION, or us-east-1 for a custom endpoint).
	S3Endpoint, S3Region string
	// MaxDirEntries caps the entries of one directory listing (default
	// DefaultMaxDirEntries): a larger directory is an error (ErrTooManyEntries),
	// not an unbounded amount of memory.
	MaxDirEntries int
	// Headers ("Name: value") are sent on every HTTP origin request; HeaderFile
	// names a file of more, reread when it changes. Either one's Authorization
	// wins over the origin URL's userinfo.
	Headers    []string
	HeaderFile string
	// CAFile names PEM certificates trusted for https origins on top of the
	// system roots (and of AWS_CA_BUNDLE for S3); Insecure skips verifying the
	// origin's certificate altogether, with a warning in the log.
	CAFile   string
	Insecure bool
	// TrustHTMLIndex takes the files of an nginx HTML index whose sizes it prints in
	// bytes (autoindex_exact_size on, nginx's default) as exact, with the times it
	// prints, to the minute: a directory's attributes then cost its one listing, not
	// a HEAD per file for the second (issue 21, goal 5).
	TrustHTMLIndex bool
}

// DefaultMaxDirEntries is the cap on a directory's entries when Options leave it 0.
const DefaultMaxDirEntries = 1_000_000

func (o Options) maxDirEntries() int {
	if o.MaxDirEntries <= 0 {
		return DefaultMaxDirEntries
	}
	return o.MaxDirEntries
}

// ErrTooManyEntries reports a directory listing with more entries than
// Options.MaxDirEntries allows.
var ErrTooManyEntries = errors.New("directory has too many entries")

// UsageError reports an origin argument that cannot work whatever the network does.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// New opens the origin named by spec: an absolute directory, a file:// URL, or an
// http(s):// URL. It does not contact the origin; call Stat(ctx, "") to check it.
func New(spec string, opts Options) (Origin, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	switch {
	case strings.HasPrefix(spec, "/"):
		return newLocal(spec, opts)
	case strings.HasPrefix(spec, "file://"):
		u, err := url.Parse(spec)
		if err != nil || u.Host != "" && u.Host != "localhost" {
			return nil, &UsageError{fmt.Sprintf("bad origin %q: use file:///absolute/dir", spec)}
		}
		return newLocal(u.Path, opts)
	case strings.HasPrefix(spec, "http://"), strings.HasPrefix(spec, "https://"):
		return NewHTTP(spec, opts)
	case strings.HasPrefix(spec, "s3://"):
		return NewS3(spec, opts)
	}
	scheme, _, ok := strings.Cut(spec, "://")
	if ok {
		return nil, &UsageError{fmt.Sprintf("unsupported origin scheme %q in %q: use /abs/dir, file:///abs/dir, http://host/prefix/, https://… or s3://bucket/prefix", scheme, spec)}
	}
	return nil, &UsageError{fmt.Sprintf("origin %q is neither an absolute directory nor a URL: use /abs/dir, file:///abs/dir or http://host/prefix/", spec)}
}

// Clean turns p (from a user, a URL or the kernel) into an origin path. It accepts a
// leading slash and redundant separators, and rejects anything that would leave the
// root: "..", NUL bytes and backslash tricks are errors, not silently dropped.
func Clean(p string) (string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("path %q contains a NUL byte", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", fmt.Errorf("path %q leaves the origin's root", p)
		}
	}
	c := path.Clean("/" + p)
	return strings.TrimPrefix(c, "/"), nil
}

// Join returns the origin path of name inside directory dir.
func Join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// validName reports whether a listing entry's name is a single path element.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}
