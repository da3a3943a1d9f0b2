package main

import (
	"errors"
	"strings"
	"testing"
)

// TestDaemonConfigRouteNameNotServerPath: an origin named "-" would be served under
// /-/, the server's own paths (/-/status, /-/metrics), and a name starting with '-'
// is read as a flag by the cache verbs' NAME:PATH.
func TestDaemonConfigRouteNameNotServerPath(t *testing.T) {
	for _, name := range []string{"-", "-x", "--help"} {
		cfg := "origins:\n  - name: \"" + name + "\"\n    url: http://a/\n"
		_, err := parseDaemonConfig("c.yaml", []byte(cfg))
		var ce *configError
		if !errors.As(err, &ce) || len(ce.problems) != 1 || !strings.HasPrefix(ce.problems[0], "c.yaml:2: origin name") {
			t.Errorf("name %q: err = %v, want c.yaml:2: origin name …", name, err)
		}
	}
}
