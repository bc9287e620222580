package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/registry"
)

// auditStamp names the time of the last complete audit in the store.
const auditStamp = "audit"

// audit is the drift audit: once per Audit.Interval, one HEAD per tag
// dtkbot promoted. A tag someone moved (or deleted) is re-pointed at the
// verified image it held, or only reported; a tag dtkbot never promoted is
// never looked at, let alone touched.
func (p *pass) audit(ctx context.Context) {
	pol := p.r.Audit
	if pol.Interval <= 0 || len(p.view.promoted) == 0 {
		return
	}
	last, err := p.r.Store.Stamp(auditStamp)
	if err != nil {
		p.fail(fmt.Errorf("reading the time of the last audit: %w", err))
		return
	}
	if p.now.Sub(last) < pol.Interval {
		return
	}
	refs := make([]string, 0, len(p.view.promoted))
	for ref := range p.view.promoted {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	complete := true
	for _, ref := range refs {
		pr := p.view.promoted[ref]
		p.res.Audited++
		d, err := p.r.Checker.Digest(ctx, ref)
		switch {
		case err == nil && d.String() == pr.Digest:
			continue
		case err != nil && !errors.Is(err, registry.ErrNotFound):
			p.fail(fmt.Errorf("auditing %s: %w", ref, err))
			complete = false
			continue
		}
		p.res.Drifted++
		a := plan.Action{Type: plan.ActionAudit, Kernel: pr.Kernel, Release: pr.Release, Tag: ref, Kind: pr.Kind, KernelKey: pr.KernelKey, Consumer: pr.Consumer}
		if err != nil {
			a.Reason = fmt.Sprintf("gone (dtkbot promoted it to %s)", pr.Digest)
		} else {
			a.Reason = fmt.Sprintf("moved to %s (dtkbot promoted it to %s)", d, pr.Digest)
		}
		a.Result = p.repoint(ctx, &a, pr)
		p.res.Actions = append(p.res.Actions, a)
	}
	if complete && !p.opts.DryRun {
		if err := p.r.Store.SetStamp(auditStamp, p.now); err != nil {
			p.fail(fmt.Errorf("recording the audit: %w", err))
		}
	}
}

// repoint puts a drifted tag back on the image dtkbot promoted there, when
// the policy says so (promote.Tags.Repair lets it overwrite the tag).
func (p *pass) repoint(ctx context.Context, a *plan.Action, pr ledger.Promotion) string {
	image, ok := p.imageOf(pr)
	switch {
	case !p.r.Audit.Repair || p.opts.DryRun || p.tags == nil:
		p.warn(fmt.Sprintf("tag %s %s: reported, not re-pointed", a.Tag, a.Reason))
		return "reported"
	case !ok:
		p.warn(fmt.Sprintf("tag %s %s: no image to re-point it at", a.Tag, a.Reason))
		return "reported: its image is not in the ledger"
	}
	a.Image = image
	// The kernel tag is re-pointed on its own; any other tag only once
	// the kernel tag holds the image (rule 1).
	after := ""
	if m, ok := p.image(pr.ImageKey()); ok && m.Image != a.Tag {
		after = m.Image
		if err := p.tags.Confirm(ctx, after, digest.Digest(pr.Digest)); err != nil {
			p.warn(fmt.Sprintf("tag %s %s: not re-pointed before its kernel tag: %v", a.Tag, a.Reason, err))
			return "reported: its kernel tag does not hold the image"
		}
	}
	d, err := p.tags.Promote(ctx, a.Image, a.Tag, after)
	if err != nil {
		p.fail(fmt.Errorf("re-pointing %s: %w", a.Tag, err))
		return "error: " + err.Error()
	}
	pr.Digest, pr.At = d.String(), p.now
	p.putPromotion(pr, *a)
	p.warn(fmt.Sprintf("tag %s %s: re-pointed", a.Tag, a.Reason))
	return "re-pointed"
}

// imageOf finds the verified image (pinned by digest) a promoted tag held:
// a kernel's DTK, or a consumer's image.
func (p *pass) imageOf(pr ledger.Promotion) (string, bool) {
	if m, ok := p.image(pr.ImageKey()); ok && m.ImageDigest == pr.Digest {
		return m.PinnedImage(), true
	}
	for _, m := range p.view.imageList("") {
		if m.Consumer == pr.Consumer && m.ImageDigest == pr.Digest && (m.State == ledger.StateVerified || m.State == ledger.StatePromoted) {
			return m.PinnedImage(), true
		}
	}
	return "", false
}
