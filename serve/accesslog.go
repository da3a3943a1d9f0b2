package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// AccessLog writes one line per answered request, as nginx's access_log does: the
// combined format plus request time, X-Cache and X-Transfer, or JSON lines.
//
// Requests never wait for the disk. A line is appended to a buffer in memory and a
// goroutine of the log's own writes buffers out; when maxPendingLog bytes wait
// (the disk is stuck or far too slow), new lines are dropped and counted rather than
// held. Reopen (on SIGHUP) writes what is pending to the old file and opens the path
// again, as logrotate expects: rename the file, send SIGHUP, new lines go to a new
// file.
type AccessLog struct {
	path   string // "" for a writer given by the caller (stdout, tests)
	json   bool
	logger *slog.Logger

	mu      sync.Mutex
	buf     []byte // lines not handed to the writer yet; guarded by mu
	closed  bool   // guarded by mu
	dropped atomic.Int64
	warned  atomic.Int64 // unix ns of the last warning about drops or write errors

	kick    chan struct{}   // a line is pending (capacity 1)
	ctl     chan chan error // flush (and reopen when the log has a path)
	reopen  atomic.Bool     // the next ctl request reopens
	quit    chan struct{}   // Close
	stopped chan struct{}   // the writer goroutine is done
	w       io.Writer       // owned by the writer goroutine
	f       *os.File        // the open file, nil for a caller's writer
	spare   []byte          // owned by the writer goroutine
}

// maxPendingLog is the most bytes of lines that wait for the disk; past it lines
// are dropped. A line is at most a few header lines long (8 KiB each).
const maxPendingLog = 1 << 20

// OpenAccessLog opens the access log at path ("-" for standard output) in format
// "combined" (the default) or "json". log, when set, receives warnings about lines
// dropped and writes that failed.
func OpenAccessLog(path, format string, log *slog.Logger) (*AccessLog, error) {
	var js bool
	switch format {
	case "", "combined":
	case "json":
		js = true
	default:
		return nil, fmt.Errorf("--access-log-format %q: want combined or json", format)
	}
	if path == "-" {
		return newAccessLog(os.Stdout, "", js, log), nil
	}
	f, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	a := newAccessLog(f, path, js, log)
	a.f = f
	return a, nil
}

func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open access log: %w", err)
	}
	return f, nil
}

func newAccessLog(w io.Writer, path string, js bool, log *slog.Logger) *AccessLog {
	if log == nil {
		log = slog.Default()
	}
	a := &AccessLog{path: path, json: js, logger: log, w: w, kick: make(chan struct{}, 1),
		ctl: make(chan chan error), quit: make(chan struct{}), stopped: make(chan struct{})}
	go a.run()
	return a
}

func (a *AccessLog) run() {
	defer close(a.stopped)
	for {
		select {
		case <-a.kick:
			a.writePending()
		case done := <-a.ctl:
			a.writePending()
			var err error
			if a.reopen.Swap(false) && a.path != "" {
				err = a.reopenFile()
			}
			done <- err
		case <-a.quit:
			a.writePending()
			if a.f != nil {
				a.f.Close()
			}
			return
		}
	}
}

// writePending hands the pending lines to the writer, outside the lock, so that
// requests keep appending while the disk is slow.
func (a *AccessLog) writePending() {
	a.mu.Lock()
	b := a.buf
	a.buf, a.spare = a.spare[:0], nil
	a.mu.Unlock()
	if len(b) > 0 {
		if _, err := a.w.Write(b); err != nil {
			a.dropped.Add(int64(bytes.Count(b, []byte{'\n'})))
			a.warn("cannot write the access log; lines are lost until it works again", "path", a.path, "err", err)
		}
	}
	if cap(b) <= 64<<10 { // keep a small buffer, let a burst's large one go
		a.spare = b[:0]
	}
}

func (a *AccessLog) reopenFile() error {
	f, err := openLogFile(a.path)
	if err != nil {
		// Keep writing to the old file rather than losing lines.
		a.logger.Error("cannot reopen the access log; still writing to the old file", "path", a.path, "err", err)
		return err
	}
	a.f.Close()
	a.f, a.w = f, f
	return nil
}

// warn logs at most once a minute.
func (a *AccessLog) warn(msg string, args ...any) {
	now, last := time.Now().UnixNano(), a.warned.Load()
	if now-last < int64(time.Minute) || !a.warned.CompareAndSwap(last, now) {
		return
	}
	a.logger.Warn(msg, args...)
}

// Reopen writes what is pending and opens the log's path again (logrotate's
// SIGHUP). Standard output is left as it is.
func (a *AccessLog) Reopen() error {
	a.reopen.Store(true)
	return a.flush()
}

