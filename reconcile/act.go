package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/breaker"
	"github.com/dtkbot/dtkbot/build"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/promote"
)

// maxRounds bounds how often act goes round in one pass: a DTK built and
// promoted, then its consumers' images built and promoted, needs four.
const maxRounds = 6

// act moves every image of every kind as far as it goes this pass. Each
// round looks in the registry for the images that may have news, plans
// with plan.Plan, asks for the plan's builds (intent recorded first) and
// makes its promotions, marks promoted the images whose kernel tags hold
// them, and gives each newly promoted DTK its consumers' images. A
// synchronous builder (podman) has pushed by the time it returns, and a
// promoted DTK is what its consumers are built FROM: so the next round
// looks only at what the last one asked for or added, until nothing moves.
// A dry run plans once and reports the plan.
func (p *pass) act(ctx context.Context) {
	p.addConsumerImages() // new ones are awaited too
	look := p.awaited()
	tried := map[string]bool{} // builds asked for and tags written this pass: once each
	for round := 0; round == 0 || (round < maxRounds && len(look) > 0); round++ {
		p.observe(ctx, look)
		p.checkKernelFiles(ctx)
		actions := plan.Plan(p.planInput())
		if round == 0 {
			actions = append(p.heldActions(), actions...)
		} else {
			actions = slices.DeleteFunc(actions, func(a plan.Action) bool { return a.Type == plan.ActionHold || tried[triedKey(a)] })
		}
		if p.opts.DryRun {
			p.res.Actions = append(p.res.Actions, actions...)
			return
		}
		for _, a := range actions {
			tried[triedKey(a)] = true
		}
		look = unique(append(p.apply(ctx, actions), p.addConsumerImages()...))
	}
}

func unique(keys []string) []string {
	slices.Sort(keys)
	return slices.Compact(keys)
}

// triedKey names what an action does, to do it once a pass.
func triedKey(a plan.Action) string {
	if a.Type == plan.ActionBuild {
		return "build " + a.ImageKey()
	}
	return a.Type + " " + a.Tag + " " + a.Image
}

func (p *pass) planInput() plan.Input {
	return plan.Input{Now: p.now, Releases: p.view.releaseList(p.opts.Release), Images: p.view.imageList(p.opts.Release),
		Promoted: p.view.promoted, Kinds: p.planKinds(), Policy: p.r.Policy}
}

// apply performs a plan's builds and promotions, recording intent before
// each build and the outcome after every effect, then settles the images
// whose kernel tags hold them. It returns the images a build was asked for.
func (p *pass) apply(ctx context.Context, actions []plan.Action) []string {
	var requested []string
	for i := range actions {
		a := &actions[i]
		switch a.Type {
		case plan.ActionBuild:
			if a.Result = p.applyBuild(ctx, a); a.Result == "requested" {
				requested = append(requested, a.ImageKey())
			}
		case plan.ActionPromote:
			if a.Result = p.applyPromote(ctx, a); strings.HasPrefix(a.Result, "error") {
				p.promoteFailed[a.ImageKey()] = true
			}
		case plan.ActionHold:
			a.Result = "held"
		}
	}
	p.res.Actions = append(p.res.Actions, actions...)
	p.settle(ctx)
	return requested
}

