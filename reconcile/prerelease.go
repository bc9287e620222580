package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/promote"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/watcher"
)

// Withdrawal policies (prerelease.on_withdrawn).
const (
	WithdrawTags   = "withdraw" // remove the pre-release's tags dtkbot promoted
	WithdrawReport = "report"   // only say so
)

// refresh brings a recorded release's sources and channels up to date with
// this pass's discovery (a pre-release found first in a release-controller
// and then in a graph channel, a phase that changed); a withdrawn release
// seen accepted again counts again. It costs no registry request.
func (p *pass) refresh(known ledger.Release, seen watcher.Release) {
	sources, changed := watcher.MergeSources(known.Sources, seen.Sources)
	for _, ch := range seen.Channels {
		if !slices.Contains(known.Channels, ch) {
			known.Channels, changed = append(known.Channels, ch), true
		}
	}
	if known.Withdrawn != "" {
		known.Withdrawn, known.WithdrawnAt, changed = "", p.now, true
		p.log.Info().Str("release", known.Version).Msg("a withdrawn pre-release is listed again: it counts again")
	}
	if !changed {
		return
	}
	sort.Strings(known.Channels)
	known.Sources = sources
	p.putRelease(known)
}

// putRelease keeps a release record in the view and, unless dry, the store.
func (p *pass) putRelease(rel ledger.Release) {
	p.mu.Lock()
	p.view.releases[ledger.ReleaseKey(rel.Digest, rel.Arch)] = rel
	p.mu.Unlock()
	if p.opts.DryRun {
		return
	}
	if err := p.r.Store.Update(func(tx *state.Tx) error { return tx.PutRelease(rel) }); err != nil {
		p.fail(fmt.Errorf("recording release %s: %w", rel.Version, err))
	}
}

// prereleases withdraws the pre-releases a release-controller now calls
// Rejected or Failed, and those that vanished from every feed that listed
// them: they drive no build and get no tag any more, and the tags dtkbot
// gave them are removed (prerelease.on_withdrawn: withdraw) or reported. A
// kernel is never touched: other releases may ship it.
func (p *pass) prereleases(ctx context.Context) {
	listed := map[string]bool{}
	for _, rel := range p.releases {
		for _, arch := range watcher.PayloadArches(rel.Arch) {
			listed[ledger.ReleaseKey(rel.Digest, arch)] = true
		}
	}
	rejected := map[string]string{} // version/arch -> by which feed
	for _, w := range p.disc.Withdrawn {
		for _, arch := range watcher.PayloadArches(w.Arch) {
			if len(w.Sources) > 0 {
				rejected[w.Version+"/"+arch] = w.Sources[0].String()
			}
		}
	}
	for key, rel := range p.view.releases {
		if !rel.PreRelease() || rel.Withdrawn != "" || listed[key] {
			continue
		}
		var why string
		if by, ok := rejected[rel.Version+"/"+rel.Arch]; ok {
			why = "rejected: " + by
		} else if p.vanished(rel) {
			why = "vanished from " + describe(rel.Sources)
		}
		if why == "" {
			continue
		}
		rel.Withdrawn, rel.WithdrawnAt = why, p.now
		p.warn(fmt.Sprintf("pre-release %s (%s) withdrawn: %s", rel.Version, rel.Arch, why))
		p.putRelease(rel)
	}
	for _, rel := range p.view.releaseList(p.opts.Release) {
		if rel.Withdrawn != "" {
			p.withdrawTags(ctx, rel)
		}
	}
}

// vanished reports whether every feed that listed a pre-release was read
// this pass and none lists it any more. A feed that failed to answer says
// nothing.
func (p *pass) vanished(rel ledger.Release) bool {
	if len(rel.Sources) == 0 {
		return false
	}
	for _, s := range rel.Sources {
		if s.Type != watcher.SourceReleaseController || !p.disc.Read[s.Key()] {
			return false
		}
	}
	return true
}

func describe(sources []watcher.Source) string {
	var out []string
	for _, s := range sources {
		out = append(out, s.String())
	}
	return strings.Join(out, ", ")
}

// withdrawTags removes (or reports) the tags dtkbot promoted for a
// withdrawn pre-release: its release tags, of every kind, in every
// repository, each only while it still holds what dtkbot put there
// (promote.Tags.Remove). Kernel tags stay: the image is verified and other
// releases may ship its kernel.
func (p *pass) withdrawTags(ctx context.Context, rel ledger.Release) {
	var refs []string
	for ref, pr := range p.view.promoted {
		if arch := pr.Arch(); pr.Release == rel.Version && pr.Kind != ledger.TagKernel && (arch == "" || arch == rel.Arch) {
			refs = append(refs, ref)
		}
	}
	sort.Strings(refs)
	for _, ref := range refs {
		pr := p.view.promoted[ref]
		a := plan.Action{Type: plan.ActionWithdraw, Release: rel.Version, Arch: rel.Arch, Tag: ref, Reason: rel.Withdrawn, Consumer: pr.Consumer, KernelKey: pr.KernelKey}
		switch {
		case p.r.Prerelease.OnWithdrawn == WithdrawReport || p.opts.DryRun || p.tags == nil:
			a.Result = "reported"
			if !p.opts.DryRun {
				p.warn(fmt.Sprintf("tag %s of withdrawn pre-release %s stays (prerelease.on_withdrawn: report)", ref, rel.Version))
			}
		default:
			outcome, err := p.tags.Remove(ctx, ref, p.tagsHolding(ref, pr.Digest))
			var conflict *promote.ConflictError
			switch {
			case err == nil:
				// Removed (or kept by a registry that does not delete tags):
				// not ours to keep up any more.
				a.Result = outcome
				p.deletePromotion(ref, a)
			case errors.As(err, &conflict):
				// Someone moved it since: it is theirs now, and stays.
				a.Result = "kept: " + err.Error()
				p.warn(fmt.Sprintf("tag %s of withdrawn pre-release %s: %v", ref, rel.Version, err))
				p.deletePromotion(ref, a)
			default:
				a.Result = "error: " + err.Error()
				p.fail(fmt.Errorf("withdrawing %s: %w", ref, err))
			}
		}
		p.action(a)
	}
}
