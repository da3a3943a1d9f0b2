package origin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
)

// RootError says why an origin's root cannot be used, in words for whoever named it
// (credentials of the URL hidden).
type RootError struct{ Msg string }

func (e *RootError) Error() string { return e.Msg }

// CheckRoot stats o's root, which must be a directory. When a web origin's root is
// missing it asks the server once more, to say what it answered and whether the URL
// names a file: a listing's 404 alone said "file does not exist".
func CheckRoot(ctx context.Context, o Origin) (Entry, error) {
	e, err := o.Stat(ctx, "")
	if h, ok := o.(*HTTP); ok && errors.Is(err, ErrNotExist) {
		if rerr := h.rootError(ctx); rerr != nil {
			return Entry{}, rerr
		}
	}
	return e, err
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