func (p *pass) applyBuild(ctx context.Context, a *plan.Action) string {
	before, _ := p.image(a.ImageKey())
	k := p.kinds[before.Kind()]
	m := before
	kernelRef, _ := plan.KernelImage(k.target, m) // Plan rendered it
	m.State, m.Image, m.Staging, m.BuildRequestedAt, m.UpdatedAt = ledger.StateBuildRequested, kernelRef, a.Image, p.now, p.now
	m.ImageDigest, m.ListDigest, m.Published, m.Adopted = "", "", false, false
	m.Attempts++
	// Intent first: if we die after asking for the build, the next pass
	// waits for it instead of asking again.
	if err := p.recordImage(m, *a, "requesting"); err != nil {
		p.fail(fmt.Errorf("recording the build of %s: %w", a.ImageKey(), err))
		return "error: " + err.Error()
	}
	err := k.builder.Build(ctx, requestOf(m))
	result := "requested"
	switch {
	case err == nil:
		m.Asked = m.Attempts
		p.log.Info().Str("kernel", m.Kernel).Str("kind", k.name).Str("image", a.Image).Msgf("build of the %s requested", k.what)
	case errors.Is(err, build.ErrNotConfigured):
		m = before // nothing was asked: leave the image as it was
		result = "skipped: " + err.Error()
	case errors.Is(err, breaker.ErrOpen):
		// The build service stopped answering in this pass: nothing was
		// asked, so no attempt is spent; the next pass asks again.
		m = before
		result = "skipped: " + err.Error()
		p.fail(fmt.Errorf("building %s: %w", a.ImageKey(), err))
	default:
		// The reason is public (issues, /status, the page); the build's own
		// words stay in the log and the state file.
		m.Reason, m.Detail = build.Explain(ctx, k.builder, err)
		p.attemptFailed(&m, k.build)
		result = "error: " + m.Reason
		p.log.Error().Str("kernel", m.Kernel).Str("kind", k.name).Str("image", a.Image).Str("detail", m.Detail).Msgf("the build of the %s failed", k.what)
		p.fail(fmt.Errorf("building %s: %s", a.ImageKey(), m.Reason))
	}
	if err := p.recordImage(m, *a, result); err != nil {
		p.fail(err)
	}
	return result
}

// requestOf is the build request of m's current attempt, to its staging
// reference: what was asked for, and what a backend reports on.
func requestOf(m ledger.Image) build.Request {
	req := build.Request{Kernel: m.Kernel, KernelFull: m.KernelFull, RTKernel: m.RTKernel, RHEL: m.RHEL,
		Stream: m.Stream, Arch: m.Arch, Image: m.Staging, Releases: m.Releases, Attempt: m.Attempts, Round: m.Round}
	if m.IsDTK() {
		req.DTKImage = m.DTKImage
	} else {
		req.Consumer, req.DTK = m.Consumer, m.DTKImage
	}
	return req
}

// applyPromote writes one tag through promote.Tags, which keeps the rules:
// a tag other than the kernel tag only after the kernel tag holds the
// image in this pass, and never over a tag dtkbot did not promote.
func (p *pass) applyPromote(ctx context.Context, a *plan.Action) string {
	if p.tags == nil {
		return "skipped: promotion is not configured (target.repository)"
	}
	d, err := p.tags.Promote(ctx, a.Image, a.Tag, a.After)
	var conflict *promote.ConflictError
	switch {
	case errors.As(err, &conflict):
		p.conflict(a, conflict)
		return "conflict: " + err.Error()
	case errors.Is(err, promote.ErrUnconfirmed):
		return "skipped: " + err.Error()
	case err != nil:
		p.fail(fmt.Errorf("promoting %s: %w", a.Tag, err))
		return "error: " + err.Error()
	}
	p.putPromotion(ledger.Promotion{Ref: a.Tag, Digest: d.String(), Release: a.Release, Kernel: a.Kernel, KernelKey: a.KernelKey,
		Consumer: a.Consumer, Kind: a.Kind, At: p.now}, *a)
	if m, ok := p.image(a.ImageKey()); ok {
		changed := false
		if i := slices.IndexFunc(m.Conflicts, func(c ledger.Conflict) bool { return c.Tag == a.Tag }); i >= 0 {
			m.Conflicts, changed = slices.Delete(slices.Clone(m.Conflicts), i, i+1), true
		}
		if a.After == "" && a.Tag == m.Image && d.String() == m.ImageDigest && !m.Published {
			m.Published, changed = true, true
		}
		if changed {
			m.UpdatedAt = p.now
			p.putImage(m)
		}
	}
	if a.Kind == ledger.TagRelease {
		p.tagged(a.Release, a.Arch)
	}
	p.log.Info().Str("release", a.Release).Str("tag", a.Tag).Str("digest", d.String()).Str("consumer", a.Consumer).Msg("promoted")
	return "ok"
}

