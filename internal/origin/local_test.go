package origin

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"
)

// Symlinks are listed as links when they resolve inside the root, and left out
// otherwise; Stat follows them.
func TestLocalListsSymlinksAsLinks(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "f"), []byte("hello"), 0o640)
	os.Chmod(filepath.Join(dir, "f"), 0o640)
	links := map[string]string{
		"loop": ".", "sub/up": "..", "lf": "f", "ld": "sub",
		"out": "../..", "abs": "/etc", "dangling": "nowhere", "sub/out": "up/..", "sub/deep": "../../x",
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, l)); err != nil {
			t.Fatal(err)
		}
	}
	o, err := NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got := map[string]Entry{}
	for _, d := range []string{"", "sub"} {
		es, err := o.List(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			got[Join(d, e.Name)] = e
		}
	}
	var names []string
	for n := range got {
		names = append(names, n)
	}
	sort.Strings(names)
	want := []string{"f", "ld", "lf", "loop", "sub", "sub/up"}
	if len(names) != len(want) {
		t.Fatalf("listed %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("listed %q, want %q", names, want)
		}
	}
	for l, target := range map[string]string{"loop": ".", "sub/up": "..", "lf": "f", "ld": "sub"} {
		if e := got[l]; e.Symlink != target || e.IsDir || e.Size != int64(len(target)) {
			t.Errorf("%s: %+v, want a link to %q", l, e, target)
		}
	}
	if e := got["f"]; e.Symlink != "" || !e.HasOwner || e.Uid != uint32(os.Getuid()) || e.Perm != 0o440 {
		t.Errorf("f: %+v, want owner %d and mode 0440", e, os.Getuid())
	}
	if e := got["sub"]; !e.IsDir || !e.HasOwner || e.Perm != 0o555 {
		t.Errorf("sub: %+v, want a directory with mode 0555", e)
	}
	// Stat follows a link inside the root, as a web server would.
	if e, err := o.Stat(ctx, "lf"); err != nil || e.Symlink != "" || e.Size != 5 || e.Version == "" {
		t.Errorf("Stat lf: %+v %v, want the file it points at", e, err)
	}
	if _, err := o.Stat(ctx, "out"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Stat of a link leaving the root: %v", err)
	}
}

// A file replaced by a FIFO after its stat is refused at once, not waited on.
func TestLocalReadRangeRefusesFIFO(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, []byte("0123456789"), 0o644)
	o, err := NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e, err := o.Stat(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(p)
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // releases an open that waits for a writer
		if fd, err := syscall.Open(p, syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			syscall.Close(fd)
		}
	})
	res := make(chan error, 1)
	go func() {
		rc, err := o.ReadRange(ctx, "f", e.Version, 0, 10)
		if err == nil {
			rc.Close()
		}
		res <- err
	}()
	select {
	case err := <-res:
		if !errors.Is(err, ErrChanged) {
			t.Errorf("ReadRange of a file replaced by a FIFO: %v, want ErrChanged", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadRange of a file replaced by a FIFO waits for a writer")
	}
	// And a context that ends stops an open.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := o.ReadRange(cctx, "f", e.Version, 0, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadRange with an ended context: %v", err)
	}
}
