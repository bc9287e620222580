// Package releasesig checks that a release payload digest is signed by a
// trusted key before dtkbot builds or promotes for it, as the cluster-version
// operator does: Red Hat's OpenPGP "atomic container signatures" from a
// signature store laid out as <store>/sha256=<hex>/signature-N (N from 1, at
// most 10 tried) or from a local directory (that tree, or the signature
// ConfigMaps oc-mirror writes, as files or mounted as a volume), verified
// against trusted public keys (Red Hat's release key unless others are
// configured), the signed JSON checked strictly (type, digest, no unknown
// field); and, where configured, a containers policy.json (sigstore
// signatures) evaluated by containers/image.
//
// Atomic signatures are verified with golang.org/x/crypto/openpgp, the
// package the cluster-version operator and openshift/library-go pkg/verify
// use: Red Hat's signing service writes version 3 signature packets, which
// containers/image's pure-Go mechanism (ProtonMail/go-crypto) does not read.
//
// It never trusts the signed JSON before the signature verified, and never
// treats a failure to fetch as a failure to verify: a transient error is an
// error (try again), a missing or bad signature is a verdict.
package releasesig

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	"golang.org/x/crypto/openpgp" //nolint:staticcheck // deprecated, but the one Go OpenPGP that reads v3 signatures, as the CVO uses it
)

// Modes of verify.mode.
const (
	ModeOff    = "off"
	ModeWarn   = "warn"
	ModeStrict = "strict"
)

// MaxSignatures is how many signature-N are tried, as the cluster does.
const MaxSignatures = 10

// DefaultStore is the official signature store of OpenShift releases.
const DefaultStore = "https://mirror.openshift.com/pub/openshift-v4/signatures/openshift/release"

// RedHatReleaseKey is Red Hat release key 2 (fingerprint
// 567E347AD0044ADE55BA8A5F199E2F91FD431D51), trusted when no keys are
// configured. Source: keys/SOURCES.md.
//
//go:embed keys/redhat-release-key.asc
var RedHatReleaseKey []byte

// maxSignedBytes bounds the signed JSON once decompressed: a signature is a
// few hundred bytes, and its compressed packet must not inflate without end.
const maxSignedBytes = 1 << 20

// Verdict is the outcome of a check.
type Verdict struct {
	Verified bool
	// By names the key (fingerprint) or policy that verified it.
	By string
	// Reason says why it is not verified.
	Reason string
}

// Options configure a Checker.
type Options struct {
	// Store is the signature store: a base URL (https://...), or a local
	// directory (a path or a file:// URL; see dirStore for its layouts);
	// DefaultStore when empty.
	Store string
	// KeyFiles are OpenPGP public keys (ASCII-armored or binary). nil means
	// Red Hat's release key; an empty, non-nil list means no OpenPGP trust.
	KeyFiles []string
	// Policy is a containers policy.json evaluated with Sys (sigstore
	// signatures); none when empty.
	Policy string
	Sys    *types.SystemContext
	// HTTP fetches from a store by URL (default: a client with a 30 s
	// timeout).
	HTTP *http.Client
	// MaxBytes bounds one signature (default 64 KiB).
	MaxBytes int64
}

// Checker checks release signatures. It is safe for concurrent use.
type Checker struct {
	store    string
	local    *dirStore // when the store is a local directory
	http     *http.Client
	maxBytes int64

	keyring openpgp.EntityList
	trust   []string // "FINGERPRINT (name)" of every trusted key

	policy *signature.PolicyContext
	// policyMu: a PolicyContext evaluates one image at a time (it refuses
	// a second while one is in use), and checks run concurrently.
	policyMu sync.Mutex
	sys      *types.SystemContext
}

// New returns a checker for opts.
func New(opts Options) (*Checker, error) {
	c := &Checker{store: strings.TrimSuffix(opts.Store, "/"), http: opts.HTTP, maxBytes: opts.MaxBytes, sys: opts.Sys}
	if c.store == "" {
		c.store = DefaultStore
	}
	if c.http == nil {
		c.http = &http.Client{Timeout: 30 * time.Second}
	}
	if c.maxBytes <= 0 {
		c.maxBytes = 64 << 10
	}
	if dir, ok := LocalPath(c.store); ok {
		local, err := newDirStore(dir, c.maxBytes)
		if err != nil {
			return nil, err
		}
		c.local = local
	}
	blobs := map[string][]byte{}
	if opts.KeyFiles == nil {
		blobs["the built-in Red Hat release key"] = RedHatReleaseKey
	}
	for _, f := range opts.KeyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading verify.public_keys: %w", err)
		}
		blobs[f] = b
	}
	for name, b := range blobs {
		ring, err := readKeyRing(b)
		if err != nil {
			return nil, fmt.Errorf("loading verify.public_keys %s: %w", name, err)
		}
		if len(ring) == 0 {
			return nil, fmt.Errorf("verify.public_keys %s: no key found", name)
		}
		c.keyring = append(c.keyring, ring...)
	}
	for _, e := range c.keyring {
		c.trust = append(c.trust, fmt.Sprintf("%X (%s)", e.PrimaryKey.Fingerprint, identityOf(e)))
	}
	slices.Sort(c.trust)
	if opts.Policy != "" {
		p, err := signature.NewPolicyFromFile(opts.Policy)
		if err != nil {
			return nil, fmt.Errorf("loading verify.policy: %w", err)
		}
		if c.policy, err = signature.NewPolicyContext(p); err != nil {
			return nil, fmt.Errorf("loading verify.policy: %w", err)
		}
	}
	return c, nil
}

