package cache

import (
	"bytes"
	"testing"
	"time"

	"github.com/cachegate/cachegate/internal/origin"
)

// TestRouterKeepsRealOriginNames: a cache dir filled by a single-origin cache opens
// under a Mux (cachegate daemon) with its objects, found under the route's name and
// read without the origin; what the daemon caches opens in the single-origin cache.
func TestRouterKeepsRealOriginNames(t *testing.T) {
	f := newFixture(t)
	want := randomFile(t, f.originDir, "d/f", 200_000, 1)
	want2 := randomFile(t, f.originDir, "d/g", 100_000, 2)
	c := f.open()
	readWhole(t, c, "d/f")
	c.Close()

	m := origin.NewMux("daemon")
	if err := m.Set("pub", f.origin, time.Hour); err != nil {
		t.Fatal(err)
	}
	c = openWith(t, m, f.opts)
	objs := c.Objects("pub")
	if len(objs) != 1 || objs[0].Path != "pub/d/f" || !objs[0].Complete {
		t.Fatalf("objects under pub = %+v", objs)
	}
	reads := f.origin.reads.Load()
	if got := readWhole(t, c, "pub/d/f"); !bytes.Equal(got, want) {
		t.Fatal("pub/d/f: wrong bytes")
	}
	if n := f.origin.reads.Load() - reads; n != 0 {
		t.Fatalf("a cached object read through the mux asked the origin %d times", n)
	}
	readWhole(t, c, "pub/d/g")
	if d := c.meta.ttlOf("pub/d"); d != time.Hour {
		t.Fatalf("the route's TTL is %v", d)
	}
	if d := c.meta.ttlOf("other/x"); d != f.opts.TTL {
		t.Fatalf("an unrouted path's TTL is %v", d)
	}
	c.Close()

	c = f.open()
	defer c.Close()
	objs = c.Objects("d")
	if len(objs) != 2 || objs[1].Path != "d/g" || !objs[1].Complete {
		t.Fatalf("the single-origin cache finds %+v", objs)
	}
	reads = f.origin.reads.Load()
	if got := readWhole(t, c, "d/g"); !bytes.Equal(got, want2) || f.origin.reads.Load() != reads {
		t.Fatal("d/g, cached by the daemon, was not read from the cache")
	}
}

// TestRerouteFindsObjectsOfAnAddedRoute: objects of an origin no route led to at open
// are foreign; a route added later (SIGHUP) finds them by path.
func TestRerouteFindsObjectsOfAnAddedRoute(t *testing.T) {
	f := newFixture(t)
	want := randomFile(t, f.originDir, "f", 150_000, 3)
	c := f.open()
	readWhole(t, c, "f")
	c.Close()

	m := origin.NewMux("daemon")
	c = openWith(t, m, f.opts)
	defer c.Close()
	if n := len(c.Objects("")); n != 0 {
		t.Fatalf("%d objects before the route", n)
	}
	if err := m.Set("late", f.origin, 0); err != nil {
		t.Fatal(err)
	}
	if n := c.Reroute(); n != 1 {
		t.Fatalf("Reroute moved %d objects", n)
	}
	reads := f.origin.reads.Load()
	if got := readWhole(t, c, "late/f"); !bytes.Equal(got, want) || f.origin.reads.Load() != reads {
		t.Fatal("late/f was not read from the cache")
	}
}

func openWith(t *testing.T, o origin.Origin, opts Options) *Cache {
	t.Helper()
	c, err := Open(o, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
