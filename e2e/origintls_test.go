package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nginxTLSConf is nginxAuthConf's https twin: an autoindex over TLS with a
// certificate the test's own CA signed.
const nginxTLSConf = `daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  server {
    listen 127.0.0.1:%[2]d ssl;
    ssl_certificate %[1]s/server.pem;
    ssl_certificate_key %[1]s/server.key;
    root %[3]s;
    location / { autoindex on; autoindex_format json; }
  }
}
`

// writeTestCA makes a CA and a certificate for 127.0.0.1 signed by it: the CA in
// dir/ca.pem, the server's certificate and key in dir/server.pem, dir/server.key.
func writeTestCA(t *testing.T, dir string) (caFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cachegate test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	os.WriteFile(filepath.Join(dir, "server.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}), 0o644)
	os.WriteFile(filepath.Join(dir, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	return caFile
}

// startTLSNginx serves root over https until t ends; it returns the origin URL and
// the file of the CA that signed its certificate.
func startTLSNginx(t *testing.T, root string) (url, caFile string) {
	t.Helper()
	requireRoot(t)
	dir, err := os.MkdirTemp(workDir, "nginx-tls-")
	if err != nil {
		t.Fatal(err)
	}
	caFile = writeTestCA(t, dir)
	port := freePort(t)
	runNginxConf(t, dir, fmt.Sprintf(nginxTLSConf, dir, port, root), port)
	return fmt.Sprintf("https://127.0.0.1:%d/", port), caFile
}

// TestOriginCA: an https origin whose certificate a private CA signed fails at
// start with an error naming --origin-ca; with --origin-ca it mounts and reads,
// and with --origin-insecure it mounts with a warning naming the host.
func TestOriginCA(t *testing.T) {
	root, err := os.MkdirTemp(workDir, "origin-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(root, 0o755)
	os.WriteFile(filepath.Join(root, "a.txt"), []byte("over tls"), 0o644)
	url, ca := startTLSNginx(t, root)
	host := strings.TrimSuffix(strings.TrimPrefix(url, "https://"), "/")

	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "mnt"), 0o755)
	out, code := runCLITimeout(t, dir, "mount", url, filepath.Join(dir, "mnt"), "--cache-dir", filepath.Join(dir, "c"))
	t.Logf("untrusted certificate:\n%s", out)
	if code == 0 || !strings.Contains(out, "--origin-ca") || !strings.Contains(out, "--origin-insecure") {
		t.Fatalf("mount of an origin with an untrusted certificate: exit %d, output:\n%s\nwant a failure naming --origin-ca and --origin-insecure", code, out)
	}
	// A CA file without a certificate is named at start.
	out, code = runCLITimeout(t, dir, "mount", url, filepath.Join(dir, "mnt"), "--cache-dir", filepath.Join(dir, "c"), "--origin-ca", filepath.Join(root, "a.txt"))
	if code == 0 || !strings.Contains(out, "--origin-ca "+filepath.Join(root, "a.txt")+" holds no PEM certificate") {
		t.Errorf("--origin-ca of a file without PEM: exit %d, output:\n%s", code, out)
	}

	m := startMount(t, url, "", "--origin-ca", ca)
	if b, err := os.ReadFile(filepath.Join(m.Dir, "a.txt")); err != nil || string(b) != "over tls" {
		t.Fatalf("read with --origin-ca: %q, %v", b, err)
	}
	if strings.Contains(m.logs.String(), "origin-insecure") {
		t.Errorf("a verified origin logs the --origin-insecure warning:\n%s", m.logs.String())
	}
	m.stop(t)

	m = startMount(t, url, "", "--origin-insecure")
	if b, err := os.ReadFile(filepath.Join(m.Dir, "a.txt")); err != nil || string(b) != "over tls" {
		t.Fatalf("read with --origin-insecure: %q, %v", b, err)
	}
	logs := m.logs.String()
	if n := strings.Count(logs, "--origin-insecure"); n != 1 || !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, host) {
		t.Errorf("--origin-insecure logged %d warnings, want one WARN naming %s:\n%s", n, host, logs)
	}
}