// readKeyRing reads armored or binary public keys.
func readKeyRing(b []byte) (openpgp.EntityList, error) {
	if bytes.Contains(b, []byte("-----BEGIN PGP")) {
		return openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
	}
	return openpgp.ReadKeyRing(bytes.NewReader(b))
}

func identityOf(e *openpgp.Entity) string {
	names := make([]string, 0, len(e.Identities))
	for n := range e.Identities {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(names) == 0 {
		return "no user id"
	}
	return names[0]
}

// Trust describes what the checker verifies with, for status pages: the
// OpenPGP keys and the policy; "" when nothing.
func (c *Checker) Trust() string {
	var parts []string
	if len(c.trust) > 0 {
		parts = append(parts, "OpenPGP "+strings.Join(c.trust, ", "))
	}
	if c.policy != nil {
		parts = append(parts, "policy.json")
	}
	return strings.Join(parts, "; ")
}

// Close releases the checker's resources.
func (c *Checker) Close() {
	if c.policy != nil {
		_ = c.policy.Destroy()
	}
}

// ErrNoTrust is the reason of every verdict of a checker with no key and no
// policy: nothing can verify.
var ErrNoTrust = errors.New("nothing to verify with: verify.public_keys is empty and verify.policy unset")

// Check verifies the payload pullspec whose manifest digest is d. An error
// means the check could not be made (network, store 5xx): try again later.
func (c *Checker) Check(ctx context.Context, pullspec string, d digest.Digest) (Verdict, error) {
	if len(c.keyring) == 0 && c.policy == nil {
		return Verdict{Reason: ErrNoTrust.Error()}, nil
	}
	var reasons []string
	if len(c.keyring) > 0 {
		v, err := c.checkAtomic(ctx, d)
		if err != nil || v.Verified {
			return v, err
		}
		reasons = append(reasons, v.Reason)
	}
	if c.policy != nil {
		v, err := c.checkPolicy(ctx, pullspec)
		if err != nil || v.Verified {
			return v, err
		}
		reasons = append(reasons, v.Reason)
	}
	return Verdict{Reason: strings.Join(reasons, "; ")}, nil
}

// checkAtomic tries signature-1, signature-2, ... until one verifies or the
// store has no more.
func (c *Checker) checkAtomic(ctx context.Context, d digest.Digest) (Verdict, error) {
	if err := d.Validate(); err != nil {
		return Verdict{}, fmt.Errorf("checking the signature of %q: %w", d, err)
	}
	if c.local != nil {
		return c.checkLocal(d)
	}
	var why []string
	for n := 1; n <= MaxSignatures; n++ {
		sig, found, err := c.fetch(ctx, d, n)
		if err != nil {
			return Verdict{}, err
		}
		if !found {
			if n == 1 {
				why = append(why, "the store has no signature")
			}
			break
		}
		key, err := c.verifyOne(sig, d)
		if err != nil {
			why = append(why, fmt.Sprintf("signature-%d: %v", n, err))
			continue
		}
		return Verdict{Verified: true, By: "OpenPGP key " + key}, nil
	}
	return Verdict{Reason: fmt.Sprintf("no signature of %s verifies (%s)", d, strings.Join(why, "; "))}, nil
}

// checkLocal tries the signatures of d a local store has, in its order.
func (c *Checker) checkLocal(d digest.Digest) (Verdict, error) {
	sigs, problems, err := c.local.signatures(d)
	if err != nil {
		return Verdict{}, err
	}
	var why []string
	for i, sig := range sigs {
		key, err := c.verifyOne(sig, d)
		if err == nil {
			return Verdict{Verified: true, By: "OpenPGP key " + key}, nil
		}
		why = append(why, fmt.Sprintf("signature %d: %v", i+1, err))
	}
	if len(sigs) == 0 {
		why = append(why, "the store has no signature")
	}
	if len(problems) > 3 {
		problems = append(problems[:3:3], fmt.Sprintf("and %d more files not read", len(problems)-3))
	}
	why = append(why, problems...)
	return Verdict{Reason: fmt.Sprintf("no signature of %s verifies (%s)", d, strings.Join(why, "; "))}, nil
}

func (c *Checker) fetch(ctx context.Context, d digest.Digest, n int) ([]byte, bool, error) {
	u := fmt.Sprintf("%s/%s=%s/signature-%d", c.store, d.Algorithm(), d.Encoded(), n)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, false, fmt.Errorf("fetching %s: %w", u, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden:
		// mirror.openshift.com answers 403 for a missing object behind its CDN.
		return nil, false, nil
	case resp.StatusCode != http.StatusOK:
		return nil, false, fmt.Errorf("fetching %s: HTTP %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		return nil, false, fmt.Errorf("fetching %s: %w", u, err)
	}
	if int64(len(body)) > c.maxBytes {
		return body[:0], true, nil // verifyOne will say it is not a signature
	}
	return body, true, nil
}

// verifyOne checks a signature's cryptography as openshift/library-go's
// pkg/verify does (signed, by a trusted key, not expired), then its signed
// JSON. It returns the fingerprint of the key that signed.
func (c *Checker) verifyOne(sig []byte, d digest.Digest) (string, error) {
	if len(sig) == 0 {
		return "", errors.New("empty or over the size limit")
	}
	md, err := openpgp.ReadMessage(bytes.NewReader(sig), c.keyring, nil, nil)
	if err != nil {
		return "", fmt.Errorf("does not verify: %w", err)
	}
	if !md.IsSigned {
		return "", errors.New("does not verify: the message is not signed")
	}
	// The signature is checked when the body is read to its end.
	contents, err := io.ReadAll(io.LimitReader(md.UnverifiedBody, maxSignedBytes+1))
	if err != nil {
		return "", fmt.Errorf("does not verify: reading the signed message: %w", err)
	}
	if len(contents) > maxSignedBytes {
		return "", fmt.Errorf("does not verify: the signed message is over %d bytes", maxSignedBytes)
	}
	if md.SignedBy == nil {
		return "", fmt.Errorf("does not verify: signed by key %X, which is not trusted", md.SignedByKeyId)
	}
	if md.SignatureError != nil {
		return "", fmt.Errorf("does not verify: %w", md.SignatureError)
	}
	switch {
	case md.Signature != nil:
		if life := md.Signature.SigLifetimeSecs; life != nil && *life != 0 {
			if expiry := md.Signature.CreationTime.Add(time.Duration(*life) * time.Second); time.Now().After(expiry) {
				return "", fmt.Errorf("does not verify: the signature expired on %s", expiry.UTC().Format(time.RFC3339))
			}
		}
	case md.SignatureV3 == nil:
		return "", errors.New("does not verify: no signature packet")
	}
	key := fmt.Sprintf("%X", md.SignedBy.PublicKey.Fingerprint)
	if err := CheckContents(contents, d); err != nil {
		return "", err
	}
	return key, nil
}

// atomicSignature is the signed JSON ("simple signing" format).
type atomicSignature struct {
	Critical struct {
		Type  string `json:"type"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
	} `json:"critical"`
	Optional json.RawMessage `json:"optional"`
}

// CheckContents checks verified signature contents as the cluster-version
// operator does: the type is an atomic container signature, the digest is
// the payload's, and the critical section has no field it does not know.
func CheckContents(contents []byte, d digest.Digest) error {
	dec := json.NewDecoder(bytes.NewReader(contents))
	dec.DisallowUnknownFields()
	var s atomicSignature
	if err := dec.Decode(&s); err != nil {
		return fmt.Errorf("signed JSON: %w", err)
	}
	if dec.More() {
		return errors.New("signed JSON: trailing data")
	}
	if s.Critical.Type != "atomic container signature" {
		return fmt.Errorf("signed JSON: type %q, want atomic container signature", s.Critical.Type)
	}
	if s.Critical.Image.DockerManifestDigest != d.String() {
		return fmt.Errorf("signed JSON: signs %q, not %s", s.Critical.Image.DockerManifestDigest, d)
	}
	if len(s.Optional) > 0 && s.Optional[0] != '{' && string(s.Optional) != "null" {
		return errors.New("signed JSON: optional is not an object")
	}
	return nil
}

// checkPolicy evaluates the containers policy.json for the payload (sigstore
// signatures, or any requirement containers/image supports).
func (c *Checker) checkPolicy(ctx context.Context, pullspec string) (Verdict, error) {
	ref, err := docker.ParseReference("//" + pullspec)
	if err != nil {
		return Verdict{}, err
	}
	src, err := ref.NewImageSource(ctx, c.sys)
	if err != nil {
		return Verdict{}, fmt.Errorf("reading %s for its policy check: %w", pullspec, err)
	}
	defer src.Close()
	c.policyMu.Lock()
	allowed, err := c.policy.IsRunningImageAllowed(ctx, image.UnparsedInstance(src, nil))
	c.policyMu.Unlock()
	if allowed {
		return Verdict{Verified: true, By: "policy.json"}, nil
	}
	reason := "rejected by policy.json"
	if err != nil {
		reason += ": " + err.Error()
	}
	return Verdict{Reason: reason}, nil
}
