package reconcile

import (
	"context"
	"fmt"
	"slices"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/guard"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/watcher"
)

// discover gathers the pass's releases: the graph's (pinned by digest), the
// release-controllers' and the config's, a pullspec by tag resolved to its
// digest with one HEAD where it is pulled from (remembered for
// registry.resolve_ttl), so that
// everything after works on digests alone. Releases found in several feeds
// are one release with all its sources. A feed that fails fails the pass
// softly: its last known state is used. It returns what the feeds list,
// each release once, pinned by digest.
func (p *pass) discover(ctx context.Context) watcher.Discovery {
	disc := p.r.Discoverer.Discover(ctx, p.now, p.opts.Channels, p.opts.DryRun)
	p.out.count(func(res *Result) { res.GraphRequests = disc.GraphRequests + disc.StreamRequests })
	for _, err := range disc.Errors {
		p.out.fail(err)
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
	disc.Releases = merge(p.pinAll(ctx, releases))
	return disc
}

// pinAll resolves the releases named by tag, at once, Concurrency at a time
// (the registry client bounds the calls in flight across everything), and
// returns those pinned by digest: one that could not be resolved is not
// for this pass.
func (p *pass) pinAll(ctx context.Context, releases []watcher.Release) []watcher.Release {
	var unpinned []int
	for i := range releases {
		if releases[i].Digest == "" {
			unpinned = append(unpinned, i)
		}
	}
	notThisPass := func(k int, err error) {
		p.out.fail(err)
		releases[unpinned[k]].Pullspec = "" // not this pass
	}
	guard.Each(p.r.Concurrency, len(unpinned), func(k int) {
		if err := p.pin(ctx, &releases[unpinned[k]]); err != nil {
			notThisPass(k, err)
		}
	}, func(k int, err error) {
		notThisPass(k, fmt.Errorf("resolving %s: %w", releases[unpinned[k]].Pullspec, err))
	})
	return slices.DeleteFunc(releases, func(rel watcher.Release) bool { return rel.Pullspec == "" })
}

// merge makes the releases found in several feeds one each, with every
// source: a tag of a release-controller and a node of the graph may be the
// same payload.
func merge(releases []watcher.Release) []watcher.Release {
	var merged []watcher.Release
	at := map[string]int{}
	for _, rel := range releases {
		key := rel.Digest + "/" + rel.Arch
		if i, ok := at[key]; ok {
			merged[i].Sources, _ = watcher.MergeSources(merged[i].Sources, rel.Sources)
			for _, ch := range rel.Channels {
				if !slices.Contains(merged[i].Channels, ch) {
					merged[i].Channels = append(merged[i].Channels, ch)
				}
			}
			if merged[i].Version == "" {
				merged[i].Version = rel.Version
			}
			continue
		}
		at[key] = len(merged)
		merged = append(merged, rel)
	}
	return merged
}

// listing is what the plan reads the releases from.
func (p *pass) listing(disc watcher.Discovery) plan.Listing {
	return plan.Listing{Now: p.now, Listed: disc.Releases, Withdrawn: disc.Withdrawn, Read: disc.Read,
		Releases: p.book.releaseMap(), Held: p.book.heldMap(), Signatures: p.r.checkingSignatures(), Recheck: p.r.SignatureRecheck,
		RetryHeld: p.opts.RetryHeld}
}

// Withdrawal policies (prerelease.on_withdrawn).
const (
	WithdrawTags   = "withdraw" // remove the pre-release's tags dtkbot promoted
	WithdrawReport = "report"   // only say so
)

// withdrawing is what the plan withdraws pre-releases from.
func (p *pass) withdrawing(disc watcher.Discovery) plan.Withdrawing {
	return plan.Withdrawing{Listing: p.listing(disc), Only: p.opts.Release, Promoted: p.book.promotions(),
		Remove: p.r.Prerelease.OnWithdrawn != WithdrawReport, Done: p.done}
}

// pin resolves a release pullspec by tag to repository@digest: with one
// HEAD where the image is pulled from (registry.Client.Resolve: the
// registries.conf mirrors first, then the registry; a disconnected
// installation's pull-through cache answers, quay.io need not), or from
// the state's memory of the last resolution while it is younger than
// registry.resolve_ttl (a release-controller lists dozens of tags every
// pass; their digests do not change).
func (p *pass) pin(ctx context.Context, rel *watcher.Release) error {
	named, err := reference.ParseNormalizedNamed(rel.Pullspec)
	if err != nil {
		return fmt.Errorf("release %s: %w", rel.Pullspec, err)
	}
	var d digest.Digest
	if pin, ok, _ := p.r.Store.Pin(rel.Pullspec); ok && p.now.Sub(pin.At) < p.r.ResolveTTL {
		d = digest.Digest(pin.Digest)
	} else {
		if d, err = p.r.Registry.Resolve(ctx, rel.Pullspec); err != nil {
			return fmt.Errorf("resolving release %s: %w", rel.Pullspec, err)
		}
		if !p.opts.DryRun {
			if err := p.r.Store.PutPin(rel.Pullspec, state.Pin{Digest: d.String(), At: p.now}); err != nil {
				p.log.Warn().Err(err).Str("pullspec", rel.Pullspec).Msg("remembering a resolution")
			}
		}
	}
	pinned, err := reference.WithDigest(reference.TrimNamed(named), d)
	if err != nil {
		return fmt.Errorf("release %s: %w", rel.Pullspec, err)
	}
	rel.Pullspec, rel.Digest = pinned.String(), d.String()
	return nil
}
