// Package registry reads images from container registries with what a
// long-running bot needs: one session per registry (one ping per host, one
// bearer token per repository and scope, reused until it expires, across
// every image read), a timeout on every call, bounded retries with backoff on
// 5xx and network errors (a 429's Retry-After honoured), one bound on the
// calls in flight, digest verification of every manifest and blob before a
// caller may use it, size limits, and request counters. Mirrors and insecure
// registries come from registries.conf, credentials from the containers
// auth.json, as containers/image reads them; a broken auth file is an
// AuthFileError, and a rewritten one (a rotated pull secret) is followed
// without a restart. A bearer token realm over plain HTTP is refused unless
// the registry is marked insecure.
//
// It speaks the distribution protocol's reads itself rather than through
// containers/image's docker transport, because that transport pings and
// fetches a token again for every image source it opens (each has its own
// client and token cache) and offers no way to share them: a backfill of a
// thousand payloads spent half its round trips on pings and tokens.
// containers/image stays the library for copies (promotion) and signature
// policies; SystemContext hands them the same configuration.
//
// Its only writes are to tags, for package promote: PutManifest points a
// tag at a manifest whose blobs the repository already holds, Untag removes
// a tag. It never uploads a blob, and never keeps one on disk: blobs are
// streamed to a caller's consumer and verified at EOF.
package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"

	"github.com/dtkbot/dtkbot/retry"
)

// Options configure a Client. The zero value reads with the system's defaults.
type Options struct {
	// AuthFile is a containers auth.json (an OpenShift pull secret has the same
	// shape). Empty means $REGISTRY_AUTH_FILE, then containers/image's defaults
	// ($XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json,
	// ~/.docker/config.json). A file named here must exist. It is stat'ed
	// before cached credentials are used and read again when it changed or
	// a registry refused them.
	AuthFile string
	// TLSVerify false allows self-signed certificates and plain HTTP, as
	// podman's and skopeo's --tls-verify=false does.
	TLSVerify *bool
	// RegistriesConf is a registries.conf (mirrors, insecure registries);
	// empty means the system's.
	RegistriesConf string
	// Timeout bounds each call (one manifest, one blob read). Default 2m.
	Timeout time.Duration
	// Attempts is how often a call is tried on transient errors. Default 4.
	Attempts int
	// Backoff is the first delay between attempts, doubled each time, with
	// jitter. Default 1s.
	Backoff time.Duration
	// Concurrency bounds the calls in flight across the client. Default 16.
	Concurrency int
	// UserAgent is sent with every request.
	UserAgent string
	// OneShot is a command's client rather than the daemon's: a call that
	// gets no answer within Timeout is not tried again, and every later
	// call to that registry fails at once (ErrSilent), so a registry that
	// accepts connections and never answers costs the command about one
	// Timeout, not one per attempt and per image.
	OneShot bool
	// Slow, when set, is told of a call still waiting after SlowAfter
	// (default 3s), and of each further attempt as it starts.
	Slow      func(Slow)
	SlowAfter time.Duration
}

// Counters are what a Client has asked registries for, for metrics and
// benchmarks: reads, and the auth round trips (pings, tokens) they needed;
// and how often it read the auth files, and saw them change.
type Counters struct {
	ManifestGETs  int64
	ManifestHEADs int64
	BlobGETs      int64
	BlobBytes     int64
	Retries       int64
	Pings         int64
	Tokens        int64
	// CredentialReads counts lookups in the auth files (once per
	// repository, then again only when the files change or a registry
	// refuses the credentials).
	CredentialReads int64
	// AuthFileChanges counts the changes of the auth files noticed.
	AuthFileChanges int64
}

// Client reads images. It is safe for concurrent use.
type Client struct {
	sys      *types.SystemContext
	session  *session
	timeout  time.Duration
	attempts int
	backoff  time.Duration
	slots    chan struct{}

	manifestGETs, manifestHEADs, blobGETs, blobBytes, retries atomic.Int64
	// waiting counts the calls waiting for a slot (tests wait on it).
	waiting atomic.Int64
	// after is time.After; tests count the waits between attempts with it.
	after func(time.Duration) <-chan time.Time

	oneShot   bool
	slow      func(Slow)
	slowAfter time.Duration
}

