package origin

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// maxNetrc bounds what a netrc file may make us read and hold; real ones are a
// few lines.
const maxNetrc = 1 << 20

// maxNetrcToken bounds one token (a host, login or password): longer ones are
// not credentials but a damaged file.
const maxNetrcToken = 8 << 10

// netrcCreds are the login and password of one netrc entry.
type netrcCreds struct {
	login, password string
}

// parseNetrc returns the credentials netrc data gives host, as curl reads the
// file: whitespace-separated tokens across lines; "machine NAME" starts an entry
// and the first one naming host (without its port, case-insensitively) wins;
// "default" matches any host and ends the lookup; "login", "password" and
// "account" take a value; "macdef NAME" is followed by a macro that runs to the
// next empty line and is skipped; '#' starts a comment up to the end of the line;
// values may be quoted ("a b", with \" \\ \n \r \t escapes). found is false when
// no entry applies. Errors give the line, never a token, which may be a password.
func parseNetrc(data, host string) (c netrcCreds, found bool, err error) {
	if len(data) > maxNetrc {
		return netrcCreds{}, false, fmt.Errorf("larger than %d bytes", maxNetrc)
	}
	p := netrcLexer{s: data, line: 1}
	// in: the entry being read matches host; done: stop at the next entry.
	in := false
	for {
		tok, ok, err := p.next()
		if err != nil {
			return netrcCreds{}, false, err
		}
		if !ok {
			return c, found, nil
		}
		switch tok {
		case "machine", "default":
			if found {
				return c, true, nil // the matching entry has ended
			}
			in = tok == "default"
			if tok == "machine" {
				name, ok, err := p.value(tok)
				if err != nil || !ok {
					return netrcCreds{}, false, err
				}
				in = strings.EqualFold(name, host)
			}
			found = in
		case "login", "password", "account":
			v, ok, err := p.value(tok)
			if err != nil || !ok {
				return netrcCreds{}, false, err
			}
			switch {
			case !in:
			case tok == "login":
				c.login = v
			case tok == "password":
				c.password = v
			}
		case "macdef":
			if _, ok, err := p.value(tok); err != nil || !ok {
				return netrcCreds{}, false, err
			}
			p.skipMacro()
		default:
			// curl ignores words it does not know (e.g. other programs' keywords).
		}
	}
}

// netrcLexer splits a netrc file into tokens, counting lines for errors.
type netrcLexer struct {
	s    string
	i    int
	line int
}

// next returns the next token; ok is false at the end of the input.
func (l *netrcLexer) next() (tok string, ok bool, err error) {
	for l.i < len(l.s) {
		switch c := l.s[l.i]; {
		case c == '\n':
			l.line++
			l.i++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			l.i++
		case c == '#':
			for l.i < len(l.s) && l.s[l.i] != '\n' {
				l.i++
			}
		case c == '"':
			return l.quoted()
		default:
			start := l.i
			for l.i < len(l.s) && !strings.ContainsRune(" \t\r\n\f\v", rune(l.s[l.i])) {
				l.i++
			}
			if l.i-start > maxNetrcToken {
				return "", false, fmt.Errorf("line %d: a word longer than %d bytes", l.line, maxNetrcToken)
			}
			return l.s[start:l.i], true, nil
		}
	}
	return "", false, nil
}

// quoted reads a double-quoted token starting at l.i.
func (l *netrcLexer) quoted() (string, bool, error) {
	start := l.line
	l.i++ // the opening quote
	var b strings.Builder
	for l.i < len(l.s) {
		c := l.s[l.i]
		l.i++
		switch c {
		case '"':
			return b.String(), true, nil
		case '\n':
			return "", false, fmt.Errorf("line %d: a quoted string does not end on its line", start)
		case '\\':
			if l.i < len(l.s) {
				e := l.s[l.i]
				l.i++
				switch e {
				case 'n':
					e = '\n'
				case 'r':
					e = '\r'
				case 't':
					e = '\t'
				}
				c = e
			}
		}
		if b.Len() >= maxNetrcToken {
			return "", false, fmt.Errorf("line %d: a quoted string longer than %d bytes", start, maxNetrcToken)
		}
		b.WriteByte(c)
	}
	return "", false, fmt.Errorf("line %d: a quoted string has no closing quote", start)
}

// value returns the token after keyword kw, which must be there.
func (l *netrcLexer) value(kw string) (string, bool, error) {
	v, ok, err := l.next()
	if err == nil && !ok {
		err = fmt.Errorf("line %d: %q has no value", l.line, kw)
	}
	return v, ok, err
}

// skipMacro skips a macdef's body: the rest of its line and the lines up to the
// next empty one.
func (l *netrcLexer) skipMacro() {
	for l.i < len(l.s) && l.s[l.i] != '\n' {
		l.i++
	}
	for l.i < len(l.s) {
		// l.s[l.i] is a newline ending a line of the macro (or its name's line).
		l.i++
		l.line++
		if l.i >= len(l.s) || l.s[l.i] == '\n' {
			return
		}
		for l.i < len(l.s) && l.s[l.i] != '\n' {
			l.i++
		}
	}
}

// netrcPath is $NETRC when set, as curl reads it, else ~/.netrc; explicit
// reports that the user named the file, so it must exist.
func netrcPath() (path string, explicit bool) {
	if p := os.Getenv("NETRC"); p != "" {
		return p, true
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", false
	}
	return filepath.Join(home, ".netrc"), false
}

// netrcAuth returns the netrc credentials for host (without its port), or
// found=false. A missing ~/.netrc is no error; a missing $NETRC, an unreadable or
// a malformed file is a UsageError naming the file (never a token of it).
//
// A file that other users can read is used, with a warning: curl and wget use it
// silently, Python's netrc and ftp refuse it. Refusing would break a setup that
// works with curl, the tool a user checks the origin with; saying nothing would hide
// a leaked password, so we warn as ssh does about its keys.
func netrcAuth(host string) (c netrcCreds, found bool, err error) {
	path, explicit := netrcPath()
	if path == "" {
		return netrcCreds{}, false, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return netrcCreds{}, false, nil
	}
	if err != nil {
		return netrcCreds{}, false, &UsageError{fmt.Sprintf("netrc %s: %v", path, err)}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return netrcCreds{}, false, &UsageError{fmt.Sprintf("netrc %s: %v", path, err)}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxNetrc+1))
	if err != nil {
		return netrcCreds{}, false, &UsageError{fmt.Sprintf("netrc %s: %v", path, err)}
	}
	c, found, err = parseNetrc(string(b), host)
	if err != nil {
		return netrcCreds{}, false, &UsageError{fmt.Sprintf("netrc %s: %v", path, err)}
	}
	if found && c.password != "" && fi.Mode().Perm()&0o077 != 0 {
		slog.Warn("netrc file is readable by other users: its password for the origin is used, but run chmod 600 on it", "file", path, "mode", fmt.Sprintf("%#o", fi.Mode().Perm()), "host", host)
	}
	return c, found, nil
}
