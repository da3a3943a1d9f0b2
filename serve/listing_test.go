package serve

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cachegate/cachegate/cache"
	"github.com/cachegate/cachegate/internal/origin"
)

// TestHTMLIndexHrefs: a name that looks like a URL scheme stays a relative link
// (issue 19 point 18).
func TestHTMLIndexHrefs(t *testing.T) {
	body := string(htmlIndex("d", []origin.Entry{
		{Name: "javascript:alert(document.domain)", Size: 1},
		{Name: "data:text", IsDir: true},
		{Name: `a"b<c>`, Size: 1},
	}))
	for _, want := range []string{
		`<a href="./javascript:alert%28document.domain%29">javascript:alert(document.domain)</a>`,
		`<a href="./data:text/">data:text/</a>`,
		`<a href="./a%22b%3Cc%3E">a&#34;b&lt;c&gt;</a>`,
		`<a href="../">../</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("index lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, `href="javascript:`) || strings.Contains(body, `href="data:`) {
		t.Errorf("index links to a scheme:\n%s", body)
	}
}

// TestListingStopsWhenClientLeaves: a JSON listing whose entries need one origin
// stat each stops asking once its client has gone (issue 19 point 8, server part).
func TestListingStopsWhenClientLeaves(t *testing.T) {
	files := map[string][]byte{}
	for i := 0; i < 200; i++ {
		files[fmt.Sprintf("d/f%03d", i)] = []byte("x")
	}
	o := &stubOrigin{files: files, inexact: true, statGate: func() { time.Sleep(10 * time.Millisecond) }}
	ts := startTestServer(t, o, cache.Options{}, Options{})
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(nc, "GET /d/?format=json HTTP/1.1\r\nHost: x\r\n\r\n")
	deadline := time.Now().Add(5 * time.Second)
	for o.statCount() < 5 {
		if time.Now().After(deadline) {
			t.Fatal("no stat of the listing's entries")
		}
		time.Sleep(5 * time.Millisecond)
	}
	nc.Close()
	at := o.statCount()
	time.Sleep(time.Second) // 100 more stats at 10 ms each if nothing stops them
	if n := o.statCount(); n > at+10 {
		t.Errorf("%d stats after the client left (%d before), of 200 entries", n-at, at)
	}
}

// TestJSONListingEmptyFileSize: a 0-byte file's entry says "size": 0, so a client
// can tell an empty file from one whose size is not known (issue 20 point 13).
func TestJSONListingEmptyFileSize(t *testing.T) {
	ts := startTestServer(t, &stubOrigin{files: map[string][]byte{"d/empty": {}, "d/x": []byte("abc")}}, cache.Options{}, Options{})
	r := ts.get(t, "/d/?format=json")
	var items []map[string]any
	if err := json.Unmarshal(r.body, &items); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	sizes := map[string]any{}
	for _, it := range items {
		sizes[it["name"].(string)] = it["size"]
	}
	if sizes["empty"] != float64(0) || sizes["x"] != float64(3) {
		t.Errorf("sizes %v, want empty: 0, x: 3 (%s)", sizes, r.body)
	}
}
