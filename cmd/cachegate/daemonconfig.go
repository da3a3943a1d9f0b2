package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cachegate/cachegate/internal/control"
	"github.com/cachegate/cachegate/internal/origin"
	"github.com/cachegate/cachegate/internal/peer"
	"github.com/cachegate/cachegate/internal/units"
	"go.yaml.in/yaml/v3"
)

// The daemon's config file (issue 22): YAML of this shape, field names fixed.
//
//	cache:   {dir, size, min_free, chunk_size}
//	serve:   {listen, transfer, auth_token_file,       # optional
//	          peers, advertise, peer_span, peer_copy, peer_timeout, peer_ca}
//	metrics: ADDR                                      # optional
//	origins: [{name, url, mount, serve, metadata_ttl, origin_timeout, headers, uid, gid,
//	           allow_other, s3_endpoint, s3_region, trust_html_index}, …]
//
// Unknown keys are errors, sizes and durations read as on the command line, and every
// problem is reported as FILE:LINE: problem, all of them at once.

// at is a config value with the line it was written on (0: absent).
type at[T any] struct {
	V    T
	Line int
}

func (a *at[T]) UnmarshalYAML(n *yaml.Node) error {
	a.Line = n.Line
	return n.Decode(&a.V)
}

type configFile struct {
	Cache   cacheSection    `yaml:"cache"`
	Serve   *serveSection   `yaml:"serve"`
	Metrics at[string]      `yaml:"metrics"`
	Origins []originSection `yaml:"origins"`
}

type cacheSection struct {
	Dir       at[string] `yaml:"dir"`
	Size      at[string] `yaml:"size"`
	MinFree   at[string] `yaml:"min_free"`
	ChunkSize at[string] `yaml:"chunk_size"`
}

type serveSection struct {
	Listen        at[string] `yaml:"listen"`
	Transfer      at[string] `yaml:"transfer"`
	AuthTokenFile at[string] `yaml:"auth_token_file"`
	// A peer group (README's Scaling out), as serve's --peers… flags.
	Peers       at[[]string] `yaml:"peers"`
	Advertise   at[string]   `yaml:"advertise"`
	PeerSpan    at[string]   `yaml:"peer_span"`
	PeerCopy    at[string]   `yaml:"peer_copy"`
	PeerTimeout at[string]   `yaml:"peer_timeout"`
	PeerCA      at[string]   `yaml:"peer_ca"`
}

type originSection struct {
	Name        at[string]   `yaml:"name"`
	URL         at[string]   `yaml:"url"`
	Mount       at[string]   `yaml:"mount"`
	Serve       at[bool]     `yaml:"serve"`
	MetadataTTL at[string]   `yaml:"metadata_ttl"`
	Timeout     at[string]   `yaml:"origin_timeout"`
	Headers     at[[]string] `yaml:"headers"`
	UID         at[uint32]   `yaml:"uid"`
	GID         at[uint32]   `yaml:"gid"`
	AllowOther  at[bool]     `yaml:"allow_other"`
	S3Endpoint  at[string]   `yaml:"s3_endpoint"`
	S3Region    at[string]   `yaml:"s3_region"`
	TrustHTML   at[bool]     `yaml:"trust_html_index"`
}

// knownKeys names each section's keys for the unknown-key error.
var knownKeys = map[string]string{
	"configFile":    "cache, serve, metrics, origins",
	"cacheSection":  "dir, size, min_free, chunk_size",
	"serveSection":  "listen, transfer, auth_token_file, peers, advertise, peer_span, peer_copy, peer_timeout, peer_ca",
	"originSection": "name, url, mount, serve, metadata_ttl, origin_timeout, headers, uid, gid, allow_other, s3_endpoint, s3_region, trust_html_index",
}

// daemonConfig is a parsed, validated config.
type daemonConfig struct {
	File      string
	CacheDir  string
	CacheSize int64
	MinFree   FreeSpace
	ChunkSize int64
	Serve     *daemonServe // nil: no server
	Metrics   string
	Origins   []daemonOrigin
}

type daemonServe struct {
	Listen, Transfer, AuthTokenFile string
	Peers                           peerFlags // no group: the daemon makes its own (run)
	peersLine                       int
}

