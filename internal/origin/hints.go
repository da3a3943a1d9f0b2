package origin

import (
	"context"
	"sync/atomic"
)

// Read hints travel with a read's context from whoever asked for the bytes (a
// server request, a mount read) down to the origin decorator that acts on them (the
// peer tier, internal/peer). The cache runs its fetches on contexts of their own,
// detached from the reader's, and hands the hints over with CarryHints, as it hands
// over a bandwidth limit.

type noForwardKey struct{}

type servedByPeerKey struct{}

type callerRetriesKey struct{}

// WithNoForward marks reads under ctx as ones that must reach the origin itself:
// the reader is a peer that was sent here because this process owns the bytes, so
// sending it on to another peer could loop.
func WithNoForward(ctx context.Context) context.Context {
	return context.WithValue(ctx, noForwardKey{}, true)
}

// NoForward reports whether reads under ctx must reach the origin itself.
func NoForward(ctx context.Context) bool {
	v, _ := ctx.Value(noForwardKey{}).(bool)
	return v
}

// WithCallerRetries marks reads under ctx as retried by their caller, which resumes
// where a failed read ended (the cache's fill): an origin then makes one attempt per
// request instead of retrying it itself, so a span that makes no progress costs the
// caller's attempts, not the product of two retry loops.
func WithCallerRetries(ctx context.Context) context.Context {
	return context.WithValue(ctx, callerRetriesKey{}, true)
}

// CallerRetries reports whether the caller of reads under ctx retries them itself.
func CallerRetries(ctx context.Context) bool {
	v, _ := ctx.Value(callerRetriesKey{}).(bool)
	return v
}

// WithPeerNote returns ctx carrying note: a decorator that answers a read under it
// with a peer's bytes sets it, so the server can say X-Cache: PEER.
func WithPeerNote(ctx context.Context, note *atomic.Bool) context.Context {
	return context.WithValue(ctx, servedByPeerKey{}, note)
}

// NotePeer records, in the note ctx carries (if any), that bytes came from a peer.
func NotePeer(ctx context.Context) {
	if n, ok := ctx.Value(servedByPeerKey{}).(*atomic.Bool); ok {
		n.Store(true)
	}
}

// CarryHints returns ctx with the read hints of from (no-forward, the peer note).
func CarryHints(ctx, from context.Context) context.Context {
	if from == nil {
		return ctx
	}
	if NoForward(from) {
		ctx = WithNoForward(ctx)
	}
	if n, ok := from.Value(servedByPeerKey{}).(*atomic.Bool); ok {
		ctx = WithPeerNote(ctx, n)
	}
	return ctx
}
