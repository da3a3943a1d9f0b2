package origin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
	"github.com/minio/minio-go/v7/pkg/signer"
)

// S3 is a bucket (and optional key prefix) of an S3-compatible store. It uses
// minio-go: a small, dependency-light client that speaks to AWS and to every
// S3-compatible server (MinIO, versitygw, Ceph, …) alike, with the standard credential
// chain and path-style addressing built in; aws-sdk-go-v2 would bring a dozen modules
// for the same four calls (ListObjectsV2, HeadObject, ranged GetObject, HeadBucket).
//
// Directories are key prefixes ending in "/" (ListObjectsV2 with delimiter "/"), with
// or without zero-byte marker objects; the version of an object is its ETag, and every
// ranged read is conditional on it (If-Match).
type S3 struct {
	client *minio.Client
	once   *minio.Client // the same, making one attempt per request: for reads whose caller retries
	bucket string
	prefix string // "" or ends in "/"
	name   string
	region string
	// For a plain-http endpoint, ranged reads go over the splice-capable raw client,
	// signed here (SigV4, minio-go's signer): minio's Object copies each body through
	// a goroutine and user memory, which held a cold read of versitygw to about half
	// the speed of a plain GetObject; rawBase is "http://host/bucket/".
	raw     *rawClient
	rawBase string
	// maxEntries caps the entries of one directory listing.
	maxEntries int
	timeout    time.Duration // the longest a listing may go without a key
}

// NewS3 returns an origin for spec, "s3://bucket[/prefix]".
func NewS3(spec string, opts Options) (*S3, error) {
	u, err := url.Parse(spec)
	if err != nil || u.Host == "" {
		return nil, &UsageError{fmt.Sprintf("bad S3 origin %q: use s3://bucket[/prefix]", spec)}
	}
	bucket, prefix := u.Host, strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	endpoint, secure, lookup := "s3.amazonaws.com", true, minio.BucketLookupAuto
	region := opts.S3Region
	if opts.S3Endpoint != "" {
		eu, err := url.Parse(opts.S3Endpoint)
		if err != nil || eu.Host == "" || (eu.Scheme != "http" && eu.Scheme != "https") {
			return nil, &UsageError{fmt.Sprintf("bad --s3-endpoint %q: use http(s)://host[:port]", opts.S3Endpoint)}
		}
		endpoint, secure, lookup = eu.Host, eu.Scheme == "https", minio.BucketLookupPath
		if region == "" {
			region = "us-east-1" // custom stores rarely care; saves a GetBucketLocation
		}
	} else if region == "" {
		region = os.Getenv("AWS_REGION")
		if region == "" {
			region = os.Getenv("AWS_DEFAULT_REGION")
		}
	}
	tr, err := s3Transport(secure, endpoint, opts)
	if err != nil {
		return nil, err
	}
	mopts := minio.Options{
		Creds:        credentialChain(),
		Secure:       secure,
		Region:       region,
		BucketLookup: lookup,
		Transport:    tr,
	}
	client, err := minio.New(endpoint, &mopts)
	if err != nil {
		return nil, &UsageError{fmt.Sprintf("S3 origin %s: %v", spec, err)}
	}
	mopts.MaxRetries = 1 // the caller retries (CallerRetries); minio's default is 10
	once, err := minio.New(endpoint, &mopts)
	if err != nil {
		return nil, &UsageError{fmt.Sprintf("S3 origin %s: %v", spec, err)}
	}
	o := &S3{client: client, once: once, bucket: bucket, prefix: prefix, name: "s3://" + bucket + "/" + prefix, region: region, maxEntries: opts.maxDirEntries(), timeout: opts.Timeout}
	if opts.S3Endpoint != "" && !secure {
		eu, _ := url.Parse(opts.S3Endpoint)
		o.raw = newRawClient(eu, opts.Timeout)
		o.rawBase = "http://" + eu.Host + "/" + bucket + "/"
	}
	return o, nil
}

// credentialChain is the standard AWS order: environment, shared credentials file
// (AWS_PROFILE), instance metadata (unless AWS_EC2_METADATA_DISABLED), and anonymous
// access when none has credentials.
func credentialChain() *credentials.Credentials {
	providers := []credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{Profile: os.Getenv("AWS_PROFILE")},
	}
	if !strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true") {
		providers = append(providers, &credentials.IAM{Client: &http.Client{Transport: http.DefaultTransport}})
	}
	return credentials.NewChainCredentials(providers)
}