// conflict records a tag dtkbot will not write on the image that wanted
// it: reported on /status, the kernel's issue and a metric, and tried
// again (one HEAD) on later passes.
func (p *pass) conflict(a *plan.Action, c *promote.ConflictError) {
	p.mu.Lock()
	p.res.Conflicts = append(p.res.Conflicts, c.Error())
	p.mu.Unlock()
	p.log.Warn().Str("tag", a.Tag).Str("holds", c.Has.String()).Str("consumer", a.Consumer).Msg("tag conflict: not overwritten")
	m, ok := p.image(a.ImageKey())
	if !ok {
		return
	}
	if i := slices.IndexFunc(m.Conflicts, func(x ledger.Conflict) bool { return x.Tag == a.Tag }); i >= 0 {
		if m.Conflicts[i].Digest == c.Has.String() {
			return
		}
		m.Conflicts = slices.Delete(slices.Clone(m.Conflicts), i, i+1)
	}
	m.Conflicts = append(m.Conflicts, ledger.Conflict{Tag: a.Tag, Digest: c.Has.String(), Want: c.Want.String(), Since: p.now})
	m.UpdatedAt = p.now
	p.putImage(m)
}

// settle marks promoted every image whose verified image is at its kernel
// tag with none of its promotions failed in this pass (a tag dtkbot will
// not overwrite is no failure: it is reported), and removes its staging
// tag where the registry allows.
func (p *pass) settle(ctx context.Context) {
	for _, m := range p.view.imageList("") {
		k := p.kinds[m.Kind()]
		if k == nil {
			continue
		}
		promotable := m.State == ledger.StateVerified || (m.State == ledger.StateBuilt && k.verify == nil)
		if promotable && m.Published && !p.promoteFailed[m.Key()] {
			m.State, m.UpdatedAt = ledger.StatePromoted, p.now
			if m.PromotedAt.IsZero() {
				m.PromotedAt = p.now // the end of its lead time
			}
			p.putImage(m)
		}
		if m.State == ledger.StatePromoted && m.Staging != "" && m.StagingRemoved == "" && p.tags != nil {
			p.removeStaging(ctx, m)
		}
	}
}

// removeStaging deletes a promoted image's staging tag (best effort: a
// registry that does not delete tags keeps it, and that is recorded)
// through promote's one guarded removal, which puts back whatever the
// registry deleted with it.
func (p *pass) removeStaging(ctx context.Context, m ledger.Image) {
	keep := append([]string{m.Image}, p.tagsHolding(m.Staging, m.ImageDigest)...)
	outcome, err := p.tags.RemoveStaging(ctx, m.Staging, digest.Digest(m.FoundDigest()), unique(keep))
	if err != nil {
		// Not a failure of the pass (consumers never read it), but not done:
		// reported, and tried again on the next pass.
		p.mu.Lock()
		p.res.Errors = append(p.res.Errors, fmt.Sprintf("removing the staging tag %s (tried again next pass): %v", m.Staging, err))
		p.mu.Unlock()
		p.log.Warn().Str("tag", m.Staging).Err(err).Msg("removing the staging tag: trying again next pass")
		return
	}
	if outcome != "removed" {
		p.log.Info().Str("tag", m.Staging).Msg("the staging tag: " + outcome)
	}
	m.StagingRemoved, m.UpdatedAt = outcome, p.now
	p.putImage(m)
}

// tagsHolding lists the tags dtkbot promoted, in ref's repository, that
// hold digest d (ref aside): what a removal of ref must leave as it was.
func (p *pass) tagsHolding(ref, d string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for other, pr := range p.view.promoted {
		if pr.Digest == d && other != ref && ledger.Repository(other) == ledger.Repository(ref) {
			out = append(out, other)
		}
	}
	slices.Sort(out)
	return out
}

// tagged notes when a release first got a tag: the end of its lead time.
func (p *pass) tagged(version, arch string) {
	for _, rel := range p.view.releaseList(version) {
		if rel.Arch == arch && rel.TaggedAt.IsZero() {
			rel.TaggedAt = p.now
			p.putRelease(rel)
		}
	}
}
