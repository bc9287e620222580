package reconcile

import (
	"context"
	"fmt"
	"slices"

	"github.com/distribution/reference"

	"github.com/dtkbot/dtkbot/watcher"
)

// discover gathers the pass's releases: the graph's (pinned by digest) and
// the config's, a pullspec by tag resolved to its digest with one HEAD, so
// that everything after works on digests alone. A graph that fails fails
// the pass softly: its last known nodes are used.
func (p *pass) discover(ctx context.Context) {
	disc := p.r.Discoverer.Discover(ctx, p.opts.Channels, p.opts.DryRun)
	p.res.GraphRequests = disc.GraphRequests
	for _, err := range disc.Errors {
		p.fail(err)
	}
	for _, s := range disc.Skipped {
		p.log.Warn().Str("skipped", s).Msg("graph node not usable")
	}
	releases := disc.Releases
	if p.opts.Release != "" {
		releases = slices.DeleteFunc(releases, func(rel watcher.Release) bool {
			return rel.Version != "" && rel.Version != p.opts.Release
		})
	}
	for i := range releases {
		if releases[i].Digest != "" {
			continue
		}
		if err := p.pin(ctx, &releases[i]); err != nil {
			p.fail(err)
			releases[i].Pullspec = "" // not this pass
		}
	}
	p.releases = slices.DeleteFunc(releases, func(rel watcher.Release) bool { return rel.Pullspec == "" })
}

// pin resolves a release pullspec by tag to repository@digest.
func (p *pass) pin(ctx context.Context, rel *watcher.Release) error {
	named, err := reference.ParseNormalizedNamed(rel.Pullspec)
	if err != nil {
		return fmt.Errorf("release %s: %w", rel.Pullspec, err)
	}
	d, err := p.r.Checker.Digest(ctx, rel.Pullspec)
	if err != nil {
		return fmt.Errorf("resolving release %s: %w", rel.Pullspec, err)
	}
	pinned, err := reference.WithDigest(reference.TrimNamed(named), d)
	if err != nil {
		return fmt.Errorf("release %s: %w", rel.Pullspec, err)
	}
	rel.Pullspec, rel.Digest = pinned.String(), d.String()
	return nil
}
