package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
)

// pullSources are where an image may be read, in order: the registries.conf
// mirrors of its registry (those allowed for this reference: a
// mirror-by-digest-only mirror only for digests), then the registry itself.
func (c *Client) pullSources(named reference.Named) ([]source, error) {
	reg, err := sysregistriesv2.FindRegistry(c.sys, named.Name())
	if err != nil {
		return nil, fmt.Errorf("loading registries.conf: %w", err)
	}
	if reg == nil {
		src, err := c.primary(named)
		return []source{src}, err
	}
	if reg.Blocked {
		return nil, fmt.Errorf("registry %s is blocked in %s", reg.Prefix, sysregistriesv2.ConfigurationSourceDescription(c.sys))
	}
	pulls, err := reg.PullSourcesFromReference(named)
	if err != nil {
		return nil, err
	}
	var out []source
	for _, ps := range pulls {
		src, err := c.sourceOf(ps.Reference, ps.Endpoint.Insecure)
		if err != nil {
			return nil, err
		}
		out = append(out, src)
	}
	if len(out) == 0 {
		return nil, errors.New("registries.conf leaves no source to pull from")
	}
	return out, nil
}

// primary is the image's own registry (no mirror): where dtkbot checks and
// pushes.
func (c *Client) primary(named reference.Named) (source, error) {
	return c.sourceOf(named, false)
}

func (c *Client) sourceOf(named reference.Named, insecure bool) (source, error) {
	src := source{repo: reference.Path(named)}
	src.host = reference.Domain(named)
	if src.host == "docker.io" {
		src.host = "registry-1.docker.io"
	}
	switch r := named.(type) {
	case reference.Canonical:
		src.ref = r.Digest().String()
	case reference.NamedTagged:
		src.ref = r.Tag()
	default:
		src.ref = "latest"
	}
	src.insecure = insecure || c.sys.DockerInsecureSkipTLSVerify == types.OptionalBoolTrue
	if !src.insecure {
		if reg, err := sysregistriesv2.FindRegistry(c.sys, named.Name()); err == nil && reg != nil && reg.Insecure {
			src.insecure = true
		}
	}
	return src, nil
}

// Resolve answers which digest a release pullspec's tag points at, asking
// where the image would be pulled from: its registries.conf pull sources in
// order (for a tag, the mirrors not marked mirror-by-digest-only, then the
// registry itself), as containers/image resolves a pull. The first source
// that answers wins; one that has no such tag, or fails, passes the
// question to the next. A pullspec by digest is its own answer. A tag no
// source has is ErrNotFound.
//
// Digest, not Resolve, is for the tags dtkbot pushes or checks in its own
// repositories: those are asked of that registry alone.
func (c *Client) Resolve(ctx context.Context, pullspec string) (digest.Digest, error) {
	named, err := reference.ParseNormalizedNamed(pullspec)
	if err != nil {
		return "", fmt.Errorf("parsing image reference %q: %w", pullspec, err)
	}
	if can, ok := named.(reference.Canonical); ok {
		return can.Digest(), nil
	}
	sources, err := c.pullSources(named)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", pullspec, err)
	}
	var failures []error
	notFound := 0
	for _, src := range sources {
		d, err := c.head(ctx, src)
		if err == nil {
			return d, nil
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("resolving %s: %w", pullspec, err)
		}
		if errors.Is(err, ErrNotFound) {
			// Not wrapped: the tag is missing only if every source says so.
			notFound++
			failures = append(failures, fmt.Errorf("%s/%s: %v", src.host, src.repo, err))
			continue
		}
		failures = append(failures, fmt.Errorf("%s/%s: %w", src.host, src.repo, err))
	}
	if notFound == len(sources) {
		return "", fmt.Errorf("resolving %s: %w", pullspec, ErrNotFound)
	}
	return "", fmt.Errorf("resolving %s: %w", pullspec, errors.Join(failures...))
}
