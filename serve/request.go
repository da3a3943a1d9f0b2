package serve

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
)

// request is the part of an HTTP/1.1 request the server acts on. cachegate parses
// requests itself rather than with net/http so that a response can be written with one
// writev or a send+sendfile on the raw socket, and a keep-alive request costs no
// allocation of a header map.
type request struct {
	method, target     string
	proto              string // "HTTP/1.1" or "HTTP/1.0"
	rangeH, ifRange    string
	ifMatch            string
	ifUnmodifiedSince  string
	ifNoneMatch        string
	ifModifiedSince    string
	accept, auth, host string
	peer               string // X-Cachegate-Peer: the sending member's URL
	referer, userAgent string // for the access log
	keepAlive          bool
	contentLength      int64 // -1 when the header is absent
	chunked            bool  // a Transfer-Encoding header came (any coding)
}

// hasBody reports whether the request announces a body. The server never reads
// one: GET and HEAD with a body are refused, other methods answered and closed.
func (r *request) hasBody() bool { return r.contentLength > 0 || r.chunked }

// errHeaderTooLarge means the request header exceeded the limit: answer 431 and close.
var errHeaderTooLarge = errors.New("request header too large")

// errBadRequest wraps malformed requests: answer 400 and close.
var errBadRequest = errors.New("bad request")

// readRequest reads one request header from br, at most limit bytes of it.
func readRequest(br *bufio.Reader, limit int) (*request, error) {
	total := 0
	readLine := func() ([]byte, error) {
		line, err := br.ReadSlice('\n')
		total += len(line)
		if err == bufio.ErrBufferFull || total > limit {
			return nil, errHeaderTooLarge
		}
		if err != nil {
			return nil, err
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
		return line, nil
	}
	var line []byte
	var err error
	// RFC 9112 §2.2: ignore at least one empty line before the request line.
	for i := 0; i < 4; i++ {
		if line, err = readLine(); err != nil || len(line) > 0 {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	r := &request{contentLength: -1}
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 {
		return nil, fmt.Errorf("%w: request line %q", errBadRequest, truncate(line))
	}
	r.method = string(line[:sp1])
	r.target = string(line[sp1+1 : sp2])
	r.proto = string(line[sp2+1:])
	switch r.proto {
	case "HTTP/1.1":
		r.keepAlive = true
	case "HTTP/1.0":
	default:
		return nil, fmt.Errorf("%w: protocol %q", errBadRequest, truncate([]byte(r.proto)))
	}
	sawHost := false
	for {
		line, err = readLine()
		if err != nil {
			if err == errHeaderTooLarge {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errBadRequest, err)
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, fmt.Errorf("%w: obsolete header folding", errBadRequest)
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return nil, fmt.Errorf("%w: header line %q", errBadRequest, truncate(line))
		}
		name := line[:colon]
		if bytes.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("%w: space in header name %q", errBadRequest, truncate(name))
		}
		value := string(bytes.TrimSpace(line[colon+1:]))
		switch {
		case eqFold(name, "host"):
			if sawHost {
				return nil, fmt.Errorf("%w: two Host headers", errBadRequest)
			}
			sawHost = true
			r.host = value
		case eqFold(name, "range"):
			r.rangeH = value
		case eqFold(name, "if-range"):
			r.ifRange = value
		case eqFold(name, "if-match"):
			r.ifMatch = value
		case eqFold(name, "if-unmodified-since"):
			r.ifUnmodifiedSince = value
		case eqFold(name, "if-none-match"):
			r.ifNoneMatch = value
		case eqFold(name, "if-modified-since"):
			r.ifModifiedSince = value
		case eqFold(name, "referer"):
			r.referer = value
		case eqFold(name, "user-agent"):
			r.userAgent = value
		case eqFold(name, "accept"):
			r.accept = value
		case eqFold(name, "authorization"):
			r.auth = value
		case eqFold(name, "x-cachegate-peer"):
			r.peer = value
		case eqFold(name, "connection"):
			for _, tok := range splitList(value) {
				switch {
				case eqFold([]byte(tok), "close"):
					r.keepAlive = false
				case eqFold([]byte(tok), "keep-alive"):
					r.keepAlive = true
				}
			}
		case eqFold(name, "content-length"):
			// Digits only (no sign, no list), and a repeated header must agree: a
			// length two parsers could read differently is how requests are smuggled.
			n, err := parseDigits(value)
			if err != nil || (r.contentLength >= 0 && n != r.contentLength) {
				return nil, fmt.Errorf("%w: Content-Length %q", errBadRequest, truncate([]byte(value)))
			}
			r.contentLength = n
		case eqFold(name, "transfer-encoding"):
			r.chunked = true
		}
	}
	if r.proto == "HTTP/1.1" && !sawHost {
		return nil, fmt.Errorf("%w: HTTP/1.1 request without Host", errBadRequest)
	}
	return r, nil
}

func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "…"
	}
	return string(b)
}

// eqFold compares an ASCII header name with a lower-case literal.
func eqFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// splitList splits a comma-separated header value, trimming spaces.
func splitList(v string) []string {
	var out []string
	for len(v) > 0 {
		var item string
		if i := bytes.IndexByte([]byte(v), ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, ""
		}
		item = string(bytes.TrimSpace([]byte(item)))
		if item != "" {
			out = append(out, item)
		}
	}
	return out
}
