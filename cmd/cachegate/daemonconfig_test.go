package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodConfig = `cache:
  dir: /var/cache/cachegate
  size: 100GiB
  min_free: 5%
  chunk_size: 1MiB
serve:
  listen: 127.0.0.1:8080
  transfer: auto
metrics: 127.0.0.1:9090
origins:
  - name: pub
    url: http://files.example/pub/
    mount: /mnt/pub
    serve: true
    metadata_ttl: 1m
    origin_timeout: 10s
    headers: ["Authorization: Bearer x"]
    uid: 1000
    gid: 1000
    allow_other: true
    trust_html_index: true
  - name: data
    url: s3://bucket/prefix
    s3_endpoint: http://minio:9000
    s3_region: us-east-1
    mount: /mnt/data
`

func TestDaemonConfigParses(t *testing.T) {
	cfg, err := parseDaemonConfig("c.yaml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CacheDir != "/var/cache/cachegate" || cfg.CacheSize != 100<<30 || cfg.MinFree.Pct != 5 || cfg.ChunkSize != 1<<20 {
		t.Errorf("cache section: %+v", cfg)
	}
	if cfg.Serve == nil || cfg.Serve.Listen != "127.0.0.1:8080" || cfg.Metrics != "127.0.0.1:9090" {
		t.Errorf("serve, metrics: %+v %q", cfg.Serve, cfg.Metrics)
	}
	if len(cfg.Origins) != 2 {
		t.Fatalf("%d origins", len(cfg.Origins))
	}
	p := cfg.Origins[0]
	if p.Name != "pub" || p.Mount != "/mnt/pub" || !p.Serve || p.MetadataTTL != time.Minute || p.Timeout != 10*time.Second || len(p.Headers) != 1 ||
		p.UID == nil || *p.UID != 1000 || p.GID == nil || *p.GID != 1000 || !p.AllowOther || !p.TrustHTMLIndex {
		t.Errorf("pub: %+v", p)
	}
	if d := cfg.Origins[1]; d.S3Endpoint != "http://minio:9000" || d.S3Region != "us-east-1" || d.Serve || d.UID != nil {
		t.Errorf("data: %+v", d)
	}
	// Lines moved are the same origin; a changed value is not.
	moved, _ := parseDaemonConfig("c.yaml", []byte("\n\n"+goodConfig))
	if !moved.Origins[0].same(p) {
		t.Error("the same origin on other lines differs")
	}
	changed, _ := parseDaemonConfig("c.yaml", []byte(strings.Replace(goodConfig, "metadata_ttl: 1m", "metadata_ttl: 2m", 1)))
	if changed.Origins[0].same(p) {
		t.Error("a changed TTL is the same origin")
	}
}