// flush waits until the lines logged so far have been handed to the file.
func (a *AccessLog) flush() error {
	done := make(chan error, 1)
	select {
	case a.ctl <- done:
		return <-done
	case <-a.stopped:
		return errors.New("access log closed")
	}
}

// Close writes what is pending, waiting for a stuck disk at most a few seconds, and
// closes the file. Lines logged afterwards are dropped.
func (a *AccessLog) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	close(a.quit)
	select {
	case <-a.stopped:
	case <-time.After(5 * time.Second):
		return errors.New("access log: the disk did not take the last lines within 5s")
	}
	return nil
}

// Dropped returns how many lines were lost: dropped because the disk did not keep
// up, or in writes that failed.
func (a *AccessLog) Dropped() int64 { return a.dropped.Load() }

func (a *AccessLog) pendingBytes() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.buf)
}

// accessEntry is what the log records of one request.
type accessEntry struct {
	start                 time.Time
	remote                string
	method, target, proto string // "" when the request could not be parsed
	referer, userAgent    string
	status                int
	bytes                 int64 // body bytes sent
	dur                   time.Duration
	xCache, xTransfer     string // "" when the answer is not about a file
}

// log appends e's line, or drops it when too much is pending.
func (a *AccessLog) log(e *accessEntry) {
	var line []byte
	if a.json {
		line = e.appendJSON(make([]byte, 0, 256))
	} else {
		line = e.appendCombined(make([]byte, 0, 256))
	}
	a.mu.Lock()
	if a.closed || len(a.buf)+len(line) > maxPendingLog {
		closed := a.closed
		a.mu.Unlock()
		if !closed {
			a.dropped.Add(1)
			a.warn("the access log's disk does not keep up; dropping lines", "path", a.path, "dropped", a.dropped.Load())
		}
		return
	}
	a.buf = append(a.buf, line...)
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// appendCombined appends nginx's combined format, then request time (seconds, ms
// resolution as nginx's $request_time), X-Cache and X-Transfer ("-" when none):
//
//	127.0.0.1 - - [03/Dec/2026:10:00:00 +0000] "GET /f HTTP/1.1" 200 5 "-" "curl/8" 0.001 HIT sendfile
//
// The user is always "-": a bearer token is not logged.
func (e *accessEntry) appendCombined(b []byte) []byte {
	b = appendEscaped(b, orDash(e.remote))
	b = append(b, " - - ["...)
	b = e.start.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	if e.method == "" {
		b = append(b, '-')
	} else {
		b = appendEscaped(b, e.method)
		b = append(b, ' ')
		b = appendEscaped(b, e.target)
		b = append(b, ' ')
		b = appendEscaped(b, e.proto)
	}
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.bytes, 10)
	b = append(b, " \""...)
	b = appendEscaped(b, orDash(e.referer))
	b = append(b, "\" \""...)
	b = appendEscaped(b, orDash(e.userAgent))
	b = append(b, "\" "...)
	b = strconv.AppendFloat(b, e.dur.Seconds(), 'f', 3, 64)
	b = append(b, ' ')
	b = append(b, orDash(e.xCache)...)
	b = append(b, ' ')
	b = append(b, orDash(e.xTransfer)...)
	return append(b, '\n')
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// appendEscaped appends s with quotes, backslashes, control bytes and bytes
// outside ASCII as \xHH, as nginx escapes logged variables: a client cannot end a
// field or a line, nor send escape sequences to a terminal showing the log.
func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' || c < 0x20 || c >= 0x7f {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
}

// jsonEntry is a JSON line; the field names are part of the interface.
type jsonEntry struct {
	Time          string  `json:"time"`
	RemoteAddr    string  `json:"remote_addr"`
	Method        string  `json:"method"`
	URI           string  `json:"uri"`
	Protocol      string  `json:"protocol"`
	Status        int     `json:"status"`
	BodyBytesSent int64   `json:"body_bytes_sent"`
	Referer       string  `json:"referer"`
	UserAgent     string  `json:"user_agent"`
	RequestTime   float64 `json:"request_time"`
	XCache        string  `json:"x_cache"`
	XTransfer     string  `json:"x_transfer"`
}

// appendJSON appends e as one JSON object and a newline. encoding/json escapes
// control characters (a line cannot be split) and replaces invalid UTF-8.
func (e *accessEntry) appendJSON(b []byte) []byte {
	j, _ := json.Marshal(jsonEntry{
		Time: e.start.Format("2006-01-02T15:04:05.000Z07:00"), RemoteAddr: e.remote,
		Method: e.method, URI: e.target, Protocol: e.proto, Status: e.status, BodyBytesSent: e.bytes,
		Referer: e.referer, UserAgent: e.userAgent, RequestTime: float64(e.dur.Microseconds()) / 1e6,
		XCache: e.xCache, XTransfer: e.xTransfer,
	})
	b = append(b, j...)
	return append(b, '\n')
}
