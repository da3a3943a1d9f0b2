package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/control"
	"github.com/cachegate/cachegate/internal/origin"
	"github.com/cachegate/cachegate/internal/units"
)

// maxListLine is the longest line of a --from list: far above any real path (Linux
// allows 4096 bytes in a whole path), so a longer one is a wrong file (a binary, a
// JSON document), said with its line number rather than read on.
const maxListLine = 4096

// maxBatchBytes bounds the paths of one warm request, as JSON: half of what the
// owner accepts (control.MaxBody), leaving room for the request's other fields and
// keeping the answer, which may name every path as missing, within what the client
// reads as one line.
const maxBatchBytes = control.MaxBody / 2

// pathList reads a --from list: one origin path a line (as a dataset manifest lists
// them, relative to the origin's root, a leading '/' allowed), '#' comments and
// blank lines skipped, surrounding blanks and a CR before the newline dropped. It
// is read a batch at a time, so a list of any length costs one batch of memory.
type pathList struct {
	r     *bufio.Reader
	name  string   // "FILE" or "stdin", for errors
	line  int      // lines read
	queue []string // paths to batch before the list's: the PATH arguments, then one held back from a full batch
}

func newPathList(r io.Reader, name string) *pathList {
	// Room for a line of maxListLine bytes and its CRLF: ReadSlice fails on longer.
	return &pathList{r: bufio.NewReaderSize(r, maxListLine+2), name: name}
}

// next returns the next path of the list; ok is false at its end.
func (l *pathList) next() (p string, ok bool, err error) {
	if len(l.queue) > 0 {
		p, l.queue = l.queue[0], l.queue[1:]
		return p, true, nil
	}
	for {
		b, err := l.r.ReadSlice('\n')
		if len(b) == 0 && err == io.EOF {
			return "", false, nil
		}
		l.line++
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", false, usagef("%s line %d: longer than %d bytes: give one path a line (is it the right file?)", l.name, l.line, maxListLine)
		}
		if err != nil && err != io.EOF {
			return "", false, fmt.Errorf("read %s: %w", l.name, err)
		}
		raw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if len(raw) > maxListLine {
			return "", false, usagef("%s line %d: longer than %d bytes: give one path a line (is it the right file?)", l.name, l.line, maxListLine)
		}
		s := strings.TrimSpace(raw)
		if s == "" || strings.HasPrefix(s, "#") {
			if err == io.EOF {
				return "", false, nil
			}
			continue
		}
		c, cerr := origin.Clean(s)
		if cerr != nil {
			return "", false, usagef("%s line %d: %v", l.name, l.line, cerr)
		}
		return c, true, nil
	}
}

// batch returns the next paths to send in one request (the queued ones first);
// empty at the end of the list.
func (l *pathList) batch() ([]string, error) {
	var out []string
	size := 0
	for {
		p, ok, err := l.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return out, nil
		}
		n := jsonLen(p) + 1
		if size+n > maxBatchBytes && len(out) > 0 {
			l.queue = append([]string{p}, l.queue...) // the first of the next batch
			return out, nil
		}
		size += n
		out = append(out, p)
	}
}

// jsonLen is the length of p as a JSON string (escapes make it longer than p).
func jsonLen(p string) int {
	b, _ := json.Marshal(p)
	return len(b)
}

// openList opens a --from argument: a file, or "-" for stdin.
func openList(name string) (*pathList, func(), error) {
	if name == "-" {
		return newPathList(os.Stdin, "stdin"), func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, usagef("--from: %v", err)
	}
	return newPathList(f, name), func() { f.Close() }, nil
}

// sumProgress adds the progress of a batch (b) to that of the batches before it
// (a): the one bar and the one --json document are over the whole list.
func sumProgress(a, b cache.WarmProgress) cache.WarmProgress {
	a.Files += b.Files
	a.FilesDone += b.FilesDone
	a.Bytes += b.Bytes
	a.BytesDone += b.BytesDone
	a.Fetched += b.Fetched
	a.NotKept += b.NotKept
	a.Failed += b.Failed
	if a.FirstError == "" {
		a.FirstError = b.FirstError
	}
	a.MissingCount += max(b.MissingCount, len(b.Missing))
	a.Missing = append(a.Missing, b.Missing[:min(len(b.Missing), maxMissingKept-len(a.Missing))]...)
	return a
}

// maxMissingKept bounds the missing paths a warm keeps to name at its end: a list
// checked against the wrong origin may miss every one of millions of lines.
const maxMissingKept = 1000

// Rate is a --bwlimit value: bytes per second as a size ("50MiB", "500k", "1.5M",
// with an optional "/s"); 0 is no limit.
type Rate int64

// minRate is the smallest limit: below, a chunk takes minutes to arrive, and the
// fetch gives up (--origin-timeout) long before; 0 turns the limit off.
const minRate = 4 << 10

// Decode parses a --bwlimit value and checks its range (a kong.MapperValue).
func (r *Rate) Decode(ctx *kong.DecodeContext) error {
	v, err := popNumber(ctx)
	if err != nil {
		return err
	}
	s := strings.TrimSpace(v)
	s = strings.TrimSuffix(s, "/s") // "50MiB/s"
	if strings.HasPrefix(s, "-") {
		return fmt.Errorf("%q is negative: give bytes per second, e.g. 50MiB, or 0 for no limit%s", v, defaultHint(ctx))
	}
	n, err := units.ParseSize(s)
	if err != nil {
		return fmt.Errorf("%q is not a rate: give bytes per second, e.g. 500k, 1.5M, 50MiB (0: no limit)", v)
	}
	if n != 0 && n < minRate {
		return fmt.Errorf("%s is out of range: 0 (no limit) or at least %s per second%s", v, fmtSize(minRate), defaultHint(ctx))
	}
	*r = Rate(n)
	return nil
}