// TestDaemonConfigErrors: every problem is reported with its file and line.
func TestDaemonConfigErrors(t *testing.T) {
	origins := "origins:\n  - name: pub\n    url: http://a/\n"
	for _, tc := range []struct {
		name, config string
		want         []string // each a problem's "FILE:LINE: …" start and a word of it
	}{
		{"unknown key", "cache:\n  dir: /c\n  sise: 1GiB\n" + origins, []string{`c.yaml:3: unknown key "sise"`}},
		{"unknown origin key", origins + "    mountt: /mnt\n", []string{`c.yaml:4: unknown key "mountt" (known here: name, url, mount`}},
		{"unknown top key", "cachee: {}\n" + origins, []string{`c.yaml:1: unknown key "cachee"`}},
		{"bad size", "cache:\n  size: 10 gigs\n" + origins, []string{"c.yaml:2: cache.size:"}},
		{"bad chunk", "cache:\n  chunk_size: 5000\n" + origins, []string{"c.yaml:2: cache.chunk_size 5000 is not a multiple of 4KiB"}},
		{"too small", "cache:\n  size: 1MiB\n" + origins, []string{"c.yaml:2: cache.size 1MiB must hold at least 4 chunks"}},
		{"bad min_free", "cache:\n  min_free: 120%\n" + origins, []string{"c.yaml:2: cache.min_free:"}},
		{"dup name", origins + "  - name: pub\n    url: http://b/\n", []string{`c.yaml:4: origin name "pub" is already used on line 2`}},
		{"bad name", "origins:\n  - name: Pub/1\n    url: http://a/\n", []string{`c.yaml:2: origin name "Pub/1"`}},
		{"no name", "origins:\n  - url: http://a/\n", []string{"c.yaml:2: origins[0] has no name"}},
		{"no url", "origins:\n  - name: a\n", []string{"c.yaml:2: origin a has no url"}},
		{"bad url", "origins:\n  - name: a\n    url: ftp://x/\n", []string{`c.yaml:3: origin a: url "ftp://x/"`}},
		{"bad ttl", origins + "    metadata_ttl: 5 minutes\n", []string{`c.yaml:4: origin pub: metadata_ttl "5 minutes"`}},
		{"bad origin_timeout", origins + "    origin_timeout: 2h\n", []string{`c.yaml:4: origin pub: origin_timeout "2h"`}},
		{"trust_html_index on s3", "origins:\n  - name: a\n    url: s3://b/\n    trust_html_index: true\n", []string{"c.yaml:4: origin a: trust_html_index is for http:// and https:// urls"}},
		{"bad uid", origins + "    uid: alice\n", []string{"c.yaml:4: cannot unmarshal"}},
		{"relative mount", origins + "    mount: mnt/pub\n", []string{`c.yaml:4: origin pub: mount "mnt/pub" is not an absolute path`}},
		{"dup mount", origins + "    mount: /m\n  - name: b\n    url: http://b/\n    mount: /m/\n", []string{"c.yaml:7: origin b: mount /m/ is already used on line 4"}},
		{"serve without section", origins + "    serve: true\n", []string{"c.yaml:4: origin pub has serve: true but the config has no serve: section"}},
		{"bad listen", "serve:\n  listen: nowhere\n" + origins, []string{`c.yaml:2: serve.listen: "nowhere" is not a listen address`}},
		{"bad transfer", "serve:\n  transfer: fast\n" + origins, []string{`c.yaml:2: serve.transfer "fast"`}},
		{"bad header", origins + "    headers: [\"NoColon\"]\n", []string{`c.yaml:4: origin pub: header "NoColon"`}},
		{"bad peer_copy", "serve:\n  peers: [http://127.0.0.1:8080]\n  peer_copy: all\n" + origins, []string{`c.yaml:3: serve.peer_copy "all"`}},
		{"bad peer_span", "serve:\n  peers: [http://127.0.0.1:8080]\n  peer_span: 0\n" + origins, []string{`c.yaml:3: serve.peer_span "0"`}},
		{"bad peer_timeout", "serve:\n  peers: [http://127.0.0.1:8080]\n  peer_timeout: soon\n" + origins, []string{`c.yaml:3: serve.peer_timeout "soon"`}},
		{"peer keys without peers", "serve:\n  advertise: http://a:1\n" + origins, []string{"c.yaml:2: serve.peers is not set"}},
		{"no origins", "cache:\n  size: 1GiB\n", []string{"c.yaml:1: no origins"}},
		{"empty", "", []string{"c.yaml:1: the config is empty"}},
		{"syntax", "origins: [\n", []string{"c.yaml:1: did not find"}},
		{"two problems", "cache:\n  size: x\n" + "origins:\n  - name: A\n    url: http://a/\n", []string{"c.yaml:2: cache.size", `c.yaml:4: origin name "A"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseDaemonConfig("c.yaml", []byte(tc.config))
			var ce *configError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a configError", err)
			}
			if len(ce.problems) != len(tc.want) {
				t.Fatalf("problems %q, want %d", ce.problems, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(ce.problems[i], w) {
					t.Errorf("problem %q, want it to start %q", ce.problems[i], w)
				}
			}
		})
	}
}

// TestDaemonConfigCheck: what needs the system (mount points, token file, origins
// that open) is checked by loadDaemonConfig, with lines too.
func TestDaemonConfigCheck(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	cfg := "cache:\n  dir: " + dir + "/cache\nserve:\n  auth_token_file: " + dir + "/none\norigins:\n  - name: a\n    url: /no/such/dir\n    mount: " + dir + "/nomnt\n"
	os.WriteFile(file, []byte(cfg), 0o644)
	_, err := loadDaemonConfig(file)
	var ce *configError
	if !errors.As(err, &ce) || len(ce.problems) != 3 {
		t.Fatalf("err = %v", err)
	}
	for i, w := range []string{file + ":1: serve.auth_token_file", file + ":7: origin a:", file + ":8: origin a: mount " + dir + "/nomnt does not exist"} {
		if !strings.HasPrefix(ce.problems[i], w) {
			t.Errorf("problem %q, want %q", ce.problems[i], w)
		}
	}
	os.Mkdir(filepath.Join(dir, "nomnt"), 0o755)
	os.Mkdir(filepath.Join(dir, "src"), 0o755)
	os.WriteFile(filepath.Join(dir, "none"), []byte("tok\n"), 0o600)
	os.WriteFile(file, []byte(strings.Replace(cfg, "/no/such/dir", dir+"/src", 1)), 0o644)
	if _, err := loadDaemonConfig(file); err != nil {
		t.Fatal(err)
	}
}

func FuzzDaemonConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("origins:\n  - name: pub\n    url: http://a/\n    uid: -1\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("cache: {size: 1GiB, chunk_size: 4KiB}\norigins: [{name: x, url: s3://b}]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := parseDaemonConfig("f.yaml", b)
		if err != nil {
			var ce *configError
			if !errors.As(err, &ce) || len(ce.problems) == 0 {
				t.Fatalf("err %v is not a configError with problems", err)
			}
			for _, p := range ce.problems {
				if !strings.HasPrefix(p, "f.yaml:") {
					t.Fatalf("problem %q lacks the file and line", p)
				}
			}
			return
		}
		if len(cfg.Origins) == 0 || cfg.ChunkSize%4096 != 0 || cfg.CacheSize < 4*cfg.ChunkSize {
			t.Fatalf("accepted an invalid config: %+v", cfg)
		}
		names := map[string]bool{}
		for _, o := range cfg.Origins {
			if names[o.Name] {
				t.Fatalf("accepted a duplicate name %q", o.Name)
			}
			names[o.Name] = true
		}
	})
}

// TestVerbOnStoppedDaemonCache: a cache verb on the cache dir of a daemon that is not
// running says which daemon to start, not that no origin was given.
func TestVerbOnStoppedDaemonCache(t *testing.T) {
	dir := t.TempDir()
	if err := writeOwnerInfo(dir, ownerInfo{CacheSize: 1 << 30, ChunkSize: 1 << 20, Config: "/etc/cachegate/cachegate.yaml"}); err != nil {
		t.Fatal(err)
	}
	_, err := openSession(dir, "")
	var ue *usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "cachegate daemon --config /etc/cachegate/cachegate.yaml, which is not running") {
		t.Fatalf("err = %v", err)
	}
}

// A daemon joins a peer group from its serve section: the keys read as serve's flags,
// and --check makes the group (members, advertise among them) without starting it.
func TestDaemonConfigPeers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.Mkdir(filepath.Join(dir, "src"), 0o755)
	cfg := "cache:\n  dir: " + dir + "/cache\nserve:\n  listen: 127.0.0.1:8081\n  peers: [http://127.0.0.1:8081, http://127.0.0.2:8081]\n" +
		"  peer_span: 16MiB\n  peer_copy: owner\n  peer_timeout: 3s\norigins:\n  - name: a\n    url: " + dir + "/src\n    serve: true\n"
	os.WriteFile(file, []byte(cfg), 0o644)
	c, err := loadDaemonConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Serve.Peers
	if len(p.Peers) != 2 || p.PeerSpan != 16<<20 || p.PeerCopy != "owner" || p.PeerTimeout != 3*time.Second || p.Advertise != "" {
		t.Fatalf("peers read as %+v", p)
	}
	// This member is not in the list: the group cannot be made.
	os.WriteFile(file, []byte(strings.Replace(cfg, "listen: 127.0.0.1:8081", "listen: 127.0.0.3:8081", 1)), 0o644)
	_, err = loadDaemonConfig(file)
	var ce *configError
	if !errors.As(err, &ce) || len(ce.problems) != 1 || !strings.HasPrefix(ce.problems[0], file+":5: serve.peers: --advertise http://127.0.0.3:8081 is not one of --peers") {
		t.Fatalf("err = %v, want the advertised URL refused on line 5", err)
	}
}
