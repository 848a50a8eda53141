// Package s3store keeps closed session recordings in an S3-compatible
// bucket: a small object store on minio-go (Store) and the uploader that
// copies each recording there once the bastion has closed it (Uploader).
//
// Trust boundary: the bucket is storage, not a trusted party. An object is
// uploaded with its SHA-256 (the server refuses a body that does not match
// it) and checked after the upload (size, ETag and checksum as the server
// reports them); what comes back from the bucket is authenticated like a
// local recording (the chunk chain and AEAD of package recording), so a
// modified object is refused, never shown.
package s3store

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/portcullis/portcullis/authz"
)

// DefaultRegion is the region requests are signed for when none is set.
const DefaultRegion = "us-east-1"

// KeepLocalUntilRetention keeps the local copy of an uploaded recording
// until local retention purges it (Config.KeepLocal).
const KeepLocalUntilRetention time.Duration = -1

// Upload limits. A recording up to maxSinglePut goes in one PUT whose
// whole-object SHA-256 the server checks; a larger one in parts of
// partSize, each checked by its own SHA-256 (S3 caps one PUT at 5 GiB and
// an upload at 10,000 parts).
const (
	maxSinglePut = 5 << 30
	partSize     = 64 << 20
	maxParts     = 10000
)

// ErrNotFound is returned for an object the bucket does not hold.
var ErrNotFound = errors.New("s3store: no such object")

// ErrUnavailable wraps failures to reach or use the bucket (network,
// TLS, server errors, refused credentials): the object may well exist.
var ErrUnavailable = errors.New("s3store: the bucket is unavailable")

// ErrVerify is returned when an upload's result does not match what was
// sent (size, ETag or checksum): the object must not be relied on.
var ErrVerify = errors.New("s3store: the uploaded object does not match the local file")

// Config is where recordings are stored.
type Config struct {
	// Endpoint is the S3 API's base URL: https://host[:port], or
	// http://host:port with a loopback host only (credentials and
	// recordings must not cross a network in the clear).
	Endpoint string
	Bucket   string
	// Prefix is a folder in the bucket ("" for the top): objects are
	// named Prefix/<session id>.pcrec.
	Prefix    string
	Region    string // default DefaultRegion
	AccessKey string
	SecretKey string
	// RootCAs verifies the endpoint's certificate; nil: the system roots.
	RootCAs *x509.CertPool
	// CAFile is where RootCAs came from (for messages and reload checks).
	CAFile string
	// KeepLocal is how long the local copy of a recording stays after
	// its upload was verified: 0 removes it at once,
	// KeepLocalUntilRetention (any negative value) leaves it to local
	// retention.
	KeepLocal time.Duration
}

// Validate checks c; errors are *authz.FieldError with the file's key
// names (endpoint, bucket, prefix, region, access_key, secret_key).
func (c Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, &authz.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if _, _, err := parseEndpoint(c.Endpoint); err != nil {
		add("endpoint", "%v", err)
	}
	if err := checkBucket(c.Bucket); err != nil {
		add("bucket", "%v", err)
	}
	if err := checkPrefix(c.Prefix); err != nil {
		add("prefix", "%v", err)
	}
	if c.Region != "" && (len(c.Region) > 64 || strings.ContainsFunc(c.Region, func(r rune) bool {
		return !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})) {
		add("region", "must be up to 64 letters, digits, '-' or '_' (e.g. eu-west-1)")
	}
	if c.AccessKey == "" {
		add("access_key", "missing: the bucket is never used anonymously")
	} else if strings.ContainsFunc(c.AccessKey, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		add("access_key", "must be printable ASCII without spaces")
	}
	if c.SecretKey == "" {
		add("secret_key", "missing: the bucket is never used anonymously")
	} else if strings.ContainsFunc(c.SecretKey, func(r rune) bool { return r < ' ' || r >= 0x7f }) {
		add("secret_key", "must be printable ASCII")
	}
	return errors.Join(errs...)
}