// New returns a Client for opts.
func New(opts Options) *Client {
	sys := &types.SystemContext{
		AuthFilePath:             opts.AuthFile,
		SystemRegistriesConfPath: opts.RegistriesConf,
		DockerRegistryUserAgent:  opts.UserAgent,
	}
	if sys.AuthFilePath == "" {
		sys.AuthFilePath = os.Getenv("REGISTRY_AUTH_FILE")
	}
	if opts.TLSVerify != nil {
		sys.DockerInsecureSkipTLSVerify = types.NewOptionalBool(!*opts.TLSVerify)
	}
	c := &Client{sys: sys, timeout: opts.Timeout, attempts: opts.Attempts, backoff: opts.Backoff, after: time.After,
		oneShot: opts.OneShot, slow: opts.Slow, slowAfter: opts.SlowAfter}
	if c.slowAfter <= 0 {
		c.slowAfter = 3 * time.Second
	}
	if c.timeout <= 0 {
		c.timeout = 2 * time.Minute
	}
	if c.attempts <= 0 {
		c.attempts = 4
	}
	if c.backoff <= 0 {
		c.backoff = time.Second
	}
	n := opts.Concurrency
	if n <= 0 {
		n = 16
	}
	c.slots = make(chan struct{}, n)
	c.session = newSession(sys, n)
	c.session.oneShot = opts.OneShot
	return c
}

// SystemContext is the containers/image configuration the client uses, for
// packages that copy images with the same credentials and registries.conf.
func (c *Client) SystemContext() *types.SystemContext { return c.sys }

// Counters returns what the client has requested so far.
func (c *Client) Counters() Counters {
	pings, tokens := c.session.counts()
	reads, changes := c.session.creds.counts()
	return Counters{
		CredentialReads: reads,
		AuthFileChanges: changes,
		ManifestGETs:    c.manifestGETs.Load(),
		ManifestHEADs:   c.manifestHEADs.Load(),
		BlobGETs:        c.blobGETs.Load(),
		BlobBytes:       c.blobBytes.Load(),
		Retries:         c.retries.Load(),
		Pings:           pings,
		Tokens:          tokens,
	}
}

// Image is an opened image reference with its top-level manifest, which may
// be a manifest list.
type Image struct {
	// Ref is the pullspec as given.
	Ref string
	// Digest is the digest of Manifest.
	Digest   digest.Digest
	Manifest []byte
	MIMEType string

	// src is where it was read from (a mirror, or the registry itself):
	// instances and blobs are read from there too.
	src source
}

// Close releases the image. Connections belong to the client's session,
// which keeps them for the next read.
func (img *Image) Close() {}

// MaxManifestBytes bounds every manifest read (containers/image enforces 4 MiB too).
const MaxManifestBytes = 4 << 20

// ErrDigestMismatch is returned when content does not hash to the digest it
// was asked for by: a corrupt layer, a lying registry or a broken proxy. It
// happened in transit: reading again may succeed.
var ErrDigestMismatch = errors.New("digest mismatch")

// ContentError is a fault in content whose digest verified (an unparseable
// manifest, a layer that is not a tar, a file missing from it): the content
// behind that digest is what it is, so reading it again can only fail again.
// Network errors, 5xx, 401/403, timeouts and digest mismatches are never
// content errors.
type ContentError struct{ Err error }

func (e *ContentError) Error() string { return e.Err.Error() }
func (e *ContentError) Unwrap() error { return e.Err }

// Content marks err as a fault of verified content (nil stays nil).
func Content(err error) error {
	if err == nil {
		return nil
	}
	return &ContentError{Err: err}
}

// IsContent reports whether err is a fault of content that cannot change.
func IsContent(err error) bool {
	var c *ContentError
	return errors.As(err, &c)
}

// Open resolves pullspec (a tag or a digest reference, without transport
// prefix) and reads its manifest, from the first of its pull sources
// (registries.conf mirrors, then the registry) that has it. A digest
// reference is verified against the manifest's bytes.
func (c *Client) Open(ctx context.Context, pullspec string) (*Image, error) {
	named, err := reference.ParseNormalizedNamed(pullspec)
	if err != nil {
		return nil, fmt.Errorf("parsing image reference %q: %w", pullspec, err)
	}
	sources, err := c.pullSources(named)
	if err != nil {
		return nil, fmt.Errorf("reading manifest of %s: %w", pullspec, err)
	}
	var failures []error
	for _, src := range sources {
		img, err := c.openAt(ctx, pullspec, src)
		if err == nil {
			return img, nil
		}
		if IsContent(err) || errors.Is(err, ErrDigestMismatch) || ctx.Err() != nil {
			return nil, err
		}
		failures = append(failures, err)
	}
	err = failures[len(failures)-1]
	if len(failures) > 1 {
		err = fmt.Errorf("%w (the mirrors failed too: %v)", err, errors.Join(failures[:len(failures)-1]...))
	}
	return nil, err
}

