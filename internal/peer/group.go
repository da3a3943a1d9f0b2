package peer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
)

// Header marks a request from a peer: its value is the sender's advertised URL. The
// server reads such a request from the origin itself (origin.WithNoForward).
const Header = "X-Cachegate-Peer"

// Defaults of Options.
const (
	DefaultSpan      = 64 << 20
	DefaultTimeout   = 2 * time.Second
	DefaultReResolve = 30 * time.Second
)

// Probing a down member: first after probeFirst, then backing off to probeMax, so
// a member back from a restart is used again within probeMax (plus a probe's
// timeout) of answering.
const (
	probeFirst = 250 * time.Millisecond
	probeMax   = 8 * time.Second
	probeTick  = 100 * time.Millisecond
)

// maxMembers bounds a group (a DNS name answering with more addresses is cut, with
// a warning): every member costs a hash per span read.
const maxMembers = 1024

// maxHeaderBytes bounds the header block of a peer's answer.
const maxHeaderBytes = 64 << 10

// Options configure a Group.
type Options struct {
	// Peers are the members' server base URLs (http:// or https://), or a single
	// dns+http://NAME:PORT (dns+https://…) whose A/AAAA records are the members.
	Peers []string
	// Self is this member's URL as the others know it (--advertise).
	Self string
	// Span is the unit of ownership in bytes (DefaultSpan when 0).
	Span int64
	// Timeout bounds a peer request's connect and wait for its first byte, and
	// each pause in its body, and a health probe (DefaultTimeout when 0).
	Timeout time.Duration
	// Token is sent to peers as "Authorization: Bearer TOKEN" (--auth-token-file).
	Token string
	// CAFile names PEM certificates trusted for https peers, on top of the system's.
	CAFile string
	// OwnerOnly (--peer-copy owner): this member keeps only the spans it owns.
	OwnerOnly bool
	// OriginName names the origin in ownership keys: every member must be given
	// the same (the origin's printed, redacted URL).
	OriginName string
	// Prefix is the URL path under which the origin is served on every member
	// ("" or "/NAME" when a daemon serves several origins).
	Prefix string
	// ReResolve is how often a dns+ name is looked up again (DefaultReResolve).
	ReResolve time.Duration
	// Resolver looks up a DNS name's addresses (net.DefaultResolver.LookupHost).
	Resolver func(ctx context.Context, host string) ([]string, error)
	Logger   *slog.Logger
	// Transport, when set, replaces the HTTP transport to peers (tests).
	Transport http.RoundTripper
}