// parseEndpoint returns the host:port and whether to use TLS.
func parseEndpoint(s string) (string, bool, error) {
	if s == "" {
		return "", false, errors.New("missing: the S3 API's URL, e.g. https://s3.eu-west-1.amazonaws.com")
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", false, errors.New("must be a URL: https://host[:port]")
	}
	switch {
	case u.User != nil:
		return "", false, errors.New("must not hold credentials (give access_key and secret_key)")
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return "", false, errors.New("must be a bare https://host[:port]: no path or query (the bucket goes in bucket)")
	}
	host := u.Hostname()
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", false, fmt.Errorf("port %q is not 1-65535", p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return "", false, errors.New("empty port")
	}
	if host == "" {
		return "", false, errors.New("must name a host")
	}
	switch u.Scheme {
	case "https":
		return u.Host, true, nil
	case "http":
		if !loopback(host) {
			return "", false, fmt.Errorf("http only to a loopback address (127.0.0.1, ::1, localhost), not %s: use https", host)
		}
		return u.Host, false, nil
	}
	return "", false, errors.New("must start with https:// (or http:// to a loopback address)")
}

func loopback(h string) bool {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().IsLoopback()
	}
	return h == "localhost"
}

// checkBucket applies S3's bucket naming rules (general purpose buckets).
func checkBucket(b string) error {
	switch {
	case b == "":
		return errors.New("missing")
	case len(b) < 3 || len(b) > 63:
		return fmt.Errorf("%q must be 3-63 characters", b)
	case strings.ContainsFunc(b, func(r rune) bool { return !(r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z') }):
		return fmt.Errorf("%q may hold only lowercase letters, digits, '.' and '-'", b)
	case !alnum(b[0]) || !alnum(b[len(b)-1]):
		return fmt.Errorf("%q must begin and end with a letter or digit", b)
	case strings.Contains(b, ".."), strings.Contains(b, ".-"), strings.Contains(b, "-."):
		return fmt.Errorf("%q must not have '..', '.-' or '-.'", b)
	case strings.HasPrefix(b, "xn--"), strings.HasPrefix(b, "sthree-"), strings.HasSuffix(b, "-s3alias"), strings.HasSuffix(b, "--ol-s3"):
		return fmt.Errorf("%q uses a prefix or suffix S3 reserves", b)
	}
	if _, err := netip.ParseAddr(b); err == nil {
		return fmt.Errorf("%q must not look like an IP address", b)
	}
	return nil
}

func alnum(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' }

// checkPrefix accepts a folder path of plain segments: no "." or ".."
// segment (a file-system backed server maps keys onto paths), no empty
// segment, nothing a URL or a log would mangle.
func checkPrefix(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > 512 {
		return errors.New("must be at most 512 bytes")
	}
	for seg := range strings.SplitSeq(strings.TrimSuffix(p, "/"), "/") {
		switch {
		case seg == "":
			return fmt.Errorf("%q has an empty segment (leading or doubled '/')", p)
		case seg == "." || seg == "..":
			return fmt.Errorf("%q must not have '.' or '..' segments", p)
		case strings.ContainsFunc(seg, func(r rune) bool {
			return !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}):
			return fmt.Errorf("%q may hold only letters, digits, '.', '_', '-' and '/'", p)
		}
	}
	return nil
}

// Options are a Store's injected dependencies.
type Options struct {
	// DialContext opens connections to the endpoint; default net.Dialer
	// (tests dial a Unix socket).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger      *slog.Logger
}

// Store is a bucket (and prefix) holding recordings. Safe for concurrent
// use.
type Store struct {
	c *minio.Client
	// endpoint is the server (scheme://host:port): the same bucket name
	// on another server is another bucket (upload markers name both).
	endpoint string
	bucket   string
	prefix   string // "" or ends in "/"
	log      *slog.Logger
	// maxSingle and partSize are maxSinglePut and partSize (tests
	// lower them to exercise multipart uploads).
	maxSingle, partSize int64
}

// Object is an object's state in the bucket.
type Object struct {
	Name         string // relative to the prefix (<id>.pcrec)
	Key          string // full key in the bucket
	Size         int64
	ETag         string
	LastModified time.Time
}

// New returns a Store for cfg (validated here). It does not contact the
// server.
func New(cfg Config, opts Options) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	host, secure, _ := parseEndpoint(cfg.Endpoint)
	dial := opts.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	tr := &http.Transport{
		DialContext:           dial,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		ExpectContinueTimeout: time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true, // recordings are encrypted: nothing to gain
	}
	c, err := minio.New(host, &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:    secure,
		Transport: tr,
		Region:    cmpOr(cfg.Region, DefaultRegion),
		// Path-style unless the endpoint is AWS's: S3-compatible servers
		// rarely have a DNS name per bucket.
		BucketLookup: minio.BucketLookupAuto,
		// The uploader retries with its own backoff; a read retries a
		// little here.
		MaxRetries: 2,
	})
	if err != nil {
		return nil, fmt.Errorf("s3store: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := strings.TrimSuffix(cfg.Prefix, "/")
	if p != "" {
		p += "/"
	}
	scheme := "http://"
	if secure {
		scheme = "https://"
	}
	return &Store{c: c, endpoint: scheme + host, bucket: cfg.Bucket, prefix: p, log: log, maxSingle: maxSinglePut, partSize: partSize}, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Bucket is the bucket's name.
func (s *Store) Bucket() string { return s.bucket }

// Key is the object key of name.
func (s *Store) Key(name string) string { return s.prefix + name }

// URL names name's object for people (logs, audit): s3://bucket/key.
func (s *Store) URL(name string) string { return "s3://" + s.bucket + "/" + s.Key(name) }

// checkName accepts object names the store itself writes: one plain
// path segment.
func checkName(name string) error {
	if name == "" || len(name) > 255 || name == "." || name == ".." || strings.ContainsFunc(name, func(r rune) bool {
		return !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) {
		return fmt.Errorf("s3store: invalid object name %q", name)
	}
	return nil
}

// CheckBucket says whether the bucket exists and the credentials may use
// it (serve checks at start-up, and says so, but starts either way).
func (s *Store) CheckBucket(ctx context.Context) error {
	ok, err := s.c.BucketExists(ctx, s.bucket)
	if err != nil {
		return s.wrap(err)
	}
	if !ok {
		return fmt.Errorf("%w: bucket %s does not exist", ErrUnavailable, s.bucket)
	}
	return nil
}

// Sums are a local file's checksums as Put sends and checks them.
type Sums struct {
	Size   int64
	SHA256 [32]byte   // the whole file
	Parts  [][32]byte // per part, for a recording too large for one PUT
}

// Sum computes r's checksums (size bytes from offset 0) as Put needs
// them.
func (s *Store) Sum(r io.ReaderAt, size int64) (Sums, error) {
	if size < 0 || size > s.partSize*maxParts {
		return Sums{}, fmt.Errorf("s3store: a recording of %d bytes is more than an object may hold (%d)", size, s.partSize*maxParts)
	}
	sum := Sums{Size: size}
	whole := sha256.New()
	buf := make([]byte, 1<<20)
	read := func(w io.Writer, off, n int64) error {
		got, err := io.CopyBuffer(w, io.NewSectionReader(r, off, n), buf)
		if err == nil && got != n {
			err = fmt.Errorf("the file is shorter than %d bytes", size)
		}
		if err != nil {
			return fmt.Errorf("s3store: reading the file: %w", err)
		}
		return nil
	}
	if size <= s.maxSingle {
		if err := read(whole, 0, size); err != nil {
			return Sums{}, err
		}
	}
	for off := int64(0); size > s.maxSingle && off < size; off += s.partSize {
		part := sha256.New()
		if err := read(io.MultiWriter(whole, part), off, min(s.partSize, size-off)); err != nil {
			return Sums{}, err
		}
		sum.Parts = append(sum.Parts, [32]byte(part.Sum(nil)))
	}
	sum.SHA256 = [32]byte(whole.Sum(nil))
	return sum, nil
}

// expectedChecksum is the x-amz-checksum-sha256 the server should report
// for an object uploaded with sums: the whole object's SHA-256, or for a
// multipart upload the SHA-256 of the parts' SHA-256s, "-" part count.
func (sum Sums) expectedChecksum() string {
	if sum.Parts == nil {
		return base64.StdEncoding.EncodeToString(sum.SHA256[:])
	}
	h := sha256.New()
	for _, p := range sum.Parts {
		h.Write(p[:])
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(len(sum.Parts))
}

// Put uploads the first sum.Size bytes of r as name and checks the result:
// the server verifies the SHA-256 sent with the body (each part's, for a
// large recording), then a HEAD must report the same size and ETag as the
// upload, and the same checksum when the server reports checksums. r must
// not change meanwhile (a change fails the checksum). The object
// replaces any object of that name.
func (s *Store) Put(ctx context.Context, name string, r io.ReaderAt, sum Sums) (Object, error) {
	if err := checkName(name); err != nil {
		return Object{}, err
	}
	key := s.Key(name)
	var info minio.UploadInfo
	var err error
	if sum.Parts == nil {
		info, err = s.putSingle(ctx, key, r, sum)
	} else {
		info, err = s.putParts(ctx, key, r, sum)
	}
	if err != nil {
		return Object{}, s.wrap(err)
	}
	st, err := s.c.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{Checksum: true})
	if err != nil {
		return Object{}, fmt.Errorf("%w: after the upload: %w", ErrVerify, s.wrap(err))
	}
	switch want := sum.expectedChecksum(); {
	case st.Size != sum.Size:
		return Object{}, fmt.Errorf("%w: %s holds %d bytes, the file %d", ErrVerify, key, st.Size, sum.Size)
	case info.ETag != "" && st.ETag != info.ETag:
		return Object{}, fmt.Errorf("%w: %s has ETag %q, the upload returned %q (replaced meanwhile?)", ErrVerify, key, st.ETag, info.ETag)
	case st.ChecksumSHA256 != "" && st.ChecksumSHA256 != want:
		return Object{}, fmt.Errorf("%w: %s has SHA-256 checksum %s, the file %s", ErrVerify, key, st.ChecksumSHA256, want)
	}
	return s.object(st), nil
}

// putSingle uploads in one PUT whose body the server checks against the
// SHA-256 (the signature covers the same hash).
func (s *Store) putSingle(ctx context.Context, key string, r io.ReaderAt, sum Sums) (minio.UploadInfo, error) {
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream",
		UserMetadata: map[string]string{"x-amz-checksum-sha256": base64.StdEncoding.EncodeToString(sum.SHA256[:])}}
	core := minio.Core{Client: s.c}
	return core.PutObject(ctx, s.bucket, key, io.NewSectionReader(r, 0, sum.Size), sum.Size, "", hex.EncodeToString(sum.SHA256[:]), opts)
}

// putParts uploads in parts, each checked by the server against its own
// SHA-256; the completed object's checksum is the composite of those.
// A failed upload is aborted (its parts would otherwise be kept, and
// billed, by the server).
func (s *Store) putParts(ctx context.Context, key string, r io.ReaderAt, sum Sums) (info minio.UploadInfo, err error) {
	core := minio.Core{Client: s.c}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream",
		UserMetadata: map[string]string{"x-amz-checksum-algorithm": "SHA256"}}
	id, err := core.NewMultipartUpload(ctx, s.bucket, key, opts)
	if err != nil {
		return info, err
	}
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if aerr := core.AbortMultipartUpload(actx, s.bucket, key, id); aerr != nil {
				s.log.Warn("s3store: aborting a failed multipart upload failed (a lifecycle rule for incomplete uploads cleans it up)",
					"key", key, "err", s.wrap(aerr))
			}
		}
	}()
	parts := make([]minio.CompletePart, 0, len(sum.Parts))
	for i, ps := range sum.Parts {
		off := int64(i) * s.partSize
		n := min(s.partSize, sum.Size-off)
		hdr := http.Header{}
		hdr.Set("x-amz-checksum-sha256", base64.StdEncoding.EncodeToString(ps[:]))
		p, err := core.PutObjectPart(ctx, s.bucket, key, id, i+1, io.NewSectionReader(r, off, n), n,
			minio.PutObjectPartOptions{Sha256Hex: hex.EncodeToString(ps[:]), CustomHeader: hdr})
		if err != nil {
			return info, err
		}
		parts = append(parts, minio.CompletePart{PartNumber: i + 1, ETag: p.ETag, ChecksumSHA256: base64.StdEncoding.EncodeToString(ps[:])})
	}
	return core.CompleteMultipartUpload(ctx, s.bucket, key, id, parts, minio.PutObjectOptions{})
}

// Get opens name's object for reading (the caller closes it). A missing
// object is ErrNotFound, from Get or at the first Read.
func (s *Store) Get(ctx context.Context, name string) (io.ReadCloser, Object, error) {
	if err := checkName(name); err != nil {
		return nil, Object{}, ErrNotFound
	}
	o, err := s.c.GetObject(ctx, s.bucket, s.Key(name), minio.GetObjectOptions{})
	if err != nil {
		return nil, Object{}, s.wrap(err)
	}
	st, err := o.Stat()
	if err != nil {
		o.Close()
		return nil, Object{}, s.wrap(err)
	}
	return &reader{o: o, s: s}, s.object(st), nil
}

// FetchDir is where Fetch puts the objects it downloads for the
// recordings directory dir (inside the uploader's state directory).
func FetchDir(dir string) string { return filepath.Join(dir, stateDir, "tmp") }

// Fetch downloads name's object into an unnamed temporary file in dir
// (created 0700), positioned at its start: it needs no clean-up beyond
// Close, even after a crash. Recordings may be large, so they go to
// disk (the recordings directory's), not memory.
func (s *Store) Fetch(ctx context.Context, name, dir string) (*os.File, Object, error) {
	rc, obj, err := s.Get(ctx, name)
	if err != nil {
		return nil, Object{}, err
	}
	defer rc.Close()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, Object{}, fmt.Errorf("s3store: %w", err)
	}
	f, err := os.CreateTemp(dir, ".fetch-*")
	if err != nil {
		return nil, Object{}, fmt.Errorf("s3store: %w", err)
	}
	os.Remove(f.Name()) // unnamed from now on: gone with the last Close
	n, err := io.Copy(f, rc)
	if err == nil && n != obj.Size {
		err = fmt.Errorf("%w: %s: read %d bytes of %d", ErrUnavailable, obj.Key, n, obj.Size)
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, Object{}, err
	}
	return f, obj, nil
}

// reader maps the object's read errors like the store's.
type reader struct {
	o *minio.Object
	s *Store
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.o.Read(p)
	if err != nil && err != io.EOF {
		err = r.s.wrap(err)
	}
	return n, err
}

func (r *reader) Close() error { return r.o.Close() }

// Stat describes name's object; ErrNotFound when there is none.
func (s *Store) Stat(ctx context.Context, name string) (Object, error) {
	if err := checkName(name); err != nil {
		return Object{}, ErrNotFound
	}
	st, err := s.c.StatObject(ctx, s.bucket, s.Key(name), minio.StatObjectOptions{})
	if err != nil {
		return Object{}, s.wrap(err)
	}
	return s.object(st), nil
}

// Delete removes name's object (no error when there is none).
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := s.c.RemoveObject(ctx, s.bucket, s.Key(name), minio.RemoveObjectOptions{}); err != nil {
		if err = s.wrap(err); errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	return nil
}

// List calls fn for every object directly under the prefix (objects in
// deeper folders are not the store's), in key order, until fn returns an
// error.
func (s *Store) List(ctx context.Context, fn func(Object) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine when fn stops early
	for o := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix, Recursive: true}) {
		if o.Err != nil {
			return s.wrap(o.Err)
		}
		name := strings.TrimPrefix(o.Key, s.prefix)
		if checkName(name) != nil {
			continue
		}
		if err := fn(s.object(o)); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (s *Store) object(o minio.ObjectInfo) Object {
	return Object{Name: strings.TrimPrefix(o.Key, s.prefix), Key: o.Key, Size: o.Size, ETag: o.ETag, LastModified: o.LastModified}
}

// wrap classifies a minio error: ErrNotFound for a missing object,
// ErrUnavailable for everything else that is the server's or the
// network's (the message keeps the S3 error code, never a credential).
func (s *Store) wrap(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case minio.NoSuchKey, "NotFound":
		return fmt.Errorf("%w: %s", ErrNotFound, resp.Key)
	case "":
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return fmt.Errorf("%w: %s (HTTP %d): %s", ErrUnavailable, resp.Code, resp.StatusCode, resp.Message)
}

// HexSHA256 formats a digest for audit records and markers.
func HexSHA256(d [32]byte) string { return hex.EncodeToString(d[:]) }
