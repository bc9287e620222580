// Package registry reads images from container registries through
// containers/image's docker transport, with what a long-running bot needs on
// top: a timeout on every call, bounded retries with backoff on 5xx and
// network errors (429 and its Retry-After are honoured inside containers/image),
// bounded concurrency, digest verification of every manifest and blob before a
// caller may use it, size limits, and request counters.
//
// It never writes to a registry and never keeps a blob on disk: blobs are
// streamed to a caller's consumer and verified at EOF.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/distribution/registry/api/errcode"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"
)

// Options configure a Client. The zero value reads with the system's defaults.
type Options struct {
	// AuthFile is a containers auth.json (an OpenShift pull secret has the same
	// shape). Empty means $REGISTRY_AUTH_FILE, then containers/image's defaults
	// ($XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json,
	// ~/.docker/config.json).
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
	// Concurrency bounds the calls in flight across the client. Default 8.
	Concurrency int
	// UserAgent is sent with every request.
	UserAgent string
}

// Counters are what a Client has asked registries for, for metrics and
// benchmarks. Pings and token requests made by containers/image are not seen.
type Counters struct {
	ManifestGETs  int64
	ManifestHEADs int64
	BlobGETs      int64
	BlobBytes     int64
	Retries       int64
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
	c := &Client{sys: sys, session: newSession(sys), timeout: opts.Timeout, attempts: opts.Attempts, backoff: opts.Backoff}
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
		n = 8
	}
	c.slots = make(chan struct{}, n)
	return c
}

// SystemContext is the containers/image configuration the client uses, for
// packages that copy images with the same credentials and registries.conf.
func (c *Client) SystemContext() *types.SystemContext { return c.sys }

