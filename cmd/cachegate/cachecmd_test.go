package main

import (
	"net/url"
	"testing"
)

// TestVerbURLKeepsEveryPath: the control verbs' query parameters reach the owner as
// given, whatever the characters of the path (';' was dropped: `cache stat 'a;b'`
// asked about the path "").
func TestVerbURLKeepsEveryPath(t *testing.T) {
	for _, p := range []string{"a;b", "a&b=c", "a+b", "a%2Fb", "a#b", "a b", "a?b", "ü/日本", "x;y;z", ""} {
		u, err := url.Parse(verbURL("/v1/object", url.Values{"path": {p}}))
		if err != nil {
			t.Fatalf("%q: %v", p, err)
		}
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil || u.Path != "/v1/object" || q.Get("path") != p || len(q) != 1 {
			t.Errorf("path %q: the owner reads %q as path %q (query error %v)", p, u.String(), q.Get("path"), err)
		}
	}
}
