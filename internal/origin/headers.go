package origin

import (
	"bufio"
	"fmt"
	"log/slog"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"time"
)

// forbiddenHeaders are the headers an origin request's framing or caching
// correctness depends on: cachegate sets them itself (Range, If-Match, …) or the
// transport does (Host, Content-Length, …), so a user value would corrupt reads.
var forbiddenHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true,
	"Range": true, "Keep-Alive": true, "Upgrade": true, "Te": true, "Trailer": true,
	"Accept-Encoding": true,
}

// ParseHeaders parses "Name: value" lines into a header set. Errors name the
// header but never its value, which is typically a secret.
func ParseHeaders(lines []string) (http.Header, error) {
	h := http.Header{}
	for i, l := range lines {
		name, value, ok := strings.Cut(l, ":")
		name = strings.TrimSpace(name)
		if !ok {
			// Not even a prefix is shown: a line without a colon may be a bare token.
			return nil, fmt.Errorf("header %d has no colon: use \"Name: value\"", i+1)
		}
		if name == "" || strings.ContainsAny(name, " \t\r\n\x00") || !validHeaderName(name) {
			return nil, fmt.Errorf("header name %q is not a valid HTTP header name", name)
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return nil, fmt.Errorf("header %s: the value must not contain CR, LF or NUL", name)
		}
		canon := textproto.CanonicalMIMEHeaderKey(name)
		if forbiddenHeaders[canon] || strings.HasPrefix(canon, "If-") {
			return nil, fmt.Errorf("header %s cannot be set: cachegate or the HTTP transport sets it itself", canon)
		}
		h.Add(canon, strings.TrimSpace(value))
	}
	return h, nil
}

func validHeaderName(n string) bool {
	for _, c := range []byte(n) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// headerFile holds the headers of --origin-header-file, reread when the file's
// size or mtime changes (checked at most once a second), so a rotated token takes
// effect without a restart. A file that becomes unreadable or invalid keeps the
// last good headers and logs a warning once per change.
type headerFile struct {
	path string
	mu   sync.Mutex
	hdr  http.Header
	mod  time.Time
	size int64
	next time.Time // no stat before this
	bad  string    // the last warning logged, to log each failure once
}

// maxHeaderFile bounds what a header file may make us read and hold.
const maxHeaderFile = 64 << 10

func newHeaderFile(path string) (*headerFile, error) {
	f := &headerFile{path: path}
	if err := f.load(); err != nil {
		return nil, &UsageError{fmt.Sprintf("--origin-header-file %s: %v", path, err)}
	}
	return f, nil
}

func (f *headerFile) load() error {
	fi, err := os.Stat(f.path)
	if err != nil {
		return err
	}
	if fi.Size() > maxHeaderFile {
		return fmt.Errorf("larger than %d bytes", maxHeaderFile)
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return err
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		lines = append(lines, l)
	}
	hdr, err := ParseHeaders(lines)
	if err != nil {
		return err
	}
	f.hdr, f.mod, f.size = hdr, fi.ModTime(), fi.Size()
	return nil
}

// headers returns the current headers, rereading the file if it changed.
func (f *headerFile) headers() http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if now.Before(f.next) {
		return f.hdr
	}
	f.next = now.Add(time.Second)
	fi, err := os.Stat(f.path)
	if err == nil && fi.ModTime().Equal(f.mod) && fi.Size() == f.size {
		return f.hdr
	}
	if err == nil {
		err = f.load()
	}
	if err != nil {
		if msg := err.Error(); msg != f.bad {
			f.bad = msg
			slog.Warn("cannot reread --origin-header-file; keeping the last good headers", "file", f.path, "err", err)
		}
		return f.hdr
	}
	f.bad = ""
	return f.hdr
}