// Group is the set of members and their health, seen from this member.
type Group struct {
	opts   Options
	log    *slog.Logger
	client *http.Client
	dns    *dnsSpec // nil for a static list

	members atomic.Pointer[[]*Member] // sorted by URL; replaced whole on a change
	self    atomic.Pointer[Member]    // nil while this member is not in the list

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

type dnsSpec struct{ scheme, host, port string }

// Member is one gateway of the group.
type Member struct {
	URL  string
	base string // URL + Options.Prefix
	seed uint64 // hash of URL: its part of every rendezvous score
	self bool
	// raw sends span reads to a plain http:// member over connections whose
	// bodies splice (into the cache file, or to a client's socket); nil for
	// https, whose reads go by client.
	raw *origin.RawClient

	mu        sync.Mutex
	down      bool      // guarded by mu
	since     time.Time // guarded by mu: when down last changed
	lastErr   string    // guarded by mu: why it went down
	nextProbe time.Time // guarded by mu
	backoff   time.Duration
	probing   bool // guarded by mu: a probe is in flight

	requests, bytes, errors, fallbacks atomic.Int64
	// servedRequests, servedBytes: the span reads it sent us, and the bytes we
	// answered them with.
	servedRequests, servedBytes atomic.Int64
}

// New checks opts and returns the group; Start runs its background work.
func New(opts Options) (*Group, error) {
	if opts.Span <= 0 {
		opts.Span = DefaultSpan
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.ReResolve <= 0 {
		opts.ReResolve = DefaultReResolve
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver.LookupHost
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	self, err := normalize(opts.Self)
	if err != nil {
		return nil, fmt.Errorf("--advertise: %v", err)
	}
	opts.Self = self
	g := &Group{opts: opts, log: opts.Logger, stop: make(chan struct{})}
	if len(opts.Peers) == 1 && strings.HasPrefix(opts.Peers[0], "dns+") {
		if g.dns, err = parseDNS(opts.Peers[0]); err != nil {
			return nil, err
		}
	} else {
		var urls []string
		for _, p := range opts.Peers {
			if strings.HasPrefix(p, "dns+") {
				return nil, fmt.Errorf("--peers %s: a dns+ name stands alone, not in a list of URLs", p)
			}
			u, err := normalize(p)
			if err != nil {
				return nil, fmt.Errorf("--peers: %v", err)
			}
			urls = append(urls, u)
		}
		if !slices.Contains(urls, self) {
			return nil, fmt.Errorf("--advertise %s is not one of --peers (%s): give every member the same list, and each its own URL in it as --advertise", self, strings.Join(urls, ","))
		}
		g.setMembers(urls)
	}
	if g.client, err = newClient(opts); err != nil {
		return nil, err
	}
	return g, nil
}

// normalize checks a member URL and returns it as scheme://host:port, the form
// members are compared and hashed in.
func normalize(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q is not a server base URL: use http://HOST:PORT or https://HOST:PORT", s)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		return "", fmt.Errorf("%q names no host other members can reach: give --advertise http://ADDRESS:PORT", s)
	}
	return u.Scheme + "://" + net.JoinHostPort(strings.ToLower(host), port), nil
}

func parseDNS(s string) (*dnsSpec, error) {
	rest, _ := strings.CutPrefix(s, "dns+")
	u, err := url.Parse(rest)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("--peers %q: use dns+http://NAME:PORT (or dns+https://), NAME's A/AAAA records being the members", s)
	}
	return &dnsSpec{scheme: u.Scheme, host: u.Hostname(), port: u.Port()}, nil
}

func newClient(opts Options) (*http.Client, error) {
	rt := opts.Transport
	if rt == nil {
		var tc *tls.Config
		if opts.CAFile != "" {
			pem, err := os.ReadFile(opts.CAFile)
			if err != nil {
				return nil, fmt.Errorf("--peer-ca: %v", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--peer-ca %s holds no PEM certificate", opts.CAFile)
			}
			tc = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		rt = &http.Transport{
			DialContext:         (&net.Dialer{Timeout: opts.Timeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     tc,
			TLSHandshakeTimeout: opts.Timeout,
			// The group's own traffic: many spans in parallel to few hosts.
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     50 * time.Second, // below the servers' 60 s idle close
			DisableCompression:  true,
			// A peer's answer is a few headers: a peer sending megabytes of them
			// (the default allows 10 MiB per response) is refused, not held.
			MaxResponseHeaderBytes: maxHeaderBytes,
		}
	}
	return &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // a peer that redirects answers wrongly
	}}, nil
}

// setMembers makes urls the group, keeping the state and counters of members that
// stay.
func (g *Group) setMembers(urls []string) {
	slices.Sort(urls)
	urls = slices.Compact(urls)
	old := map[string]*Member{}
	if p := g.members.Load(); p != nil {
		for _, m := range *p {
			old[m.URL] = m
		}
	}
	ms := make([]*Member, 0, len(urls))
	var self *Member
	for _, u := range urls {
		m := old[u]
		if m == nil {
			m = &Member{URL: u, base: u + g.opts.Prefix, seed: hashString(u), self: u == g.opts.Self, since: time.Now()}
			m.raw = g.rawClient(u)
		}
		delete(old, u)
		if m.self {
			self = m
		}
		ms = append(ms, m)
	}
	g.members.Store(&ms)
	g.self.Store(self)
	for _, m := range old { // members that left: their pooled connections go
		if m.raw != nil {
			m.raw.CloseIdle()
		}
	}
}

// rawClient returns the splicing client for the member at u (see Member.raw), or
// nil: https (TLS decrypts in user space, nothing to splice) and tests that give
// their own Options.Transport go through net/http.
func (g *Group) rawClient(u string) *origin.RawClient {
	pu, err := url.Parse(u)
	if err != nil || pu.Scheme != "http" || g.opts.Transport != nil {
		return nil
	}
	return origin.NewRawClient(pu, g.opts.Timeout, maxHeaderBytes)
}

// Members returns the current members, sorted by URL.
func (g *Group) Members() []*Member {
	if p := g.members.Load(); p != nil {
		return *p
	}
	return nil
}

// Start resolves a dns+ group for the first time (waiting for at most a timeout)
// and starts re-resolving it and probing down members, until Close.
func (g *Group) Start() {
	if g.dns != nil {
		g.resolve()
		g.wg.Add(1)
		go g.resolveLoop()
	}
	g.wg.Add(1)
	go g.probeLoop()
}

// Close stops the background work.
func (g *Group) Close() {
	g.once.Do(func() { close(g.stop) })
	g.wg.Wait()
	for _, m := range g.Members() {
		if m.raw != nil {
			m.raw.CloseIdle()
		}
	}
}

func (g *Group) resolveLoop() {
	defer g.wg.Done()
	t := time.NewTicker(g.opts.ReResolve)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			g.resolve()
		}
	}
}

// resolve looks the dns+ name up and makes its addresses the group. A failed
// lookup keeps the members there were: a DNS outage must not empty the group.
func (g *Group) resolve() {
	ctx, cancel := context.WithTimeout(context.Background(), max(g.opts.Timeout, 5*time.Second))
	defer cancel()
	addrs, err := g.opts.Resolver(ctx, g.dns.host)
	if err != nil || len(addrs) == 0 {
		g.log.Warn("cannot resolve the peer group's name; keeping the members known", "name", g.dns.host, "err", err, "members", len(g.Members()))
		return
	}
	urls := make([]string, 0, len(addrs))
	for _, a := range addrs {
		urls = append(urls, g.dns.scheme+"://"+net.JoinHostPort(strings.ToLower(a), g.dns.port))
	}
	// Sorted and without repeats before the cut: round-robin DNS gives each member
	// the addresses in its own order, and every member must cut the same group.
	slices.Sort(urls)
	urls = slices.Compact(urls)
	if len(urls) > maxMembers {
		g.log.Warn("the peer group's name has more addresses than a group may have; using the lowest", "name", g.dns.host, "addresses", len(urls), "max", maxMembers)
		urls = urls[:maxMembers]
	}
	var before []string
	for _, m := range g.Members() {
		before = append(before, m.URL)
	}
	if slices.Equal(before, urls) {
		return
	}
	g.setMembers(urls)
	if g.self.Load() == nil {
		g.log.Warn("this member's --advertise URL is not among the peer group's addresses: it owns nothing and asks the others for every span", "advertise", g.opts.Self, "name", g.dns.host)
	}
	g.log.Info("peer group changed", "members", strings.Join(urls, ","))
}

// Key is what ownership is decided by: one span of one version of one object.
type Key struct {
	Path, Version string
	Span          int64 // the span's index: offset / Options.Span
}

// Owner returns the member that owns k: the highest rendezvous score over all
// members, down or not (a down owner's spans are read from the origin, not moved:
// see the package doc). Nil when the group is empty.
func (g *Group) Owner(k Key) *Member {
	return owner(g.Members(), g.keyHash(k))
}

func owner(ms []*Member, kh uint64) *Member {
	var best *Member
	var bestScore uint64
	for _, m := range ms {
		if s := mix(m.seed ^ kh); best == nil || s > bestScore {
			best, bestScore = m, s
		}
	}
	return best
}

func (g *Group) keyHash(k Key) uint64 {
	h := fnv.New64a()
	h.Write([]byte(g.opts.OriginName))
	h.Write([]byte{0})
	h.Write([]byte(k.Path))
	h.Write([]byte{0})
	h.Write([]byte(k.Version))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(k.Span))
	h.Write(b[:])
	return h.Sum64()
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return mix(h.Sum64())
}

