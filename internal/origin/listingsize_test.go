package origin

import "testing"

// A JSON listing entry without "size" was read as an exact 0-byte file, so a mount
// showed the file empty (and a cachegate listing what it did not know as 0 misled
// the next one). A missing size is unknown: the entry is inexact and gets its size
// from a stat. "size": 0 stays an exact empty file.
func TestJSONListingMissingSizeIsInexact(t *testing.T) {
	body := `[{"name":"nosize","type":"file","mtime":"Wed, 26 Nov 2026 00:54:29 GMT"},
{"name":"empty","type":"file","mtime":"Wed, 26 Nov 2026 00:54:29 GMT","size":0},
{"name":"d","type":"directory","mtime":"Wed, 26 Nov 2026 00:54:29 GMT"}]`
	got, err := ParseListing("application/json", []byte(body), mustURL(t, "http://h/"))
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Entry{}
	for _, e := range got {
		by[e.Name] = e
	}
	if e := by["nosize"]; e.Exact {
		t.Errorf("a file listed without a size is exact: %+v", e)
	}
	if e := by["empty"]; !e.Exact || e.Size != 0 {
		t.Errorf("a file listed with size 0 is not an exact empty file: %+v", e)
	}
	if e := by["d"]; !e.Exact || !e.IsDir {
		t.Errorf("a directory without a size is not exact: %+v", e)
	}
}
