package origin

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// maxCAFile bounds what a CA file may make us read: bundles of every public root
// are about 200 KB.
const maxCAFile = 16 << 20

// addCAs adds the PEM certificates of file to pool; flag names the option that
// gave it, for the error, which says what is wrong with which file.
func addCAs(pool *x509.CertPool, flag, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return &UsageError{fmt.Sprintf("%s %s: %v", flag, file, err)}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCAFile+1))
	if err != nil {
		return &UsageError{fmt.Sprintf("%s %s: %v", flag, file, err)}
	}
	if len(b) > maxCAFile {
		return &UsageError{fmt.Sprintf("%s %s: larger than %d bytes: not a CA bundle", flag, file, maxCAFile)}
	}
	if !pool.AppendCertsFromPEM(b) {
		return &UsageError{fmt.Sprintf("%s %s holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the CA's certificate in PEM form", flag, file)}
	}
	return nil
}

// systemPool is a copy of the system roots to add to (an empty pool where the
// system has none).
func systemPool() *x509.CertPool {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		return x509.NewCertPool()
	}
	return pool
}

// tlsConfig is the TLS configuration of an https origin at host: the system roots
// plus the CA files (each a flag or variable name and a path; empty paths are
// skipped), and no verification at all with Options.Insecure, which is logged as a
// warning naming host. nil when nothing changes Go's defaults.
func tlsConfig(opts Options, host string, cas ...[2]string) (*tls.Config, error) {
	var pool *x509.CertPool
	for _, ca := range cas {
		if ca[1] == "" {
			continue
		}
		if pool == nil {
			pool = systemPool()
		}
		if err := addCAs(pool, ca[0], ca[1]); err != nil {
			return nil, err
		}
	}
	if pool == nil && !opts.Insecure {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if opts.Insecure {
		// Never silent: whoever reads the log learns that a machine in the middle
		// could serve anything as this origin.
		slog.Warn("--origin-insecure: the origin's TLS certificate is NOT verified; anyone on the network path can read and change what it serves", "host", host)
		cfg.InsecureSkipVerify = true
	}
	return cfg, nil
}

// certError reports whether err is a TLS certificate that failed verification.
func certError(err error) bool {
	var ve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ie x509.CertificateInvalidError
	return errors.As(err, &ve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ie)
}
