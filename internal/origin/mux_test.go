package origin

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func localFor(t *testing.T, files map[string]string) Origin {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o, err := New(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestMuxRoutes(t *testing.T) {
	ctx := context.Background()
	m := NewMux("daemon")
	a := localFor(t, map[string]string{"d/f": "alpha"})
	b := localFor(t, map[string]string{"g": "beta!"})
	if err := m.Set("pub", a, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := m.Set("data", b, 0); err != nil {
		t.Fatal(err)
	}
	// The root lists the names as directories, without asking the origins.
	l, err := m.List(ctx, "")
	if err != nil || len(l) != 2 || l[0].Name != "data" || !l[0].IsDir || l[1].Name != "pub" {
		t.Fatalf("root listing = %+v, %v", l, err)
	}
	if e, err := m.Stat(ctx, "pub"); err != nil || !e.IsDir || e.Name != "pub" {
		t.Fatalf("Stat(pub) = %+v, %v", e, err)
	}
	if l, err := m.List(ctx, "pub/d"); err != nil || len(l) != 1 || l[0].Name != "f" {
		t.Fatalf("List(pub/d) = %+v, %v", l, err)
	}
	e, err := m.Stat(ctx, "pub/d/f")
	if err != nil || e.Size != 5 {
		t.Fatalf("Stat(pub/d/f) = %+v, %v", e, err)
	}
	rc, err := m.ReadRange(ctx, "pub/d/f", e.Version, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "lph" || m.BytesFetched("pub") != 3 || m.BytesFetched("data") != 0 {
		t.Fatalf("read %q, fetched pub %d data %d", got, m.BytesFetched("pub"), m.BytesFetched("data"))
	}
	// The cache names objects by the real origin and the path inside it.
	on, sub, ok := m.Route("pub/d/f")
	if !ok || on != a.String() || sub != "d/f" {
		t.Fatalf("Route = %q %q %v", on, sub, ok)
	}
	if p, ok := m.Unroute(b.String(), "g"); !ok || p != "data/g" {
		t.Fatalf("Unroute = %q %v", p, ok)
	}
	if _, _, ok := m.Route(""); ok {
		t.Fatal("the root routed")
	}
	if d, ok := m.TTL("pub/x"); !ok || d != time.Minute {
		t.Fatalf("TTL(pub/x) = %v %v", d, ok)
	}
	if _, ok := m.TTL("data/g"); ok {
		t.Fatal("data has no TTL of its own")
	}
	if _, err := m.Stat(ctx, "nope/x"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Stat of an unknown name: %v", err)
	}
	if err := m.Set("other", a, 0); err == nil {
		t.Fatal("a second name for one origin was accepted")
	}
	if err := m.Set("Bad/Name", a, 0); err == nil {
		t.Fatal("a bad name was accepted")
	}
}

func TestMuxAddReplaceRemove(t *testing.T) {
	ctx := context.Background()
	m := NewMux("daemon")
	a := localFor(t, map[string]string{"f": "one"})
	b := localFor(t, map[string]string{"f": "two!"})
	m.Set("x", a, 0)
	if e, err := m.Stat(ctx, "x/f"); err != nil || e.Size != 3 {
		t.Fatalf("Stat = %+v, %v", e, err)
	}
	// Replacing a route keeps its byte count and switches its origin.
	e, _ := m.Stat(ctx, "x/f")
	rc, err := m.ReadRange(ctx, "x/f", e.Version, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(rc)
	rc.Close()
	if err := m.Set("x", b, 0); err != nil {
		t.Fatal(err)
	}
	if e, err := m.Stat(ctx, "x/f"); err != nil || e.Size != 4 {
		t.Fatalf("after replace: Stat = %+v, %v", e, err)
	}
	if m.BytesFetched("x") != 3 {
		t.Fatalf("fetched = %d after replace", m.BytesFetched("x"))
	}
	if _, ok := m.Unroute(a.String(), "f"); ok {
		t.Fatal("the replaced origin still unroutes")
	}
	m.Set("y", a, 0)
	m.Remove("x")
	if _, err := m.Stat(ctx, "x/f"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("removed route: %v", err)
	}
	if l, _ := m.List(ctx, ""); len(l) != 1 || l[0].Name != "y" {
		t.Fatalf("root after remove = %+v", l)
	}
	if _, err := m.ReadRange(ctx, "x/f", "", 0, 1); !errors.Is(err, ErrNotExist) {
		t.Fatalf("read of a removed route: %v", err)
	}
}
