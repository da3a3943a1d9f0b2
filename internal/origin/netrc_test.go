package origin

import (
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseNetrc(t *testing.T) {
	for _, tc := range []struct {
		name, data, host string
		want             netrcCreds
		found            bool
		err              string
	}{
		{name: "one line", data: "machine h login alice password s3cret\n", host: "h", want: netrcCreds{"alice", "s3cret"}, found: true},
		{name: "tokens across lines", data: "machine\nh\n  login alice\n\tpassword\ns3cret", host: "h", want: netrcCreds{"alice", "s3cret"}, found: true},
		{name: "host case", data: "machine Example.COM login a password p", host: "example.com", want: netrcCreds{"a", "p"}, found: true},
		{name: "other machine", data: "machine x login a password p", host: "h"},
		{name: "first match wins", data: "machine h login a password p\nmachine h login b password q", host: "h", want: netrcCreds{"a", "p"}, found: true},
		{name: "later machine", data: "machine x login a password p machine h login b password q", host: "h", want: netrcCreds{"b", "q"}, found: true},
		{name: "default", data: "machine x login a password p\ndefault login anon password guest", host: "h", want: netrcCreds{"anon", "guest"}, found: true},
		{name: "machine before default", data: "machine h login a password p\ndefault login anon password guest", host: "h", want: netrcCreds{"a", "p"}, found: true},
		{name: "comments", data: "# my hosts\nmachine h # the origin\n login a # me\n password p\n#machine h login evil password evil\n", host: "h", want: netrcCreds{"a", "p"}, found: true},
		{name: "account ignored", data: "machine h login a account acct password p", host: "h", want: netrcCreds{"a", "p"}, found: true},
		{name: "macdef skipped", data: "macdef init\ncd /pub\nmachine h login evil password evil\n\nmachine h login a password p\n", host: "h", want: netrcCreds{"a", "p"}, found: true},
		{name: "macdef at end", data: "machine h login a password p\nmacdef x\nls\n", host: "h", want: netrcCreds{"a", "p"}, found: true},
		{name: "quoted", data: `machine h login "al ice" password "a\"b\\c d\t"`, host: "h", want: netrcCreds{"al ice", "a\"b\\c d\t"}, found: true},
		{name: "login only", data: "machine h login a", host: "h", want: netrcCreds{login: "a"}, found: true},
		{name: "unknown words skipped", data: "machine h port 21 login a password p", host: "h", want: netrcCreds{"a", "p"}, found: true},
		{name: "empty", data: "", host: "h"},
		{name: "unterminated quote", data: "machine h login a password \"p", host: "h", err: "line 1: a quoted string has no closing quote"},
		{name: "quote across lines", data: "machine h\nlogin \"a\nb\"", host: "h", err: "line 2: a quoted string does not end on its line"},
		{name: "keyword without value", data: "machine h login a\npassword", host: "h", err: `line 2: "password" has no value`},
		{name: "long word", data: "machine h password " + strings.Repeat("x", maxNetrcToken+1), host: "h", err: "longer than"},
		{name: "too large", data: strings.Repeat(" ", maxNetrc+1), host: "h", err: "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, found, err := parseNetrc(tc.data, tc.host)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || found != tc.found || c != tc.want {
				t.Fatalf("= %+v, %v, %v; want %+v, %v", c, found, err, tc.want, tc.found)
			}
		})
	}
}

// Errors never show a token of the file: it may be a password.
func TestParseNetrcErrorsHidePasswords(t *testing.T) {
	for _, data := range []string{"machine h password \"Pa55w0rd", "machine h login \"Pa55w0rd\nx\"", "password Pa55w0rd login"} {
		if _, _, err := parseNetrc(data, "h"); err == nil || strings.Contains(err.Error(), "Pa55w0rd") {
			t.Errorf("parseNetrc(%q) = %v; want an error without the password", data, err)
		}
	}
}

// netrcQuote writes s as a quoted netrc token.
func netrcQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