func (c *Client) openAt(ctx context.Context, pullspec string, src source) (*Image, error) {
	var img *Image
	err := c.do(ctx, src.host, func(ctx context.Context) error {
		c.manifestGETs.Add(1)
		blob, mt, err := c.fetchManifest(ctx, src, src.ref)
		if err != nil {
			return err
		}
		img = &Image{Ref: pullspec, Manifest: blob, MIMEType: mt, src: src}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading manifest of %s: %w", pullspec, err)
	}
	img.Digest = digest.FromBytes(img.Manifest)
	if d, err := digest.Parse(src.ref); err == nil {
		if ok, _ := manifest.MatchesDigest(img.Manifest, d); !ok {
			return nil, fmt.Errorf("verifying manifest of %s: %w: got %s", pullspec, ErrDigestMismatch, img.Digest)
		}
		img.Digest = d
	}
	return img, nil
}

// fetchManifest GETs one manifest (by tag or digest) from src.
func (c *Client) fetchManifest(ctx context.Context, src source, ref string) ([]byte, string, error) {
	h := http.Header{"Accept": manifest.DefaultRequestedManifestMIMETypes}
	resp, err := c.session.send(ctx, src.endpoint, http.MethodGet, "/v2/"+src.repo+"/manifests/"+ref, src.repo, h)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	blob, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestBytes+1))
	if err != nil {
		return nil, "", err
	}
	if len(blob) > MaxManifestBytes {
		return nil, "", permanent(Content(fmt.Errorf("the manifest is over the limit of %d bytes", MaxManifestBytes)))
	}
	mt := manifest.NormalizedMIMEType(resp.Header.Get("Content-Type"))
	if mt == "" || mt == "text/plain" || mt == "application/json" || mt == "application/octet-stream" {
		mt = manifest.GuessMIMEType(blob)
	}
	return blob, mt, nil
}

