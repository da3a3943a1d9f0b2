package origin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"

	"github.com/minio/minio-go/v7"
)

// RootError says why an origin's root cannot be used, in words for whoever named it
// (credentials of the URL hidden).
type RootError struct{ Msg string }

func (e *RootError) Error() string { return e.Msg }

// CheckRoot stats o's root, which must be a directory. When a web origin's root is
// missing it asks the server once more, to say what it answered and whether the URL
// names a file: a listing's 404 alone said "file does not exist". An S3 prefix that
// is empty is looked up as an object: a key named as origin mounted as nothing.
func CheckRoot(ctx context.Context, o Origin) (Entry, error) {
	e, err := o.Stat(ctx, "")
	if err != nil && certError(err) {
		return Entry{}, &RootError{fmt.Sprintf("origin %s: its TLS certificate is not trusted (%v): give the CA that signed it with --origin-ca FILE (PEM), or skip verification with --origin-insecure", o.String(), err)}
	}
	var rerr error
	switch x := o.(type) {
	case *HTTP:
		var se *StatusError
		if errors.Is(err, ErrNotExist) {
			rerr = x.rootError(ctx)
		} else if errors.As(err, &se) && se.Status == http.StatusUnauthorized {
			rerr = &RootError{fmt.Sprintf("origin %s answered %d %s: check the credentials sent to it: the URL's user:password, --origin-header or --origin-header-file, or the netrc entry for %s ($NETRC or ~/.netrc)", x.name, se.Status, http.StatusText(se.Status), x.base.Hostname())}
		}
	case *S3:
		if err == nil {
			rerr = x.rootError(ctx)
		}
	}
	if rerr != nil {
		return Entry{}, rerr
	}
	return e, err
}

// rootError tells an S3 origin whose prefix is an object's key, or returns nil.
func (s *S3) rootError(ctx context.Context) error {
	if s.prefix == "" {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing after its first key
	for range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix, MaxKeys: 1}) {
		return nil // something under the prefix (or an error the mount will meet)
	}
	key := strings.TrimSuffix(s.prefix, "/")
	if _, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{}); err != nil {
		return nil
	}
	dir := path.Dir(key)
	if dir == "." {
		dir = ""
	} else {
		dir += "/"
	}
	return &RootError{fmt.Sprintf("origin s3://%s/%s is an object, not a prefix: an origin must be a directory (e.g. s3://%s/%s)", s.bucket, key, s.bucket, dir)}
}

// rootError describes a root whose listing was not found, or nil when the server
// no longer says so.
func (h *HTTP) rootError(ctx context.Context) error {
	// NewHTTP made ".../f.txt" the directory URL ".../f.txt/": a file as origin is
	// found without the slash.
	if strings.Trim(h.base.Path, "/") != "" {
		file := *h.base
		file.Path = strings.TrimSuffix(h.base.Path, "/")
		file.RawPath = ""
		if resp, err := h.do(ctx, http.MethodHead, file.String(), nil); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				dir := file
				dir.Path = path.Dir(file.Path) + "/"
				if dir.Path == "//" {
					dir.Path = "/"
				}
				return &RootError{fmt.Sprintf("origin %s is a file, not a directory: an origin must be a directory (e.g. %s)", file.Redacted(), dir.Redacted())}
			}
		}
	}
	resp, err := h.do(ctx, http.MethodGet, h.base.String(), nil)
	if err != nil {
		return nil
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	return &RootError{fmt.Sprintf("origin answered %d %s for %s: is the prefix right? an origin must be a directory", resp.StatusCode, http.StatusText(resp.StatusCode), h.base.Redacted())}
}
