package origin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// A local directory with more entries than MaxDirEntries is refused, as HTTP and
// S3 listings are, rather than read whole into memory.
func TestLocalListCapsEntries(t *testing.T) {
	dir := t.TempDir()
	for i := range 50 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o, err := New(dir, Options{MaxDirEntries: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.List(context.Background(), ""); !errors.Is(err, ErrTooManyEntries) {
		t.Fatalf("List of 50 entries with MaxDirEntries 10: err = %v, want ErrTooManyEntries", err)
	}
	o, err = New(dir, Options{MaxDirEntries: 50})
	if err != nil {
		t.Fatal(err)
	}
	if es, err := o.List(context.Background(), ""); err != nil || len(es) != 50 {
		t.Fatalf("List with MaxDirEntries 50: %d entries, err %v; want 50, nil", len(es), err)
	}
}