// Instance reads the manifest of one instance of a manifest list, verified
// against its digest.
func (c *Client) Instance(ctx context.Context, img *Image, instance digest.Digest) ([]byte, string, error) {
	if err := instance.Validate(); err != nil {
		return nil, "", Content(fmt.Errorf("reading manifest %q of %s: %w", instance, img.Ref, err))
	}
	var blob []byte
	var mt string
	err := c.do(ctx, img.src.host, func(ctx context.Context) error {
		c.manifestGETs.Add(1)
		var err error
		blob, mt, err = c.fetchManifest(ctx, img.src, instance.String())
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("reading manifest %s of %s: %w", instance, img.Ref, err)
	}
	if ok, _ := manifest.MatchesDigest(blob, instance); !ok {
		return nil, "", fmt.Errorf("verifying manifest %s of %s: %w", instance, img.Ref, ErrDigestMismatch)
	}
	return blob, mt, nil
}

// ReadBlob streams one blob of img to consume and verifies size and digest at
// EOF. consume may stop reading early; the rest is drained so the digest can
// be checked. Whatever consume extracted must not be trusted unless ReadBlob
// returns nil. maxBytes bounds the compressed size read.
func (c *Client) ReadBlob(ctx context.Context, img *Image, blob types.BlobInfo, maxBytes int64, consume func(io.Reader) error) error {
	if blob.Size > maxBytes {
		// The size is in the (verified) manifest: content.
		return Content(fmt.Errorf("reading blob %s of %s: size %d is over the limit of %d", blob.Digest, img.Ref, blob.Size, maxBytes))
	}
	if err := blob.Digest.Validate(); err != nil {
		return Content(fmt.Errorf("reading blob %q of %s: %w", blob.Digest, img.Ref, err))
	}
	err := c.do(ctx, img.src.host, func(ctx context.Context) error {
		c.blobGETs.Add(1)
		resp, err := c.session.send(ctx, img.src.endpoint, http.MethodGet, "/v2/"+img.src.repo+"/blobs/"+blob.Digest.String(), img.src.repo, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		counted := &countingReader{r: io.LimitReader(resp.Body, maxBytes+1)}
		verifier := blob.Digest.Verifier()
		tee := io.TeeReader(counted, verifier)
		consumeErr := consume(tee)
		// Drain what consume left so the digest covers the whole blob.
		if _, err := io.Copy(io.Discard, tee); err != nil {
			c.blobBytes.Add(counted.n)
			return err
		}
		c.blobBytes.Add(counted.n)
		if counted.n > maxBytes {
			return permanent(fmt.Errorf("more than %d bytes", maxBytes))
		}
		if blob.Size > 0 && counted.n != blob.Size {
			return permanent(fmt.Errorf("%w: read %d bytes, manifest says %d", ErrDigestMismatch, counted.n, blob.Size))
		}
		if !verifier.Verified() {
			return permanent(fmt.Errorf("%w: content does not hash to its digest", ErrDigestMismatch))
		}
		if consumeErr != nil {
			// The blob hashed to its digest: what consume found wrong is
			// in the content itself.
			return permanent(Content(consumeErr))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading blob %s of %s: %w", blob.Digest, img.Ref, err)
	}
	return nil
}

// ReadBlobBytes reads a whole small blob (a config, a JSON layer), verified.
func (c *Client) ReadBlobBytes(ctx context.Context, img *Image, blob types.BlobInfo, maxBytes int64) ([]byte, error) {
	var data []byte
	err := c.ReadBlob(ctx, img, blob, maxBytes, func(r io.Reader) error {
		var err error
		data, err = io.ReadAll(io.LimitReader(r, maxBytes))
		return err
	})
	return data, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

func permanent(err error) error { return permanentError{err} }

// do runs call (a call to host) with a slot, a per-attempt timeout and
// bounded retries (package retry); a 429's Retry-After is waited out
// instead of the backoff. A one-shot client tries a call that got no
// answer in time only once (the session then fails every later call to
// that host at once).
func (c *Client) do(ctx context.Context, host string, call func(context.Context) error) error {
	attempt := 0
	return retry.Do(ctx, retry.Policy{Attempts: c.attempts, Backoff: c.backoff, After: c.after}, c.retryable, func(ctx context.Context) error {
		if attempt++; attempt > 1 {
			c.retries.Add(1)
		}
		return c.once(ctx, host, attempt, call)
	})
}

// retryable is how the client classifies a failed call for package
// retry: Transient errors are tried again, after the Retry-After a 429 (or
// a 503) asked for, if any; a one-shot client's call that got no answer is
// not.
func (c *Client) retryable(err error) (bool, time.Duration) {
	if c.oneShot && (errors.Is(err, errCallTimeout) || errors.Is(err, ErrSilent)) {
		return false, 0
	}
	var se *StatusError
	if errors.As(err, &se) && se.RetryAfter > 0 {
		return Transient(err), se.RetryAfter
	}
	return Transient(err), 0
}

func (c *Client) once(ctx context.Context, host string, attempt int, call func(context.Context) error) error {
	c.waiting.Add(1)
	select {
	case c.slots <- struct{}{}:
		c.waiting.Add(-1)
	case <-ctx.Done():
		c.waiting.Add(-1)
		return context.Cause(ctx)
	}
	defer func() { <-c.slots }()
	callCtx, cancel := context.WithTimeoutCause(ctx, c.timeout, errCallTimeout)
	defer cancel()
	if c.slow != nil {
		// Said when the call is slow (or, from the second attempt on, at
		// once): what it waits for, and which attempt it is.
		report := func() { c.slow(Slow{Host: host, Attempt: attempt, Attempts: c.attempts, Timeout: c.timeout}) }
		after := c.slowAfter
		if attempt > 1 {
			after = 0
		}
		timer := time.AfterFunc(after, report)
		defer timer.Stop()
	}
	err := call(callCtx)
	if err != nil && ctx.Err() == nil && context.Cause(callCtx) == errCallTimeout {
		return fmt.Errorf("%w after %s: %v", errCallTimeout, c.timeout, err)
	}
	return err
}

// Slow is a registry call that has waited a while: for a progress line
// ("waiting for quay.io (attempt 2 of 4) ...").
type Slow struct {
	Host              string
	Attempt, Attempts int
	// Timeout is when the attempt gives up.
	Timeout time.Duration
}

// ErrSilent is a call not sent because its registry did not answer an
// earlier one in time (a one-shot client: Options.OneShot).
var ErrSilent = errors.New("not asked again")

var errCallTimeout = errors.New("registry call timed out")

// Transient reports whether err is worth retrying: a 5xx, a 429, a network
// error, a cut body or a call timeout. 4xx answers, digest mismatches,
// content errors and limits are not.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var perm permanentError
	var authFile *AuthFileError
	if errors.As(err, &perm) || IsContent(err) || errors.As(err, &authFile) || errors.Is(err, ErrSilent) {
		return false
	}
	if Unreachable(err) {
		return false
	}
	if errors.Is(err, errCallTimeout) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status >= 500 || se.Status == http.StatusTooManyRequests
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	// Errors that lost their type on the way (containers/image's copies).
	msg := err.Error()
	for _, s := range []string{"StatusCode: 5", "status 5", "502 Bad Gateway", "503 Service Unavailable", "504 Gateway Timeout", "500 Internal Server Error", "connection reset", "unexpected EOF"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// Unreachable reports whether err says the registry cannot be reached as
// named, which asking again does not change: its name does not resolve
// (DNS "no such host"), or TLS failed (a certificate not trusted or not for
// that name, a server that does not speak TLS).
func Unreachable(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return true
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
		record           tls.RecordHeaderError
		alert            tls.AlertError
	)
	return errors.As(err, &unknownAuthority) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verification) || errors.As(err, &record) || errors.As(err, &alert)
}

// ErrNotFound is returned by Digest when the registry has no such tag.
var ErrNotFound = errors.New("not found")

// Digest asks the registry for the digest a reference points at, with one
// HEAD request: the cheap "does this tag exist yet?" check before any
// irreversible step. It asks the registry itself, never a mirror: this is
// where dtkbot pushes. A missing tag (or repository) is ErrNotFound.
func (c *Client) Digest(ctx context.Context, pullspec string) (digest.Digest, error) {
	named, err := reference.ParseNormalizedNamed(pullspec)
	if err != nil {
		return "", fmt.Errorf("parsing image reference %q: %w", pullspec, err)
	}
	src, err := c.primary(named)
	if err != nil {
		return "", fmt.Errorf("checking %s: %w", pullspec, err)
	}
	d, err := c.head(ctx, src)
	if err != nil {
		return "", fmt.Errorf("checking %s: %w", pullspec, err)
	}
	return d, nil
}

// head asks one source for the digest its reference points at, with one
// HEAD request (retried as every call); ErrNotFound when it has none.
func (c *Client) head(ctx context.Context, src source) (digest.Digest, error) {
	var d digest.Digest
	err := c.do(ctx, src.host, func(ctx context.Context) error {
		c.manifestHEADs.Add(1)
		h := http.Header{"Accept": manifest.DefaultRequestedManifestMIMETypes}
		resp, err := c.session.send(ctx, src.endpoint, http.MethodHead, "/v2/"+src.repo+"/manifests/"+src.ref, src.repo, h)
		if err != nil {
			var se *StatusError
			if errors.As(err, &se) && se.Status == http.StatusNotFound {
				return permanent(ErrNotFound)
			}
			return err
		}
		resp.Body.Close()
		if d, err = digest.Parse(resp.Header.Get("Docker-Content-Digest")); err != nil {
			return fmt.Errorf("the registry answered without a valid Docker-Content-Digest: %w", err)
		}
		return nil
	})
	return d, err
}

// Manifest reads the manifest a reference points at from the registry
// itself (never a mirror), verified against the digest when ref is pinned:
// what promote keeps to put a tag back.
func (c *Client) Manifest(ctx context.Context, pullspec string) ([]byte, string, error) {
	named, err := reference.ParseNormalizedNamed(pullspec)
	if err != nil {
		return nil, "", fmt.Errorf("parsing image reference %q: %w", pullspec, err)
	}
	src, err := c.primary(named)
	if err != nil {
		return nil, "", fmt.Errorf("reading manifest of %s: %w", pullspec, err)
	}
	img, err := c.openAt(ctx, pullspec, src)
	if err != nil {
		return nil, "", err
	}
	return img.Manifest, img.MIMEType, nil
}

// PutManifest writes a manifest under a tag (repository:tag) of the
// registry itself: how a tag is pointed at an image already in that
// repository, with no blob moved (every blob it names must be there, as
// the registry checks). Besides Untag it is the client's only write.
func (c *Client) PutManifest(ctx context.Context, ref string, body []byte, mimeType string) error {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return fmt.Errorf("parsing image reference %q: %w", ref, err)
	}
	if _, ok := named.(reference.NamedTagged); !ok {
		return fmt.Errorf("writing %q: not a tag reference", ref)
	}
	src, err := c.primary(named)
	if err != nil {
		return err
	}
	err = c.do(ctx, src.host, func(ctx context.Context) error {
		h := http.Header{"Content-Type": {mimeType}}
		resp, err := c.session.sendBody(ctx, src.endpoint, http.MethodPut, "/v2/"+src.repo+"/manifests/"+src.ref, src.repo, "pull,push", h, body)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing the manifest of %s: %w", ref, err)
	}
	return nil
}
