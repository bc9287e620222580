package rebuild

import (
	"context"
	"errors"
	"fmt"

	"github.com/distribution/reference"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/signature"

	"github.com/dtkbot/dtkbot/registry"
)

// RegistryPromoter promotes with containers/image: copy.Image of the pinned
// source onto the destination tag, every platform of a manifest list, digests
// preserved. It looks first: a tag already at the digest costs one HEAD.
// Within the target repository no layer moves: the copy finds every blob
// already there (one HEAD each). A mirror repository receives a kernel's
// layers once, with its first tag; later tags of that kernel move none.
// (containers/image mounts blobs across repositories only when its blob-info
// cache knows where they are, and that cache is SQLite, which needs cgo: so
// kernel images and release tags share one repository by design.)
type RegistryPromoter struct {
	Registry *registry.Client
}

// NewRegistryPromoter returns a promoter using reg's credentials and settings.
func NewRegistryPromoter(reg *registry.Client) *RegistryPromoter {
	return &RegistryPromoter{Registry: reg}
}

// Promote implements Promoter.
func (p *RegistryPromoter) Promote(ctx context.Context, src, dst string) (string, error) {
	srcNamed, err := reference.ParseNormalizedNamed(src)
	if err != nil {
		return "", fmt.Errorf("promoting %s: source: %w", src, err)
	}
	canonical, ok := srcNamed.(reference.Canonical)
	if !ok {
		return "", fmt.Errorf("promoting %s: the source must be pinned by digest", src)
	}
	want := canonical.Digest()
	have, err := p.Registry.Digest(ctx, dst)
	switch {
	case err == nil && have == want:
		return want.String(), nil
	case err != nil && !errors.Is(err, registry.ErrNotFound):
		return "", fmt.Errorf("promoting %s: %w", dst, err)
	}
	if _, err := reference.ParseNormalizedNamed(dst); err != nil {
		return "", fmt.Errorf("promoting to %s: %w", dst, err)
	}
	srcRef, err := docker.ParseReference("//" + src)
	if err != nil {
		return "", err
	}
	dstRef, err := docker.ParseReference("//" + dst)
	if err != nil {
		return "", err
	}
	// The source is pinned by a digest dtkbot verified; signature policy
	// (verify: in config) is applied to release payloads, not here.
	policy, err := signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		return "", err
	}
	defer func() { _ = policy.Destroy() }()
	sys := p.Registry.SystemContext()
	out, err := copy.Image(ctx, policy, dstRef, srcRef, &copy.Options{
		SourceCtx:          sys,
		DestinationCtx:     sys,
		ImageListSelection: copy.CopyAllImages,
		PreserveDigests:    true,
	})
	if err != nil {
		return "", fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	got, err := manifest.Digest(out)
	if err != nil {
		return "", err
	}
	if got != want {
		return "", fmt.Errorf("copying %s to %s: the copy has digest %s", src, dst, got)
	}
	// Check the world, not the answer: a proxy that acknowledged the push
	// without storing it must not leave a promotion recorded that is not there.
	have, err = p.Registry.Digest(ctx, dst)
	if err != nil {
		return "", fmt.Errorf("checking %s after the copy: %w", dst, err)
	}
	if have != want {
		return "", fmt.Errorf("checking %s after the copy: it points at %s, not %s", dst, have, want)
	}
	return got.String(), nil
}
