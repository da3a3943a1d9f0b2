package origin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A strong-ETag version's range answers are checked against the size its HEAD gave:
// a proxy that drops the ETag from a 206 and ignores If-Match must not slip bytes of a
// 20-byte file into a 10-byte version.
func TestStrongETagRangeOfAnotherSizeIsAChange(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Length", "10")
			return
		}
		w.Header().Set("Content-Range", "bytes 0-4/20")
		w.Header().Set("Content-Length", "5")
		w.WriteHeader(http.StatusPartialContent)
		io.WriteString(w, "NEWNE")
	}))
	defer ts.Close()
	o, err := NewHTTP(ts.URL+"/", Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e, err := o.Stat(ctx, "f")
	if err != nil || e.Version != `"v1"` || e.Size != 10 {
		t.Fatalf("stat: %+v %v", e, err)
	}
	rc, err := o.ReadRange(ctx, "f", e.Version, 0, 5)
	if err == nil {
		b, rerr := io.ReadAll(rc)
		rc.Close()
		err = rerr
		if err == nil {
			t.Fatalf("accepted %q of a 20-byte file for a 10-byte version", b)
		}
	}
	if !errors.Is(err, ErrChanged) {
		t.Fatalf("err = %v, want ErrChanged", err)
	}
}