// same reports whether s and t configure the same server (where they are written aside).
func (s *daemonServe) same(t *daemonServe) bool {
	if s == nil || t == nil {
		return s == t
	}
	a, b := *s, *t
	a.peersLine, b.peersLine = 0, 0
	return reflect.DeepEqual(a, b)
}

type daemonOrigin struct {
	Name, URL, Mount       string
	Serve                  bool
	MetadataTTL            time.Duration // 0: the default (1m)
	Timeout                time.Duration // of each request to it; 0: the default (30s)
	Headers                []string
	UID, GID               *uint32
	AllowOther             bool
	S3Endpoint, S3Region   string
	TrustHTMLIndex         bool // --trust-html-index
	line, urlLine, mntLine int  // where it was written, for checkDaemonConfig's errors
}

// same reports whether o and p configure the same origin (where they are written aside).
func (o daemonOrigin) same(p daemonOrigin) bool {
	o.line, o.urlLine, o.mntLine = 0, 0, 0
	p.line, p.urlLine, p.mntLine = 0, 0, 0
	return reflect.DeepEqual(o, p)
}

// configError is every problem of a config, one "FILE:LINE: problem" each.
type configError struct{ problems []string }

func (e *configError) Error() string { return strings.Join(e.problems, "\n") }

// maxConfigSize bounds what is read of a config file: a real one is a few KiB.
const maxConfigSize = 1 << 20