// mix is MurmurHash3's 64-bit finalizer: FNV's low bits alone spread poorly, and
// a score must depend on every bit of member and key.
func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// Up reports whether m is to be asked.
func (m *Member) Up() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.down
}

// markDown takes m out of use until a probe finds it answering.
func (g *Group) markDown(m *Member, why error) {
	m.errors.Add(1)
	m.mu.Lock()
	was := m.down
	if !was {
		m.down, m.since, m.backoff = true, time.Now(), probeFirst
		m.nextProbe = m.since.Add(m.backoff)
	}
	m.lastErr = why.Error()
	m.mu.Unlock()
	if !was {
		g.log.Warn("peer down: reading its spans from the origin until it answers", "peer", m.URL, "err", why)
	}
}

func (g *Group) probeLoop() {
	defer g.wg.Done()
	t := time.NewTicker(probeTick)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case now := <-t.C:
			for _, m := range g.Members() {
				m.mu.Lock()
				due := m.down && !m.probing && !now.Before(m.nextProbe)
				if due {
					m.probing = true
				}
				m.mu.Unlock()
				if due {
					g.wg.Add(1)
					go g.probe(m)
				}
			}
		}
	}
}

// probe asks a down member's /-/healthz; an answer of 200 puts it back in use,
// anything else doubles the wait before the next probe.
func (g *Group) probe(m *Member) {
	defer g.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), g.opts.Timeout)
	defer cancel()
	err := g.healthz(ctx, m)
	m.mu.Lock()
	m.probing = false
	if err == nil {
		m.down, m.since, m.lastErr = false, time.Now(), ""
	} else {
		m.backoff = min(2*m.backoff, probeMax)
		m.nextProbe = time.Now().Add(m.backoff)
	}
	m.mu.Unlock()
	if err == nil {
		g.log.Info("peer up again", "peer", m.URL)
	}
}

