package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"
)

// Credentials in an origin URL (http://alice:secret@host/) are never printed. Each
// place cmd names the origin uses control.Redact; as a second line, every log record
// and the final error line pass through scrub, which hides the userinfo of the
// origin in use wherever a lower layer quotes its URL.

// credentials replaces "user:password@" of the origin in use by "user:xxxxx@".
var credentials atomic.Pointer[strings.Replacer]

// hideCredentials registers the userinfo of origin spec for scrub.
func hideCredentials(spec string) {
	u, err := url.Parse(spec)
	if err != nil || u.User == nil {
		return
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" {
		return
	}
	user := u.User.Username()
	hidden := user + ":xxxxx@"
	// As typed and as net/url writes it (percent-encoded): errors quote either.
	credentials.Store(strings.NewReplacer(user+":"+pw+"@", hidden, u.User.String()+"@", hidden))
}

// scrub hides the registered credentials in s.
func scrub(s string) string {
	if r := credentials.Load(); r != nil {
		return r.Replace(s)
	}
	return s
}

// scrubHandler is a slog.Handler that scrubs messages and attribute values.
type scrubHandler struct{ slog.Handler }

func (h scrubHandler) Handle(ctx context.Context, r slog.Record) error {
	if credentials.Load() == nil {
		return h.Handler.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, scrub(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(scrubAttr(a))
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h scrubHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = scrubAttr(a)
	}
	return scrubHandler{h.Handler.WithAttrs(out)}
}

func (h scrubHandler) WithGroup(name string) slog.Handler {
	return scrubHandler{h.Handler.WithGroup(name)}
}

func scrubAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, scrub(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, len(g))
		for i, ga := range g {
			out[i] = scrubAttr(ga)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error, fmt.Stringer:
			return slog.String(a.Key, scrub(fmt.Sprint(x)))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
