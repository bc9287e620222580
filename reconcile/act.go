package reconcile

import (
	"context"
	"errors"
	"fmt"

	"github.com/dtkbot/dtkbot/rebuild"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/state"
)

// act plans with rebuild.Plan and applies the plan: builds (to the staging
// reference, intent recorded first) and promotions of verified images to
// the kernel tag, the release tags and the floating tags. A dry run only
// reports the plan.
func (p *pass) act(ctx context.Context) {
	plan := append(p.heldActions(), rebuild.Plan(p.planInput())...)
	if p.opts.DryRun {
		p.res.Actions = append(p.res.Actions, plan...)
		return
	}
	p.apply(ctx, plan)
	if requestedBuild(plan) {
		// A synchronous builder (podman) has pushed by now: look again and
		// verify and promote in this pass rather than the next.
		p.observe(ctx)
		var promotions []rebuild.Action
		for _, a := range rebuild.Plan(p.planInput()) {
			if a.Type == rebuild.ActionPromote {
				promotions = append(promotions, a)
			}
		}
		p.apply(ctx, promotions)
	}
}

func (p *pass) planInput() rebuild.Input {
	return rebuild.Input{Now: p.now, Releases: p.view.releaseList(p.opts.Release), Kernels: p.view.kernelList(p.opts.Release),
		Promoted: p.view.promoted, Target: p.r.Target, Policy: p.r.Policy}
}

func requestedBuild(actions []rebuild.Action) bool {
	for _, a := range actions {
		if a.Type == rebuild.ActionBuild && a.Result == "requested" {
			return true
		}
	}
	return false
}

// apply performs a plan's builds and promotions, recording intent before
// each build and the outcome after every effect, then settles the kernels
// whose tags are all in place.
func (p *pass) apply(ctx context.Context, plan []rebuild.Action) {
	promoteFailed := map[string]bool{}
	for i := range plan {
		a := &plan[i]
		switch a.Type {
		case rebuild.ActionBuild:
			a.Result = p.applyBuild(ctx, a)
		case rebuild.ActionPromote:
			a.Result = p.applyPromote(ctx, a)
			if a.Result != "ok" {
				promoteFailed[a.KernelKey] = true
			}
		case rebuild.ActionHold:
			a.Result = "held"
		}
	}
	p.res.Actions = append(p.res.Actions, plan...)
	p.settle(ctx, promoteFailed)
}

func (p *pass) applyBuild(ctx context.Context, a *rebuild.Action) string {
	r := p.r
	before := p.view.kernels[a.KernelKey]
	k := before
	kernelRef, _ := rebuild.KernelImage(r.Target, k) // Plan rendered it
	k.State, k.Image, k.Staging, k.BuildRequestedAt, k.UpdatedAt = state.KernelBuildRequested, kernelRef, a.Image, p.now, p.now
	k.ImageDigest, k.Published = "", false
	k.Attempts++
	// Intent first: if we die after asking for the build, the next pass
	// waits for it instead of asking again.
	if err := p.recordKernel(k, *a, "requesting"); err != nil {
		p.fail(fmt.Errorf("recording the build of %s: %w", a.KernelKey, err))
		return "error: " + err.Error()
	}
	req := rebuild.BuildRequest{Kernel: k.Kernel, KernelFull: k.KernelFull, RTKernel: k.RTKernel, RHEL: k.RHEL,
		Stream: k.Stream, Arch: k.Arch, Image: a.Image, Releases: k.Releases, DTKImage: k.DTKImage}
	err := r.Builder.Build(ctx, req)
	result := "requested"
	switch {
	case err == nil:
		p.log.Info().Str("kernel", k.Kernel).Str("image", a.Image).Msg("build requested")
	case errors.Is(err, rebuild.ErrNotConfigured):
		k = before // nothing was asked: leave the kernel as it was
		result = "skipped: " + err.Error()
	default:
		k.Reason = err.Error()
		p.attemptFailed(&k, r.Build)
		result = "error: " + err.Error()
		p.fail(fmt.Errorf("building kernel %s: %w", a.KernelKey, err))
	}
	if err := p.recordKernel(k, *a, result); err != nil {
		p.fail(err)
	}
	return result
}

func (p *pass) applyPromote(ctx context.Context, a *rebuild.Action) string {
	d, err := p.r.Promoter.Promote(ctx, a.Image, a.Tag)
	if errors.Is(err, rebuild.ErrNotConfigured) {
		return "skipped: " + err.Error()
	}
	if err != nil {
		p.fail(fmt.Errorf("promoting %s: %w", a.Tag, err))
		return "error: " + err.Error()
	}
	p.putPromotion(state.Promotion{Ref: a.Tag, Digest: d, Release: a.Release, Kernel: a.Kernel, KernelKey: a.KernelKey, Kind: a.Kind, At: p.now}, *a)
	if k, ok := p.view.kernels[a.KernelKey]; ok && a.Kind == state.TagKernel && a.Tag == k.Image && d == k.ImageDigest {
		k.Published, k.UpdatedAt = true, p.now
		p.putKernel(k)
	}
	if a.Kind == state.TagRelease {
		p.tagged(a.Release, a.Arch)
	}
	p.log.Info().Str("release", a.Release).Str("tag", a.Tag).Str("digest", d).Msg("promoted")
	return "ok"
}

// settle marks promoted every kernel whose verified image is at its kernel
// tag with none of its promotions failed in this pass, and removes its
// staging tag where the registry allows.
func (p *pass) settle(ctx context.Context, promoteFailed map[string]bool) {
	for _, k := range p.view.kernelList("") {
		promotable := k.State == state.KernelVerified || (k.State == state.KernelBuilt && !p.r.Policy.RequireVerified)
		if promotable && k.Published && !promoteFailed[k.Key()] {
			k.State, k.UpdatedAt = state.KernelPromoted, p.now
			if k.PromotedAt.IsZero() {
				k.PromotedAt = p.now // the end of its lead time
			}
			p.putKernel(k)
		}
		if k.State == state.KernelPromoted && k.Staging != "" && k.StagingRemoved == "" && p.r.Untagger != nil {
			p.removeStaging(ctx, k)
		}
	}
}

// removeStaging deletes a promoted kernel's staging tag (best effort: a
// registry that does not delete tags keeps it, and that is recorded).
func (p *pass) removeStaging(ctx context.Context, k state.Kernel) {
	err := p.r.Untagger.Untag(ctx, k.Staging)
	switch {
	case err == nil:
		k.StagingRemoved = "removed"
	case errors.Is(err, registry.ErrUnsupported):
		k.StagingRemoved = "kept: the registry does not delete tags"
		p.log.Info().Str("tag", k.Staging).Msg("the staging tag stays: the registry does not delete tags")
	default:
		// Not a failure of the pass (consumers never read it), but not done:
		// reported, and tried again on the next pass.
		p.res.Errors = append(p.res.Errors, fmt.Sprintf("removing the staging tag %s (tried again next pass): %v", k.Staging, err))
		p.log.Warn().Str("tag", k.Staging).Err(err).Msg("removing the staging tag: trying again next pass")
		return
	}
	p.putKernel(k)
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
