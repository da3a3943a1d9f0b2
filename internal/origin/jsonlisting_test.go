package origin

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// stdlibJSONListing is the reference the scanner must agree with: encoding/json
// decoding each element of the array into a ListingEntry, as cachegate did before.
func stdlibJSONListing(body string) ([]Entry, error) {
	dec := json.NewDecoder(strings.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, fmt.Errorf("not an array: %v %v", tok, err)
	}
	var out []Entry
	for dec.More() {
		var it ListingEntry
		if err := dec.Decode(&it); err != nil {
			return nil, err
		}
		f := jsonFields{name: it.Name, typ: it.Type, etag: it.ETag}
		f.modTime, f.modTimeOK = parseListingTime([]byte(it.MTime))
		if it.Size != nil {
			f.size, f.hasSize = *it.Size, true
		}
		if e, ok := jsonEntry(f); ok {
			out = append(out, e)
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return out, nil
}

func scanJSONListing(body string) ([]Entry, error) {
	b := &listingBuilder{max: 1 << 30, dir: "test"}
	if err := parseJSONListing(bufio.NewReader(strings.NewReader(body)), b); err != nil {
		return nil, err
	}
	return b.out, nil
}

var jsonListingCases = []string{
	`[]`, ` [ ] `, `[`, `]`, `{}`, `[{}]`, `[null]`, `[1]`, `["x"]`, `[[]]`, `[{},]`, `[{} {}]`, `[,{}]`,
	`[{"name":"a","type":"file","mtime":"Wed, 26 Nov 2026 00:54:29 GMT","size":1}]`,
	`[{"name":"a","type":"file","size":1}] trailing garbage`,
	`[{"name":"a","type":"file","size":1}`,
	`[{"name":"a","type":"file","size":1.0}]`, `[{"name":"a","type":"file","size":1e3}]`,
	`[{"name":"a","type":"file","size":-0}]`, `[{"name":"a","type":"file","size":-1}]`,
	`[{"name":"a","type":"file","size":9223372036854775807}]`, `[{"name":"a","type":"file","size":9223372036854775808}]`,
	`[{"name":"a","type":"file","size":"1"}]`, `[{"name":"a","type":"file","size":null}]`,
	`[{"name":"a","type":"file","size":1,"size":null}]`, `[{"name":"a","type":"file","size":01}]`,
	`[{"name":"a","name":null,"type":"file"}]`, `[{"name":5,"type":"file"}]`, `[{"name":"a","type":true}]`,
	`[{"NAME":"a","Type":"directory"}]`, `[{"name":"a","nAmE":"b","type":"directory"}]`,
	`[{"ſize":1,"name":"k","type":"file"}]`, `[{"name":"x","type":"file","etag":"\"v1\""}]`,
	`[{"name":"x","type":"file","etag":"W/\"v1\""}]`,
	`[{"name":"a\u00e9\ud83d\ude00\ud800\udc00\ud800x\udc00\\\/\b\f\n\r\t","type":"file"}]`,
	`[{"name":"a\ud800\ud800","type":"file"}]`, `[{"name":"a\u12","type":"file"}]`, `[{"name":"a\x","type":"file"}]`,
	"[{\"name\":\"a\xff\xfeb\xe2\x82\",\"type\":\"file\"}]", "[{\"name\":\"a\x01\",\"type\":\"file\"}]",
	`[{"name":"a","type":"file","other":{"x":[1,2,{"y":null}],"z":"s"},"more":[true,false,-1.5e+3]}]`,
	`[{"name":"a","type":"file","other":[1,]}]`, `[{"name":"a","type":"file","other":{"x"}}]`,
	`[{"name":"a","type":"file","other":tru}]`, `[{"name":"a","type":"file","other":nullx}]`,
	`[{"name":"a","type":"file","other":-}]`, `[{"name":"a","type":"file","other":1.}]`, `[{"name":"a","type":"file","other":.5}]`,
	`[{"name":"a","type":"file","mtime":"Sun, 29 Feb 2026 00:00:00 GMT"}]`,
	`[{"name":"a","type":"file","mtime":"Sun, 29 Feb 2028 23:59:59 GMT"}]`,
	`[{"name":"a","type":"file","mtime":"wed, 26 nov 2026 00:54:60 GMT"}]`,
	`[{"name":"a","type":"file","mtime":"2026-11-26T00:54:29.5Z"}]`,
	`[{"name":"a","type":"file","mtime":"Wed, 26 Nov 2026 24:54:29 GMT"}]`,
	`[{"name":"d","type":"directory"},{"name":"o","type":"other"},{"name":"..","type":"file"},{"name":"a/b","type":"file"}]`,
	`[{"name":"a","type":"file","x":` + strings.Repeat("[", 9998) + strings.Repeat("]", 9998) + `}]`,
	`[{"name":"a","type":"file","x":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}]`,
	`[` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `]`,
	`[` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `]`,
}

// The scanner accepts what encoding/json accepts and reads the same entries.
func TestJSONListingMatchesStdlib(t *testing.T) {
	for _, body := range jsonListingCases {
		checkJSONListingAgrees(t, body)
	}
}

func FuzzJSONListingMatchesStdlib(f *testing.F) {
	for _, body := range jsonListingCases {
		f.Add(body)
	}
	f.Fuzz(checkJSONListingAgrees)
}

func checkJSONListingAgrees(t *testing.T, body string) {
	want, wantErr := stdlibJSONListing(body)
	got, err := scanJSONListing(body)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("listing %.200q: scanner err %v, encoding/json err %v", body, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("listing %.200q:\nscanner       %+v\nencoding/json %+v", body, got, want)
	}
}

// parseHTTPDate answers only what time.Parse answers the same, and is not needed
// for anything else.
func FuzzParseHTTPDate(f *testing.F) {
	for _, s := range []string{"Wed, 26 Nov 2026 00:54:29 GMT", "Sun, 29 Feb 2028 23:59:59 GMT", "Mon, 29 Feb 2026 00:00:00 GMT",
		"Mon, 01 Jan 0000 00:00:00 GMT", "Xyz, 01 Jan 2026 00:00:00 GMT", "Mon, 01 Jan 2026 00:00:60 GMT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseHTTPDate([]byte(s))
		if !ok {
			return
		}
		want, err := time.Parse(http.TimeFormat, s)
		if err != nil || !got.Equal(want) || got.Location() != want.Location() {
			t.Fatalf("parseHTTPDate(%q) = %v; time.Parse: %v, %v", s, got, want, err)
		}
	})
}

// BenchmarkJSONListing reads nginx's listing of 10,000 files; -benchmem shows the
// bytes kept per entry.
func BenchmarkJSONListing(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("[")
	for i := range 10_000 {
		if i > 0 {
			sb.WriteString(",\n")
		}
		fmt.Fprintf(&sb, `{ "name":"f%06d.txt", "type":"file", "mtime":"Wed, 26 Nov 2026 00:54:29 GMT", "size":%d }`, i, i)
	}
	sb.WriteString("\n]\n")
	body := sb.String()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := scanJSONListing(body); err != nil {
			b.Fatal(err)
		}
	}
}