// FuzzParseNetrc: any input parses without panicking in bounded work, and what it
// finds survives being written back as an entry and parsed again.
func FuzzParseNetrc(f *testing.F) {
	for _, s := range []string{
		"machine h login a password p",
		"default login a password p",
		"# c\nmachine h\nlogin \"a b\" password \"x\\\"y\"\nmacdef m\nls\n\nmachine h2 login b",
		"macdef",
		"machine",
		"\"",
		"machine h login a\nmacdef x\n\n\npassword p",
	} {
		f.Add(s, "h")
	}
	f.Fuzz(func(t *testing.T, data, host string) {
		if len(data) > 1<<16 || len(host) > 256 {
			return
		}
		c, found, err := parseNetrc(data, host)
		if err != nil || !found || host == "" || strings.ContainsAny(host, " \t\r\n\f\v#\"") {
			return
		}
		if len(c.login) > maxNetrcToken || len(c.password) > maxNetrcToken {
			t.Fatalf("token longer than the bound: %d, %d", len(c.login), len(c.password))
		}
		again := "machine " + host + " login " + netrcQuote(c.login) + " password " + netrcQuote(c.password)
		c2, found2, err := parseNetrc(again, host)
		if err != nil || !found2 || c2 != c {
			t.Fatalf("round trip of %+v through %q = %+v, %v, %v", c, again, c2, found2, err)
		}
	})
}

// TestNetrcAuthFile: $NETRC names the file (as curl); a missing $NETRC or a bad
// file is a usage error naming the file and never the password.
func TestNetrcAuthFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "netrc")
	os.WriteFile(good, []byte("machine 127.0.0.1 login alice password Pa55w0rd\n"), 0o600)
	t.Setenv("NETRC", good)
	c, found, err := netrcAuth("127.0.0.1")
	if err != nil || !found || c != (netrcCreds{"alice", "Pa55w0rd"}) {
		t.Fatalf("netrcAuth = %+v, %v, %v", c, found, err)
	}
	t.Setenv("NETRC", filepath.Join(dir, "missing"))
	if _, _, err := netrcAuth("127.0.0.1"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing $NETRC: %v, want an error naming it", err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("machine 127.0.0.1 password \"Pa55w0rd"), 0o600)
	t.Setenv("NETRC", bad)
	if _, _, err := netrcAuth("127.0.0.1"); err == nil || !strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), "Pa55w0rd") {
		t.Errorf("bad netrc: %v, want an error naming the file and not the password", err)
	}
	// Without $NETRC, a home without .netrc is no error.
	t.Setenv("NETRC", "")
	t.Setenv("HOME", dir)
	if _, found, err := netrcAuth("127.0.0.1"); err != nil || found {
		t.Errorf("no ~/.netrc: %v, %v; want nothing", found, err)
	}
}

// TestHTTPNetrcPrecedence: the netrc entry for the origin's host is sent as Basic
// auth only when neither the URL's userinfo nor an Authorization header gives one,
// and it never shows in the origin's name.
func TestHTTPNetrcPrecedence(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("[]"))
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	nrc := filepath.Join(t.TempDir(), "netrc")
	os.WriteFile(nrc, []byte("machine 127.0.0.1 login alice password Pa55w0rd\n"), 0o600)
	t.Setenv("NETRC", nrc)
	basic := func(u, p string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)) }
	for _, tc := range []struct {
		name, url string
		headers   []string
		want      string
	}{
		{"netrc", "http://" + host + "/", nil, basic("alice", "Pa55w0rd")},
		{"userinfo wins", "http://bob:pw@" + host + "/", nil, basic("bob", "pw")},
		{"header wins", "http://" + host + "/", []string{"Authorization: Bearer tok"}, "Bearer tok"},
	} {
		h, err := NewHTTP(tc.url, Options{Headers: tc.headers})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Stat(t.Context(), ""); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s: Authorization %q, want %q", tc.name, got, tc.want)
		}
		if strings.Contains(h.String(), "Pa55w0rd") {
			t.Errorf("%s: the origin's name %q shows the password", tc.name, h.String())
		}
	}
}

// TestNetrcReadableByOthersWarns: a netrc others can read is used (as curl does)
// but with a warning that names the file and not the password.
func TestNetrcReadableByOthersWarns(t *testing.T) {
	var buf strings.Builder
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(old)
	nrc := filepath.Join(t.TempDir(), "netrc")
	os.WriteFile(nrc, []byte("machine h login alice password Pa55w0rd\n"), 0o600)
	os.Chmod(nrc, 0o644)
	t.Setenv("NETRC", nrc)
	if c, found, err := netrcAuth("h"); err != nil || !found || c.password != "Pa55w0rd" {
		t.Fatalf("netrcAuth = %+v, %v, %v", c, found, err)
	}
	if log := buf.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, nrc) || !strings.Contains(log, "chmod 600") || strings.Contains(log, "Pa55w0rd") {
		t.Errorf("log of a 0644 netrc:\n%s\nwant a warning naming the file and chmod 600, not the password", log)
	}
	buf.Reset()
	os.Chmod(nrc, 0o600)
	netrcAuth("h")
	if buf.Len() != 0 {
		t.Errorf("a 0600 netrc logs:\n%s", buf.String())
	}
}
