package reconcile

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
)

// auditStamp names the time of the last complete audit in the store.
const auditStamp = "audit"

// AuditPolicy is the drift audit: every Interval (0: never), one HEAD per
// tag dtkbot promoted; a tag that points elsewhere is re-pointed when Repair
// is set, else only reported.
type AuditPolicy struct {
	Interval time.Duration
	Repair   bool
}

// audit is the drift audit: when it is due (plan.AuditDue), one HEAD per
// tag dtkbot promoted; plan.Audit decides what to do about each tag someone
// moved (or deleted): re-point it at the verified image it held, or report
// it. A tag dtkbot never promoted is never looked at, let alone touched.
func (p *pass) audit(ctx context.Context) {
	pol := p.r.Audit
	promoted := p.book.promotions()
	if pol.Interval <= 0 || len(promoted) == 0 {
		return
	}
	last, err := p.r.Store.Stamp(auditStamp)
	if err != nil {
		p.out.fail(fmt.Errorf("reading the time of the last audit: %w", err))
		return
	}
	if !plan.AuditDue(last, p.now, pol.Interval, len(promoted)) {
		return
	}
	holds, complete := p.eyes.tags(ctx, promoted)
	actions := plan.Audit(plan.Auditing{Promoted: promoted, Holds: holds, Images: p.book.imageList(""), Repair: pol.Repair})
	p.out.count(func(res *Result) { res.Drifted += len(actions) })
	p.apply(ctx, plan.Changes{Actions: actions})
	if complete && !p.opts.DryRun {
		if err := p.r.Store.SetStamp(auditStamp, p.now); err != nil {
			p.out.fail(fmt.Errorf("recording the audit: %w", err))
		}
	}
}

// repoint puts a drifted tag back on the image dtkbot promoted there, as
// the plan says (promote.Tags.Repair lets it overwrite the tag), or
// reports it.
func (p *pass) repoint(ctx context.Context, a plan.Action) outcome {
	switch {
	case p.tags == nil || (!a.Repoint && a.Unrepaired == ""):
		p.out.warn(fmt.Sprintf("tag %s %s: reported, not re-pointed", a.Tag, a.Reason))
		return reportedAs("reported")
	case !a.Repoint:
		p.out.warn(fmt.Sprintf("tag %s %s: no image to re-point it at", a.Tag, a.Reason))
		return reportedAs("reported: " + a.Unrepaired)
	}
	pr, _ := p.book.owned(a.Tag)
	// The kernel tag is re-pointed on its own; any other tag only once
	// the kernel tag holds the image (rule 1).
	if a.After != "" {
		if err := p.tags.Confirm(ctx, a.After, digest.Digest(pr.Digest)); err != nil {
			p.out.warn(fmt.Sprintf("tag %s %s: not re-pointed before its kernel tag: %v", a.Tag, a.Reason, err))
			return reportedAs("reported: its kernel tag does not hold the image")
		}
	}
	d, err := p.tags.Promote(ctx, a.Image, a.Tag, a.After)
	if err != nil {
		p.out.fail(fmt.Errorf("re-pointing %s: %w", a.Tag, err))
		return failure(err.Error())
	}
	pr.Digest, pr.At = d.String(), p.now
	if err := p.book.promote(pr, p.now, a, "ok"); err != nil {
		p.out.fail(fmt.Errorf("recording the promotion of %s: %w", pr.Ref, err))
	}
	p.out.warn(fmt.Sprintf("tag %s %s: re-pointed", a.Tag, a.Reason))
	return did("re-pointed")
}

func sortedRefs(promoted map[string]ledger.Promotion) []string {
	refs := make([]string, 0, len(promoted))
	for ref := range promoted {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	return refs
}