// s3Transport is minio's transport to host with the system roots plus AWS_CA_BUNDLE,
// which the AWS tools honour and which may be set to a bundle (even the system
// one), plus --origin-ca; or no verification with --origin-insecure.
func s3Transport(secure bool, host string, opts Options) (*http.Transport, error) {
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	tr.ResponseHeaderTimeout = opts.Timeout
	tr.MaxIdleConnsPerHost = 64
	if !secure {
		return tr, nil
	}
	// Both add to the system roots: a private store's CA may come either way.
	cfg, err := tlsConfig(opts, host, [2]string{"AWS_CA_BUNDLE", os.Getenv("AWS_CA_BUNDLE")}, [2]string{"--origin-ca", opts.CAFile})
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tr.TLSClientConfig.RootCAs = cfg.RootCAs
		tr.TLSClientConfig.InsecureSkipVerify = cfg.InsecureSkipVerify
	}
	return tr, nil
}

func (s *S3) String() string { return s.name }

// explain turns S3 error responses into errors that say what to do.
func (s *S3) explain(op, key string, err error) error {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "NoSuchKey", "NotFound":
			return fmt.Errorf("%s: %w", key, ErrNotExist)
		case "NoSuchBucket":
			return fmt.Errorf("bucket %q does not exist at %s", s.bucket, s.client.EndpointURL())
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken":
			return s.accessDenied(er.Code)
		case "PreconditionFailed":
			return fmt.Errorf("%s: %w", key, ErrChanged)
		case "InternalError", "ServiceUnavailable", "SlowDown":
			return &StatusError{URL: s.name + key, Status: http.StatusServiceUnavailable}
		}
		if er.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%s: %w", key, ErrNotExist)
		}
	}
	return fmt.Errorf("%s %s%s: %w", op, s.name, key, err)
}

// accessDenied says what to do when the store refuses the credentials; why is the
// store's error code or HTTP status.
func (s *S3) accessDenied(why string) error {
	return fmt.Errorf("access denied to %s (%s): check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE)", s.name, why)
}

// quote and unquote convert between minio's bare ETags and HTTP's quoted ones.
func quote(etag string) string { return `"` + strings.Trim(etag, `"`) + `"` }

func (s *S3) Stat(ctx context.Context, p string) (Entry, error) {
	if p == "" {
		ok, err := s.client.BucketExists(ctx, s.bucket)
		if err != nil {
			return Entry{}, s.explain("check bucket", "", err)
		}
		if !ok {
			return Entry{}, fmt.Errorf("bucket %q does not exist at %s", s.bucket, s.client.EndpointURL())
		}
		return Entry{IsDir: true, Exact: true}, nil
	}
	key := s.prefix + p
	name := p[strings.LastIndexByte(p, '/')+1:]
	info, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err == nil {
		return Entry{Name: name, Size: info.Size, ModTime: info.LastModified, Version: quote(info.ETag), Exact: true}, nil
	}
	if e := s.explain("stat", p, err); !errors.Is(e, ErrNotExist) {
		return Entry{}, e
	}
	// No object: a directory if anything lives under key/.
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: key + "/", MaxKeys: 1}) {
		if obj.Err != nil {
			return Entry{}, s.explain("list", p, obj.Err)
		}
		return Entry{Name: name, IsDir: true, Exact: true}, nil
	}
	return Entry{}, fmt.Errorf("%s: %w", p, ErrNotExist)
}

func (s *S3) List(ctx context.Context, p string) ([]Entry, error) {
	listPrefix := s.prefix
	if p != "" {
		listPrefix += p + "/"
	}
	// Each key that arrives is progress: a listing of many pages is bounded by the
	// origin timeout between keys, not in total.
	ctx, guard, stop := guardProgress(ctx, s.timeout)
	defer stop()
	b := &listingBuilder{max: s.maxEntries, dir: s.name + listPrefix}
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: listPrefix}) {
		if obj.Err != nil {
			return nil, guard.explain("s3://"+s.bucket+"/"+listPrefix, s.explain("list", p, obj.Err))
		}
		guard.progress()
		rest := strings.TrimPrefix(obj.Key, listPrefix)
		if rest == "" {
			continue // the directory's own marker object
		}
		e := Entry{Exact: true}
		if strings.HasSuffix(rest, "/") {
			e.Name, e.IsDir = strings.TrimSuffix(rest, "/"), true
		} else {
			e.Name, e.Size, e.ModTime, e.Version = rest, obj.Size, obj.LastModified, quote(obj.ETag)
		}
		if !validName(e.Name) {
			continue // keys with "//" or ".." cannot be files here
		}
		if err := b.add(e); err != nil {
			return nil, err
		}
	}
	// A marker beside a prefix is one directory, as is an object "a" beside "a/".
	out := b.finish()
	if p != "" && len(out) == 0 {
		// An empty listing is a missing directory unless a marker object stands for it.
		if _, err := s.client.StatObject(ctx, s.bucket, listPrefix, minio.StatObjectOptions{}); err != nil {
			return nil, fmt.Errorf("%s: %w", p, ErrNotExist)
		}
	}
	return out, nil
}

