package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// owner.json is written through a new temporary file (O_EXCL, never through a
// planted symlink) and read without following a symlink; failures are reported.
func TestOwnerInfoDoesNotFollowSymlinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, ownerFile+".tmp")); err != nil {
		t.Fatal(err)
	}
	want := ownerInfo{Origin: "/srv/data", CacheSize: 1 << 30, ChunkSize: 1 << 20, Routes: map[string]string{"pub": "http://files.example/pub/"}}
	if err := writeOwnerInfo(dir, want); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("owner.json.tmp's symlink target was written: %q", b)
	}
	if got := readOwnerInfo(dir); !reflect.DeepEqual(got, want) {
		t.Errorf("read back %+v, want %+v", got, want)
	}

	// An owner.json that is a symlink is not read.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "x.json"), []byte(`{"origin":"/elsewhere"}`), 0o644)
	os.Symlink(filepath.Join(other, "x.json"), filepath.Join(other, ownerFile))
	if got := readOwnerInfo(other); got.Origin != "" {
		t.Errorf("owner.json symlink followed: %+v", got)
	}

	if err := writeOwnerInfo(filepath.Join(dir, "missing"), want); err == nil {
		t.Error("writing owner.json into a missing directory reported no error")
	}
}