// loadDaemonConfig reads, parses and checks the config file.
func loadDaemonConfig(file string) (*daemonConfig, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, &configError{[]string{fmt.Sprintf("%s: cannot read the config: %v", file, errors.Unwrap(err))}}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, &configError{[]string{fmt.Sprintf("%s: cannot read the config: %v", file, err)}}
	}
	if len(b) > maxConfigSize {
		return nil, &configError{[]string{fmt.Sprintf("%s:1: the config is larger than %s: is it the right file?", file, units.FormatSize(maxConfigSize))}}
	}
	cfg, err := parseDaemonConfig(file, b)
	if err != nil {
		return nil, err
	}
	if err := checkDaemonConfig(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

var (
	yamlLineRE     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownFieldRE = regexp.MustCompile(`^field (\S+) not found in type main\.(\w+)$`)
)

// parseDaemonConfig parses and validates a config without looking at the system
// (checkDaemonConfig does that): what FuzzDaemonConfig runs.
func parseDaemonConfig(file string, b []byte) (*daemonConfig, error) {
	var ps problems
	add := ps.adder(file)
	var raw configFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(&raw)
	switch {
	case errors.Is(err, io.EOF):
		add(1, "the config is empty: it needs a cache: section and origins:")
		return nil, ps.err()
	case err != nil:
		var te *yaml.TypeError
		msgs := []string{err.Error()}
		if errors.As(err, &te) {
			msgs = te.Errors
		}
		for _, m := range msgs {
			line, msg := 1, m
			if g := yamlLineRE.FindStringSubmatch(m); g != nil {
				line, _ = strconv.Atoi(g[1])
				msg = g[2]
			}
			if g := unknownFieldRE.FindStringSubmatch(msg); g != nil {
				msg = fmt.Sprintf("unknown key %q (known here: %s)", g[1], knownKeys[g[2]])
			}
			add(line, "%s", strings.TrimPrefix(msg, "yaml: "))
		}
		if te == nil {
			return nil, ps.err() // a syntax error: nothing more to check
		}
	}
	var extra yaml.Node
	if dec.Decode(&extra) == nil {
		add(extra.Line, "a second YAML document: the config is one")
	}

	cfg := &daemonConfig{File: file, CacheDir: defaultCacheDir(), CacheSize: 10 << 30, MinFree: FreeSpace{Pct: 5}, ChunkSize: 1 << 20}
	size := func(a at[string], what string, dst *int64) {
		if a.Line == 0 {
			return
		}
		n, err := units.ParseSize(a.V)
		if err != nil {
			add(a.Line, "%s: %v", what, err)
			return
		}
		*dst = n
	}
	if d := raw.Cache.Dir; d.Line > 0 {
		if !filepath.IsAbs(d.V) {
			add(d.Line, "cache.dir %q is not an absolute path", d.V)
		}
		cfg.CacheDir = filepath.Clean(d.V)
	}
	size(raw.Cache.Size, "cache.size", &cfg.CacheSize)
	size(raw.Cache.ChunkSize, "cache.chunk_size", &cfg.ChunkSize)
	if m := raw.Cache.MinFree; m.Line > 0 {
		if err := cfg.MinFree.UnmarshalText([]byte(m.V)); err != nil {
			add(m.Line, "cache.min_free: %v", err)
		}
	}
	if c := cfg.ChunkSize; c < 4096 || c > 1<<30 || c%4096 != 0 {
		add(raw.Cache.ChunkSize.Line, "cache.chunk_size %s is not a multiple of 4KiB from 4KiB to 1GiB", raw.Cache.ChunkSize.V)
	} else if cfg.CacheSize < 4*c {
		add(raw.Cache.Size.Line, "cache.size %s must hold at least 4 chunks (%s)", orDefault(raw.Cache.Size.V, "10GiB"), units.FormatSize(4*c))
	}
	if s := raw.Serve; s != nil {
		cfg.Serve = &daemonServe{Listen: "127.0.0.1:8080", Transfer: "auto", AuthTokenFile: s.AuthTokenFile.V}
		if s.Listen.Line > 0 {
			if _, _, err := listenAddr(s.Listen.V); err != nil {
				add(s.Listen.Line, "serve.listen: %v", err)
			}
			cfg.Serve.Listen = s.Listen.V
		}
		if t := s.Transfer; t.Line > 0 {
			switch t.V {
			case "auto", "sendfile", "mmap", "copy":
				cfg.Serve.Transfer = t.V
			default:
				add(t.Line, "serve.transfer %q: use auto, sendfile, mmap or copy", t.V)
			}
		}
		pf := &cfg.Serve.Peers
		pf.Peers, pf.Advertise, pf.PeerCA = s.Peers.V, s.Advertise.V, s.PeerCA.V
		pf.PeerSpan, pf.PeerCopy, pf.PeerTimeout = Size(peer.DefaultSpan), "local", peer.DefaultTimeout
		cfg.Serve.peersLine = max(s.Peers.Line, s.Advertise.Line, 1)
		if a := s.PeerSpan; a.Line > 0 {
			if n, err := units.ParseSize(a.V); err != nil || n <= 0 {
				add(a.Line, "serve.peer_span %q: use a positive size, e.g. 64MiB", a.V)
			} else {
				pf.PeerSpan = Size(n)
			}
		}
		if a := s.PeerCopy; a.Line > 0 {
			if a.V != "local" && a.V != "owner" {
				add(a.Line, "serve.peer_copy %q: use local or owner", a.V)
			}
			pf.PeerCopy = a.V
		}
		if a := s.PeerTimeout; a.Line > 0 {
			if d, err := time.ParseDuration(a.V); err != nil || d <= 0 {
				add(a.Line, "serve.peer_timeout %q: use a positive duration, e.g. 2s", a.V)
			} else {
				pf.PeerTimeout = d
			}
		}
		if len(pf.Peers) == 0 {
			for _, a := range []at[string]{s.Advertise, s.PeerSpan, s.PeerCopy, s.PeerTimeout, s.PeerCA} {
				if a.Line > 0 {
					add(a.Line, "serve.peers is not set: the peer_* keys and advertise configure a peer group")
					break
				}
			}
		}
	}
	if m := raw.Metrics; m.Line > 0 {
		if _, _, err := listenAddr(m.V); err != nil {
			add(m.Line, "metrics: %v", err)
		}
		cfg.Metrics = m.V
	}
	if len(raw.Origins) == 0 {
		add(1, "no origins: add an origins: list with a name and a url each")
	}
	names, mounts := map[string]int{}, map[string]int{}
	for i, r := range raw.Origins {
		o := daemonOrigin{Name: r.Name.V, URL: r.URL.V, Mount: r.Mount.V, Serve: r.Serve.V, Headers: r.Headers.V,
			AllowOther: r.AllowOther.V, S3Endpoint: r.S3Endpoint.V, S3Region: r.S3Region.V, TrustHTMLIndex: r.TrustHTML.V,
			line: max(r.Name.Line, r.URL.Line), urlLine: r.URL.Line, mntLine: r.Mount.Line}
		what := fmt.Sprintf("origins[%d]", i)
		switch {
		case r.Name.Line == 0:
			add(o.line, "%s has no name: give it one of [a-z0-9_-]", what)
		case !origin.ValidRouteName(o.Name):
			add(r.Name.Line, "origin name %q: use lower-case letters, digits, _ and - (at most 64, not first): it is a path element and the NAME of NAME:PATH", o.Name)
		case names[o.Name] > 0:
			add(r.Name.Line, "origin name %q is already used on line %d: names are unique", o.Name, names[o.Name])
		default:
			names[o.Name] = r.Name.Line
			what = "origin " + o.Name
		}
		if r.URL.Line == 0 || o.URL == "" {
			add(o.line, "%s has no url", what)
		} else if !knownOriginForm(o.URL) {
			add(r.URL.Line, "%s: url %q: use /abs/dir, file:///abs/dir, http://host/prefix/, https://… or s3://bucket/prefix", what, control.Redact(o.URL))
		}
		if m := r.Mount; m.Line > 0 {
			switch {
			case !filepath.IsAbs(m.V):
				add(m.Line, "%s: mount %q is not an absolute path", what, m.V)
			case mounts[filepath.Clean(m.V)] > 0:
				add(m.Line, "%s: mount %s is already used on line %d", what, m.V, mounts[filepath.Clean(m.V)])
			default:
				o.Mount = filepath.Clean(m.V)
				mounts[o.Mount] = m.Line
			}
		}
		if o.Serve && raw.Serve == nil {
			add(r.Serve.Line, "%s has serve: true but the config has no serve: section (serve: {listen: 127.0.0.1:8080})", what)
		}
		if t := r.MetadataTTL; t.Line > 0 {
			d, err := time.ParseDuration(t.V)
			if err != nil || d < time.Millisecond || d > 8760*time.Hour {
				add(t.Line, "%s: metadata_ttl %q: use a duration from 1ms to 8760h, e.g. 90s or 5m", what, t.V)
			}
			o.MetadataTTL = d
		}
		if t := r.Timeout; t.Line > 0 {
			d, err := time.ParseDuration(t.V)
			if err != nil || d < time.Millisecond || d > time.Hour {
				add(t.Line, "%s: origin_timeout %q: use a duration from 1ms to 1h, e.g. 10s", what, t.V)
			}
			o.Timeout = d
		}
		for _, h := range o.Headers {
			if name, _, ok := strings.Cut(h, ":"); !ok || strings.TrimSpace(name) == "" || strings.ContainsAny(name, " \t") {
				add(r.Headers.Line, "%s: header %q is not \"Name: value\"", what, redactHeader(h))
			}
		}
		if r.UID.Line > 0 {
			o.UID = &r.UID.V
		}
		if r.GID.Line > 0 {
			o.GID = &r.GID.V
		}
		if (o.S3Endpoint != "" || o.S3Region != "") && !strings.HasPrefix(o.URL, "s3://") {
			add(max(r.S3Endpoint.Line, r.S3Region.Line), "%s: s3_endpoint and s3_region are for s3:// urls", what)
		}
		if o.TrustHTMLIndex && !strings.HasPrefix(o.URL, "http://") && !strings.HasPrefix(o.URL, "https://") {
			add(r.TrustHTML.Line, "%s: trust_html_index is for http:// and https:// urls", what)
		}
		cfg.Origins = append(cfg.Origins, o)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkDaemonConfig checks what parseDaemonConfig cannot without the system: the
// origins open (not contacted), the mount points exist, the token file reads.
func checkDaemonConfig(cfg *daemonConfig) error {
	var ps problems
	add := ps.adder(cfg.File)
	// Mount points are compared as the kernel sees them (symlinks resolved): one
	// inside another's, or the same through a link, would be hidden by it; one
	// holding or inside the cache dir would have the cache open its own files
	// through its mount (or the mount shadowed by the cache's files).
	cacheDir := resolvedPath(cfg.CacheDir)
	type placed struct{ name, real string }
	var mounted []placed
	urls := map[string]string{} // origin by its name in the cache: one route each (origin.Mux)
	for _, o := range cfg.Origins {
		if oo, err := newDaemonOrigin(o); err != nil {
			add(o.urlLine, "origin %s: %v", o.Name, err)
		} else if other, ok := urls[oo.String()]; ok {
			add(o.urlLine, "origin %s: url %s is origin %s's too: give each URL one name", o.Name, control.Redact(o.URL), other)
		} else {
			urls[oo.String()] = o.Name
		}
		if o.Mount != "" {
			fi, err := os.Stat(o.Mount)
			if err != nil {
				add(o.mntLine, "origin %s: mount %s does not exist: create it with mkdir -p %s", o.Name, o.Mount, o.Mount)
				continue
			} else if !fi.IsDir() {
				add(o.mntLine, "origin %s: mount %s is not a directory", o.Name, o.Mount)
				continue
			}
			real := resolvedPath(o.Mount)
			if pathWithin(real, cacheDir) || pathWithin(cacheDir, real) {
				add(o.mntLine, "origin %s: mount %s and the cache dir %s are one inside the other: keep mount points out of the cache dir and the cache dir out of them", o.Name, o.Mount, cfg.CacheDir)
				continue
			}
			for _, m := range mounted {
				if pathWithin(real, m.real) || pathWithin(m.real, real) {
					add(o.mntLine, "origin %s: mount %s is, contains or is inside origin %s's mount %s (symlinks followed): give each origin a directory of its own, apart", o.Name, o.Mount, m.name, m.real)
					break
				}
			}
			mounted = append(mounted, placed{o.Name, real})
		}
	}
	if s := cfg.Serve; s != nil && s.AuthTokenFile != "" {
		if _, err := readToken(s.AuthTokenFile); err != nil {
			add(1, "serve.auth_token_file: %v", err)
		}
	}
	if s := cfg.Serve; s != nil {
		if err := s.Peers.check(s.Listen, s.AuthTokenFile, cfg.ChunkSize); err != nil {
			add(s.peersLine, "serve.peers: %v", err)
		}
	}
	if err := ps.err(); err != nil {
		return err
	}
	return nil
}

// newDaemonOrigin opens origin o (without contacting it).
func newDaemonOrigin(o daemonOrigin) (origin.Origin, error) {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return origin.New(o.URL, origin.Options{Timeout: timeout, S3Endpoint: o.S3Endpoint, S3Region: o.S3Region, Headers: o.Headers, TrustHTMLIndex: o.TrustHTMLIndex})
}

// readToken reads a bearer token file.
func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%s is empty", file)
	}
	return t, nil
}

// resolvedPath is abs (clean) with its symlinks resolved, as far as it exists: a
// cache dir is made at the start.
func resolvedPath(abs string) string {
	rest := ""
	for p := filepath.Clean(abs); ; p = filepath.Dir(p) {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest)
		}
		if p == "/" || p == "." {
			return filepath.Clean(abs)
		}
		rest = filepath.Join(filepath.Base(p), rest)
	}
}

// pathWithin reports whether clean absolute path p is dir or inside it.
func pathWithin(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func knownOriginForm(u string) bool {
	for _, p := range []string{"/", "file://", "http://", "https://", "s3://"} {
		if strings.HasPrefix(u, p) {
			return true
		}
	}
	return false
}

// redactHeader shows a header's name only: its value may be a credential.
func redactHeader(h string) string {
	if name, _, ok := strings.Cut(h, ":"); ok {
		return name + ": …"
	}
	if len(h) > 20 {
		return h[:20] + "…"
	}
	return h
}

// problems collects a config's problems with their lines.
type problems []struct {
	line int
	text string
}

func (ps *problems) adder(file string) func(line int, format string, a ...any) {
	return func(line int, format string, a ...any) {
		line = max(line, 1)
		*ps = append(*ps, struct {
			line int
			text string
		}{line, fmt.Sprintf("%s:%d: %s", file, line, fmt.Sprintf(format, a...))})
	}
}

// err is nil without problems, else a configError listing them by line.
func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].line < ps[j].line })
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.text
	}
	return &configError{out}
}