func (s *S3) ReadRange(ctx context.Context, p, version string, off, n int64) (io.ReadCloser, error) {
	if n <= 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	if s.raw != nil {
		return s.readRangeRaw(ctx, p, version, off, n)
	}
	var opts minio.GetObjectOptions
	if err := opts.SetRange(off, off+n-1); err != nil {
		return nil, err
	}
	if version != "" {
		opts.SetMatchETag(strings.Trim(version, `"`))
	}
	client := s.client
	if CallerRetries(ctx) {
		client = s.once
	}
	ctx, cancel := context.WithCancel(ctx)
	obj, err := client.GetObject(ctx, s.bucket, s.prefix+p, opts)
	if err != nil {
		cancel()
		return nil, s.explain("get", p, err)
	}
	// GetObject is lazy: Stat sends the request, so a changed object fails here.
	info, err := obj.Stat()
	if err != nil {
		obj.Close()
		cancel()
		return nil, s.explain("get", p, err)
	}
	if version != "" && quote(info.ETag) != version {
		obj.Close()
		cancel()
		return nil, fmt.Errorf("%s: version is now %s, not %s: %w", p, quote(info.ETag), version, ErrChanged)
	}
	return &s3Reader{obj: obj, left: n, cancel: cancel, s: s, p: p}, nil
}

// s3Reader delivers exactly the requested bytes or an error.
type s3Reader struct {
	obj    *minio.Object
	left   int64
	cancel context.CancelFunc
	s      *S3
	p      string
}

func (r *s3Reader) Read(b []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > r.left {
		b = b[:r.left]
	}
	n, err := r.obj.Read(b)
	r.left -= int64(n)
	switch {
	case err == io.EOF && r.left > 0:
		return n, fmt.Errorf("%s: body ended %d bytes early: %w", r.p, r.left, io.ErrUnexpectedEOF)
	case err != nil && err != io.EOF:
		return n, r.s.explain("read", r.p, err)
	case r.left == 0:
		return n, io.EOF
	}
	return n, nil
}

func (r *s3Reader) Close() error {
	err := r.obj.Close()
	r.cancel()
	return err
}

// emptySHA256 is the payload hash of a request without a body.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// readRangeRaw is ReadRange over the raw client: a SigV4-signed, path-style, ranged
// GET conditional on the ETag, whose body the cache can splice into its file.
func (s *S3) readRangeRaw(ctx context.Context, p, version string, off, n int64) (io.ReadCloser, error) {
	// The wire path must be the signer's canonical encoding of the key.
	u := s.rawBase + strings.TrimPrefix(s3utils.EncodePath("/"+s.prefix+p), "/")
	hdr := http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", off, off+n-1)}}
	if version != "" {
		hdr.Set("If-Match", version)
	}
	rc, err := s.raw.readRange(ctx, u, hdr, rangeWant{url: u, version: version, off: off, n: n}, s.sign)
	var se *StatusError
	if errors.As(err, &se) && (se.Status == http.StatusForbidden || se.Status == http.StatusUnauthorized) {
		return nil, s.accessDenied(strconv.Itoa(se.Status))
	}
	return rc, err
}

// sign adds SigV4 headers for the current credentials (none when anonymous).
func (s *S3) sign(req *http.Request) (*http.Request, error) {
	v, err := s.client.GetCreds()
	if err != nil {
		return nil, fmt.Errorf("S3 credentials: %w", err)
	}
	req.Header.Set("X-Amz-Content-Sha256", emptySHA256)
	if v.SignerType == credentials.SignatureAnonymous || v.AccessKeyID == "" {
		return req, nil
	}
	return signer.SignV4(*req, v.AccessKeyID, v.SecretAccessKey, v.SessionToken, s.region), nil
}
