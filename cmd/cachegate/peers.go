package main

import (
	"log/slog"
	"time"

	"github.com/cachegate/cachegate/internal/control"
	"github.com/cachegate/cachegate/internal/origin"
	"github.com/cachegate/cachegate/internal/peer"
	"github.com/cachegate/cachegate/internal/units"
)

// peerFlags make a server a member of a peer group (internal/peer), for `serve` and
// `mount --serve`.
type peerFlags struct {
	Peers       []string      `group:"server" help:"Members of this server's peer group, each a server base URL (every member gets the same list), or dns+http://NAME:PORT whose A/AAAA records are the members (re-resolved every 30s): each byte is fetched from the origin by one member, the owner of its span." sep:"," placeholder:"URL"`
	Advertise   string        `group:"server" help:"This member's URL in --peers (default: http:// and the listen address)." placeholder:"URL"`
	PeerSpan    Size          `group:"server" help:"Unit of ownership in a peer group: spans of a file are spread over the members; every member must use the same (default: ${default})." default:"64MiB" placeholder:"SIZE"`
	PeerCopy    string        `group:"server" help:"Whether this member keeps a copy of what it reads through a peer: local (hot data near readers) or owner (keep only its own spans) (default: ${default})." default:"local" enum:"local,owner" placeholder:"MODE"`
	PeerTimeout time.Duration `group:"server" help:"Give up on a peer that sends nothing for this long (its spans are read from the origin, the peer is probed until it answers) (default: ${default})." default:"2s" placeholder:"DUR"`
	PeerCA      string        `group:"server" help:"PEM file of CA certificates trusted for https peers, added to the system roots." type:"path" placeholder:"FILE"`

	group *peer.Group // made by wrap, once the origin is known
}

// options checks the flags and returns the group's options but for the origin's name
// (ok false without --peers). listen is the server's address, tokenFile
// --auth-token-file, chunk --chunk-size.
func (f *peerFlags) options(listen, tokenFile string, chunk int64, log *slog.Logger) (opts peer.Options, ok bool, err error) {
	if len(f.Peers) == 0 {
		if f.Advertise != "" {
			return opts, false, usagef("--advertise names this member of a peer group: add --peers")
		}
		return opts, false, nil
	}
	if listen == "" {
		return opts, false, usagef("--peers needs a server the other members can ask: add --serve ADDR")
	}
	if f.PeerSpan <= 0 {
		return opts, false, usagef("--peer-span must be positive")
	}
	// A whole number of chunks: the cache fetches whole chunks, so a chunk across
	// two spans would be fetched by either owner, and spans of a few bytes would
	// cut each fill into as many peer requests.
	if chunk > 0 && int64(f.PeerSpan)%chunk != 0 {
		return opts, false, usagef("--peer-span %s is not a multiple of --chunk-size %s: give a whole number of chunks (the same on every member)",
			units.FormatSize(int64(f.PeerSpan)), units.FormatSize(chunk))
	}
	if f.PeerTimeout <= 0 {
		return opts, false, usagef("--peer-timeout must be positive")
	}
	self := f.Advertise
	if self == "" {
		addr, _, err := listenAddr(listen)
		if err != nil {
			return opts, false, usagef("--listen: %v", err)
		}
		self = "http://" + addr
	}
	var token string
	if tokenFile != "" {
		if token, err = readToken(tokenFile); err != nil {
			return opts, false, usagef("--auth-token-file %v", err)
		}
	}
	return peer.Options{Peers: f.Peers, Self: self, Span: int64(f.PeerSpan), Timeout: f.PeerTimeout,
		Token: token, CAFile: f.PeerCA, OwnerOnly: f.PeerCopy == "owner", Logger: log}, true, nil
}

// check makes the group without starting it: the members, --advertise among them and
// --peer-ca are checked, nothing is asked of the network.
func (f *peerFlags) check(listen, tokenFile string, chunk int64) error {
	opts, ok, err := f.options(listen, tokenFile, chunk, slog.Default())
	if err != nil || !ok {
		return err
	}
	if _, err := peer.New(opts); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// wrap returns a function that puts the peer tier around the origin (nil without
// --peers). listen is the server's address, tokenFile --auth-token-file, chunk
// --chunk-size.
func (f *peerFlags) wrap(listen, tokenFile string, chunk int64, log *slog.Logger) (func(origin.Origin) (origin.Origin, error), error) {
	opts, ok, err := f.options(listen, tokenFile, chunk, log)
	if err != nil || !ok {
		return nil, err
	}
	return func(o origin.Origin) (origin.Origin, error) {
		opts.OriginName = control.Redact(o.String())
		g, err := peer.New(opts)
		if err != nil {
			return nil, usagef("%v", err)
		}
		f.group = g
		g.Start()
		log.Info("peer group", "self", opts.Self, "members", len(g.Members()), "span", opts.Span, "copy", f.PeerCopy)
		return g.Wrap(o), nil
	}, nil
}

// close stops the group's background work.
func (f *peerFlags) close() {
	if f.group != nil {
		f.group.Close()
	}
}