func (g *Group) healthz(ctx context.Context, m *Member) error {
	req, err := http.NewRequestWithContext(ctx, "GET", m.URL+"/-/healthz", nil)
	if err != nil {
		return err
	}
	g.authorize(req)
	resp, err := g.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return errors.New("healthz answered " + strconv.Itoa(resp.StatusCode))
	}
	return nil
}

func (g *Group) authorize(req *http.Request) {
	if g.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+g.opts.Token)
	}
	req.Header.Set(Header, g.opts.Self)
}

// Served counts a peer's request answered here with n body bytes; from is the
// peer's Header (its URL), unknown URLs are not counted.
func (g *Group) Served(from string, n int64) {
	for _, m := range g.Members() {
		if m.URL == from {
			m.servedRequests.Add(1)
			m.servedBytes.Add(n)
			return
		}
	}
}

// Status is one member's state and counters, for /-/status and `cachegate status`.
type Status struct {
	URL   string    `json:"url"`
	Self  bool      `json:"self,omitempty"`
	State string    `json:"state"` // "up", "down" or "self"
	Since time.Time `json:"since"`
	Error string    `json:"error,omitempty"` // why it went down
	// Requests and Bytes are the span reads sent to it and the bytes it answered;
	// Errors the reads and probes that failed; Fallbacks the reads then taken
	// from the origin instead.
	Requests  int64 `json:"requests"`
	Bytes     int64 `json:"bytes"`
	Errors    int64 `json:"errors"`
	Fallbacks int64 `json:"fallbacks"`
	// ServedRequests and ServedBytes are the span reads it sent this member and
	// the bytes they were answered with.
	ServedRequests int64 `json:"served_requests"`
	ServedBytes    int64 `json:"served_bytes"`
}

// Status returns every member's state and counters.
func (g *Group) Status() []Status {
	ms := g.Members()
	out := make([]Status, 0, len(ms))
	for _, m := range ms {
		m.mu.Lock()
		s := Status{URL: m.URL, Self: m.self, State: "up", Since: m.since, Error: m.lastErr}
		if m.down {
			s.State = "down"
		}
		m.mu.Unlock()
		if m.self {
			s.State = "self"
		}
		s.Requests, s.Bytes, s.Errors, s.Fallbacks = m.requests.Load(), m.bytes.Load(), m.errors.Load(), m.fallbacks.Load()
		s.ServedRequests, s.ServedBytes = m.servedRequests.Load(), m.servedBytes.Load()
		out = append(out, s)
	}
	return out
}
