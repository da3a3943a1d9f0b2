package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// listenAddr turns a --listen or --serve value into net.Listen's form: a bare PORT
// is 127.0.0.1:PORT (this machine only, as the default address), :PORT every
// interface. exposed reports an address other machines may reach.
func listenAddr(given string) (addr string, exposed bool, err error) {
	s := given
	if s != "" && strings.Trim(s, "0123456789") == "" {
		s = "127.0.0.1:" + s
	}
	host, port, err := net.SplitHostPort(s)
	if err == nil {
		if n, perr := strconv.ParseUint(port, 10, 16); perr != nil || n > 65535 {
			err = errors.New("bad port")
		}
	}
	if err != nil {
		return "", false, usagef("%q is not a listen address: use PORT (on 127.0.0.1), :PORT (every interface) or HOST:PORT", given)
	}
	ip := net.ParseIP(host)
	switch {
	case host == "" || ip != nil && ip.IsUnspecified():
		exposed = true
	case ip != nil:
		exposed = !ip.IsLoopback()
	default:
		exposed = host != "localhost"
	}
	return net.JoinHostPort(host, port), exposed, nil
}

// originSpec resolves a local origin given as a relative directory against the
// working directory, and tells a missing local origin or a file plainly. Other
// origins are returned as they are.
func originSpec(spec string) (string, error) {
	dir, given := spec, spec
	switch {
	case strings.HasPrefix(spec, "file://"):
		u, err := url.Parse(spec)
		if err != nil {
			return spec, nil // origin.New says what is wrong with it
		}
		dir = u.Path
	case strings.Contains(spec, "://"):
		return spec, nil
	case !filepath.IsAbs(spec):
		abs, err := filepath.Abs(spec)
		if err != nil {
			return "", fmt.Errorf("origin %s: %v", spec, err)
		}
		dir, spec = abs, abs
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		hint := ""
		// "example.com/data" or "host:8080/data": a URL without its scheme.
		if first, _, _ := strings.Cut(given, "/"); strings.ContainsAny(first, ".:") && first != "." && first != ".." {
			hint = " (a web server or bucket needs its scheme: http://, https:// or s3://)"
		}
		return "", usagef("origin directory %s does not exist%s", dir, hint)
	case err == nil && !fi.IsDir():
		return "", usagef("origin %s is a file, not a directory: an origin must be a directory", dir)
	}
	return spec, nil
}
