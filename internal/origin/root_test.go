package origin

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A 404 prefix or a file URL as origin said ": file does not exist".
func TestCheckRootSaysWhatTheServerAnswered(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/dir/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/dir/" { // as nginx: "f.txt/" is no directory
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`[{"name":"a","type":"file","size":1}]`))
	})
	mux.HandleFunc("/dir/f.txt", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("x")) })
	ts := httptest.NewServer(mux)
	defer ts.Close()
	withPass := strings.Replace(ts.URL, "http://", "http://u:secret@", 1)
	for _, c := range []struct{ url, want string }{
		{ts.URL + "/dir/", ""},
		{ts.URL + "/nope/", "origin answered 404 Not Found for " + ts.URL + "/nope/: is the prefix right? an origin must be a directory"},
		// The origin's errors name its URL without credentials (the test also checks "secret" is absent).
		{withPass + "/nope/", "404 Not Found for " + ts.URL + "/nope/"},
		{ts.URL + "/dir/f.txt", "origin " + ts.URL + "/dir/f.txt is a file, not a directory: an origin must be a directory (e.g. " + ts.URL + "/dir/)"},
	} {
		o, err := NewHTTP(c.url, Options{})
		if err != nil {
			t.Fatal(err)
		}
		e, err := CheckRoot(context.Background(), o)
		var re *RootError
		switch {
		case c.want == "" && (err != nil || !e.IsDir):
			t.Errorf("%s: %+v %v, want a directory", c.url, e, err)
		case c.want != "" && (!errors.As(err, &re) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "secret")):
			t.Errorf("%s: %v, want a RootError with %q", c.url, err, c.want)
		}
	}
}
