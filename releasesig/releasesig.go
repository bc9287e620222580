// Package releasesig checks that a release payload digest is signed by a
// trusted key before dtkbot builds or promotes for it, as the cluster-version
// operator does: Red Hat's OpenPGP "atomic container signatures" from a
// signature store laid out as <store>/sha256=<hex>/signature-N (N from 1, at
// most 10 tried), verified with containers/image's pure-Go OpenPGP mechanism
// against configured public keys, the signed JSON checked strictly (type,
// digest, no unknown field); and, where configured, a containers policy.json
// (sigstore signatures) evaluated by containers/image.
//
// It never trusts the signed JSON before the signature verified, and never
// treats a failure to fetch as a failure to verify: a transient error is an
// error (try again), a missing or bad signature is a verdict.
package releasesig

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// Modes of verify.mode.
const (
	ModeOff    = "off"
	ModeWarn   = "warn"
	ModeStrict = "strict"
)

// MaxSignatures is how many signature-N are tried, as the cluster does.
const MaxSignatures = 10

// Verdict is the outcome of a check.
type Verdict struct {
	Verified bool
	// By names the key (fingerprint) or policy that verified it.
	By string
	// Reason says why it is not verified.
	Reason string
}

// Checker checks release signatures.
type Checker struct {
	// Store is the signature store's base URL (https://... or file://...).
	Store string
	HTTP  *http.Client
	// MaxBytes bounds one signature (default 64 KiB).
	MaxBytes int64

	mech signature.SigningMechanism
	keys []string // trusted key fingerprints

	policy *signature.PolicyContext
	sys    *types.SystemContext
}

// New returns a checker trusting the keys in keyFiles (ASCII-armored or
// binary OpenPGP public keys) and, if policyFile is set, a containers
// policy.json evaluated with sys (registry credentials, registries.d).
func New(store string, keyFiles []string, policyFile string, sys *types.SystemContext) (*Checker, error) {
	c := &Checker{Store: strings.TrimSuffix(store, "/"), sys: sys}
	var blobs [][]byte
	for _, f := range keyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading verify.public_keys: %w", err)
		}
		blobs = append(blobs, b)
	}
	if len(blobs) > 0 {
		mech, keys, err := signature.NewEphemeralGPGSigningMechanism(bytes.Join(blobs, []byte("\n")))
		if err != nil {
			return nil, fmt.Errorf("loading verify.public_keys: %w", err)
		}
		if len(keys) == 0 {
			return nil, errors.New("verify.public_keys: no key found in the files")
		}
		c.mech, c.keys = mech, keys
	}
	if policyFile != "" {
		p, err := signature.NewPolicyFromFile(policyFile)
		if err != nil {
			return nil, fmt.Errorf("loading verify.policy: %w", err)
		}
		if c.policy, err = signature.NewPolicyContext(p); err != nil {
			return nil, fmt.Errorf("loading verify.policy: %w", err)
		}
	}
	return c, nil
}

// Close releases the checker's resources.
func (c *Checker) Close() {
	if c.policy != nil {
		_ = c.policy.Destroy()
	}
	if c.mech != nil {
		_ = c.mech.Close()
	}
}

// Check verifies the payload pullspec whose manifest digest is d. An error
// means the check could not be made (network, store 5xx): try again later.
func (c *Checker) Check(ctx context.Context, pullspec string, d digest.Digest) (Verdict, error) {
	if c.mech == nil && c.policy == nil {
		return Verdict{Reason: "no verify.public_keys or verify.policy configured"}, nil
	}
	var reasons []string
	if c.mech != nil {
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

func (c *Checker) fetch(ctx context.Context, d digest.Digest, n int) ([]byte, bool, error) {
	u := fmt.Sprintf("%s/%s=%s/signature-%d", c.Store, d.Algorithm(), d.Encoded(), n)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
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
	max := c.MaxBytes
	if max <= 0 {
		max = 64 << 10
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, false, fmt.Errorf("fetching %s: %w", u, err)
	}
	if int64(len(body)) > max {
		return body[:0], true, nil // verifyOne will say it is not a signature
	}
	return body, true, nil
}

// verifyOne checks a signature's cryptography, then its signed JSON.
func (c *Checker) verifyOne(sig []byte, d digest.Digest) (string, error) {
	if len(sig) == 0 {
		return "", errors.New("empty or over the size limit")
	}
	contents, key, err := c.mech.Verify(sig)
	if err != nil {
		return "", fmt.Errorf("does not verify: %w", err)
	}
	if !slices.Contains(c.keys, key) {
		return "", fmt.Errorf("signed by key %s, which is not trusted", key)
	}
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
	allowed, err := c.policy.IsRunningImageAllowed(ctx, image.UnparsedInstance(src, nil))
	if allowed {
		return Verdict{Verified: true, By: "policy.json"}, nil
	}
	reason := "rejected by policy.json"
	if err != nil {
		reason += ": " + err.Error()
	}
	return Verdict{Reason: reason}, nil
}