// Counters returns what the client has requested so far.
func (c *Client) Counters() Counters {
	return Counters{
		ManifestGETs:  c.manifestGETs.Load(),
		ManifestHEADs: c.manifestHEADs.Load(),
		BlobGETs:      c.blobGETs.Load(),
		BlobBytes:     c.blobBytes.Load(),
		Retries:       c.retries.Load(),
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

	named types.ImageReference
	src   types.ImageSource
}

// Close releases the image's connections.
func (img *Image) Close() {
	if img.src != nil {
		_ = img.src.Close()
	}
}

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
// prefix) and reads its manifest. A digest reference is verified against the
// manifest's bytes.
func (c *Client) Open(ctx context.Context, pullspec string) (*Image, error) {
	ref, err := docker.ParseReference("//" + pullspec)
	if err != nil {
		return nil, fmt.Errorf("parsing image reference %q: %w", pullspec, err)
	}
	var img *Image
	err = c.do(ctx, func(ctx context.Context) error {
		src, err := ref.NewImageSource(ctx, c.sys)
		if err != nil {
			return err
		}
		c.manifestGETs.Add(1)
		blob, mt, err := src.GetManifest(ctx, nil)
		if err != nil {
			_ = src.Close()
			return err
		}
		img = &Image{Ref: pullspec, Manifest: blob, MIMEType: manifest.NormalizedMIMEType(mt), named: ref, src: src}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading manifest of %s: %w", pullspec, err)
	}
	if len(img.Manifest) > MaxManifestBytes {
		img.Close()
		return nil, Content(fmt.Errorf("reading manifest of %s: %d bytes is over the limit of %d", pullspec, len(img.Manifest), MaxManifestBytes))
	}
	img.Digest = digest.FromBytes(img.Manifest)
	if canonical := ref.DockerReference(); canonical != nil {
		if d, ok := canonical.(interface{ Digest() digest.Digest }); ok {
			if ok, _ := manifest.MatchesDigest(img.Manifest, d.Digest()); !ok {
				img.Close()
				return nil, fmt.Errorf("verifying manifest of %s: %w: got %s", pullspec, ErrDigestMismatch, img.Digest)
			}
			img.Digest = d.Digest()
		}
	}
	if img.MIMEType == "" {
		img.MIMEType = manifest.GuessMIMEType(img.Manifest)
	}
	return img, nil
}

// Instance reads the manifest of one instance of a manifest list, verified
// against its digest.
func (c *Client) Instance(ctx context.Context, img *Image, instance digest.Digest) ([]byte, string, error) {
	var blob []byte
	var mt string
	err := c.do(ctx, func(ctx context.Context) error {
		c.manifestGETs.Add(1)
		var err error
		blob, mt, err = img.src.GetManifest(ctx, &instance)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("reading manifest %s of %s: %w", instance, img.Ref, err)
	}
	if len(blob) > MaxManifestBytes {
		return nil, "", Content(fmt.Errorf("reading manifest %s of %s: %d bytes is over the limit of %d", instance, img.Ref, len(blob), MaxManifestBytes))
	}
	if ok, _ := manifest.MatchesDigest(blob, instance); !ok {
		return nil, "", fmt.Errorf("verifying manifest %s of %s: %w", instance, img.Ref, ErrDigestMismatch)
	}
	mt = manifest.NormalizedMIMEType(mt)
	if mt == "" {
		mt = manifest.GuessMIMEType(blob)
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
		return fmt.Errorf("reading blob %q of %s: %w", blob.Digest, img.Ref, err)
	}
	err := c.do(ctx, func(ctx context.Context) error {
		c.blobGETs.Add(1)
		rc, _, err := img.src.GetBlob(ctx, types.BlobInfo{Digest: blob.Digest, Size: blob.Size}, none.NoCache)
		if err != nil {
			return err
		}
		defer rc.Close()
		counted := &countingReader{r: io.LimitReader(rc, maxBytes+1)}
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

// do runs call with a slot, a per-attempt timeout and bounded retries.
func (c *Client) do(ctx context.Context, call func(context.Context) error) error {
	delay := c.backoff
	for attempt := 1; ; attempt++ {
		err := c.once(ctx, call)
		if err == nil {
			return nil
		}
		if attempt >= c.attempts || ctx.Err() != nil || !Transient(err) {
			if attempt > 1 {
				return fmt.Errorf("after %d attempts: %w", attempt, err)
			}
			return err
		}
		c.retries.Add(1)
		wait := delay/2 + rand.N(delay/2+1)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (waiting to retry after: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		delay *= 2
	}
}

func (c *Client) once(ctx context.Context, call func(context.Context) error) error {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.slots }()
	callCtx, cancel := context.WithTimeoutCause(ctx, c.timeout, errCallTimeout)
	defer cancel()
	err := call(callCtx)
	if err != nil && ctx.Err() == nil && context.Cause(callCtx) == errCallTimeout {
		return fmt.Errorf("%w after %s: %v", errCallTimeout, c.timeout, err)
	}
	return err
}

var errCallTimeout = errors.New("registry call timed out")

// Transient reports whether err is worth retrying: a 5xx, a 429 that
// containers/image already backed off from, a network error, a cut body or a
// call timeout. 4xx answers, digest mismatches and limits are not.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var perm permanentError
	if errors.As(err, &perm) {
		return false
	}
	if errors.Is(err, errCallTimeout) || errors.Is(err, docker.ErrTooManyRequests) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var status docker.UnexpectedHTTPStatusError
	if errors.As(err, &status) {
		return status.StatusCode >= 500 || status.StatusCode == 429
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status >= 500 || se.Status == 429
	}
	var ec errcode.Error
	if errors.As(err, &ec) {
		code := ec.Code.Descriptor().HTTPStatusCode
		return code >= 500 || code == 429
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	// containers/image flattens some 5xx answers into text.
	msg := err.Error()
	for _, s := range []string{"StatusCode: 5", "status 5", "502 Bad Gateway", "503 Service Unavailable", "504 Gateway Timeout", "500 Internal Server Error", "connection reset", "unexpected EOF"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// ErrNotFound is returned by Digest when the registry has no such tag.
var ErrNotFound = errors.New("not found")

// Digest asks the registry for the digest a reference points at, with one
// HEAD request: the cheap "does this tag exist yet?" check before any
// irreversible step. A missing tag (or repository) is ErrNotFound.
func (c *Client) Digest(ctx context.Context, pullspec string) (digest.Digest, error) {
	ref, err := docker.ParseReference("//" + pullspec)
	if err != nil {
		return "", fmt.Errorf("parsing image reference %q: %w", pullspec, err)
	}
	var d digest.Digest
	err = c.do(ctx, func(ctx context.Context) error {
		c.manifestHEADs.Add(1)
		var err error
		d, err = docker.GetDigest(ctx, c.sys, ref)
		if err != nil && isNotFound(err) {
			return permanent(ErrNotFound)
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("checking %s: %w", pullspec, err)
	}
	return d, nil
}

func isNotFound(err error) bool {
	var status docker.UnexpectedHTTPStatusError
	if errors.As(err, &status) {
		return status.StatusCode == 404
	}
	var ec errcode.Error
	if errors.As(err, &ec) {
		return ec.Code.Descriptor().HTTPStatusCode == 404
	}
	msg := err.Error()
	return strings.Contains(msg, "StatusCode: 404") || strings.Contains(msg, "manifest unknown") || strings.Contains(msg, "404 Not Found")
}

// Untag removes one tag (repository:tag) and never the manifest behind it,
// with the OCI distribution spec's DELETE /v2/<name>/manifests/<tag>.
// Registries that do not delete tags (distribution/distribution's registry,
// Docker Hub) answer ErrUnsupported; a tag already gone is success.
func (c *Client) Untag(ctx context.Context, ref string) error {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return fmt.Errorf("untagging %q: %w", ref, err)
	}
	tagged, ok := named.(reference.NamedTagged)
	if !ok {
		return fmt.Errorf("untagging %q: not a tag reference", ref)
	}
	host, repo := reference.Domain(named), reference.Path(named)
	if host == "docker.io" {
		host = "registry-1.docker.io"
	}
	err = c.do(ctx, func(ctx context.Context) error {
		h, err := c.session.host(ctx, host)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, fmt.Sprintf("%s://%s/v2/%s/manifests/%s", h.scheme, host, repo, tagged.Tag()), nil)
		if err != nil {
			return err
		}
		if ua := c.sys.DockerRegistryUserAgent; ua != "" {
			req.Header.Set("User-Agent", ua)
		}
		if err := h.authorize(ctx, req, repo, "pull,push,delete"); err != nil {
			return err
		}
		resp, err := h.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		se := &StatusError{Status: resp.StatusCode, Code: errorCode(body), What: "deleting tag " + ref}
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode < 300, resp.StatusCode == http.StatusNotFound:
			return nil
		case resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotImplemented ||
			(resp.StatusCode == http.StatusBadRequest && (se.Code == "UNSUPPORTED" || se.Code == "DIGEST_INVALID")):
			return permanent(fmt.Errorf("%w (%v)", ErrUnsupported, se))
		}
		return se
	})
	if err != nil {
		return fmt.Errorf("untagging %s: %w", ref, err)
	}
	// Check the world, not the answer: a proxy may acknowledge and drop.
	if _, err := c.Digest(ctx, ref); !errors.Is(err, ErrNotFound) {
		if err == nil {
			err = errors.New("the registry acknowledged the deletion, yet the tag is still there")
		}
		return fmt.Errorf("untagging %s: %w", ref, err)
	}
	return nil
}
