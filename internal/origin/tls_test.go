package origin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newCAPEM returns a self-signed CA certificate named cn, in PEM.
func newCAPEM(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestAddCAs(t *testing.T) {
	dir := t.TempDir()
	good, empty, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "empty.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(good, newCAPEM(t, "test CA"), 0o644)
	os.WriteFile(empty, []byte("not a certificate\n"), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), 0o644)
	for _, tc := range []struct{ file, err string }{
		{good, ""},
		{filepath.Join(dir, "missing.pem"), "--origin-ca " + filepath.Join(dir, "missing.pem") + ": open"},
		{empty, "--origin-ca " + empty + " holds no PEM certificate"},
		{key, "--origin-ca " + key + " holds no PEM certificate"},
	} {
		err := addCAs(x509.NewCertPool(), "--origin-ca", tc.file)
		var ue *UsageError
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.file, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &ue)):
			t.Errorf("%s: %v, want a usage error with %q", tc.file, err, tc.err)
		}
	}
	// A bad --origin-ca stops the origin from being made at all.
	if _, err := New("https://127.0.0.1:1/", Options{CAFile: empty}); err == nil || !strings.Contains(err.Error(), empty) {
		t.Errorf("New with a bad --origin-ca: %v, want an error naming the file", err)
	}
	if _, err := New("s3://bucket/", Options{S3Endpoint: "https://127.0.0.1:1", CAFile: empty}); err == nil || !strings.Contains(err.Error(), empty) {
		t.Errorf("NewS3 with a bad --origin-ca: %v, want an error naming the file", err)
	}
}

// TestS3TransportCombinesCAs: AWS_CA_BUNDLE and --origin-ca both add to the roots.
func TestS3TransportCombinesCAs(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.pem"), filepath.Join(dir, "b.pem")
	os.WriteFile(a, newCAPEM(t, "bundle CA"), 0o644)
	os.WriteFile(b, newCAPEM(t, "flag CA"), 0o644)
	t.Setenv("AWS_CA_BUNDLE", a)
	tr, err := s3Transport(true, "s3.example", Options{CAFile: b})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range tr.TLSClientConfig.RootCAs.Subjects() { // Subjects lists the added certificates, not the system ones
		var n pkix.RDNSequence
		if _, err := asn1.Unmarshal(s, &n); err == nil {
			var name pkix.Name
			name.FillFromRDNSequence(&n)
			names = append(names, name.CommonName)
		}
	}
	if got := strings.Join(names, ","); !strings.Contains(got, "bundle CA") || !strings.Contains(got, "flag CA") {
		t.Errorf("S3 roots hold %q, want both the AWS_CA_BUNDLE and the --origin-ca CA", got)
	}
}

// TestHTTPSOriginCA: an https origin signed by a private CA fails its start check
// with an error that names --origin-ca and --origin-insecure, and works with
// either.
func TestHTTPSOriginCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`[{"name":"f","type":"file","size":1,"mtime":"Mon, 01 Jan 2024 00:00:00 GMT"}]`))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)

	h, err := NewHTTP(srv.URL+"/", Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = CheckRoot(t.Context(), h)
	var re *RootError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "--origin-ca") || !strings.Contains(err.Error(), "--origin-insecure") {
		t.Fatalf("untrusted certificate: %v, want a RootError naming --origin-ca and --origin-insecure", err)
	}
	for _, opts := range []Options{{CAFile: ca}, {Insecure: true}} {
		opts.Timeout = 5 * time.Second
		h, err := NewHTTP(srv.URL+"/", opts)
		if err != nil {
			t.Fatal(err)
		}
		if e, err := CheckRoot(t.Context(), h); err != nil || !e.IsDir {
			t.Errorf("%+v: %+v, %v", opts, e, err)
		}
	}
}
