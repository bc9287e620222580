package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/dtkbot/dtkbot/rebuild"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/watcher"
)

// Consumer is a team's image built FROM every promoted DTK: a driver
// container, a kmod image KMM loads. Its builds go through the same
// backends, and the same guarantees, as DTK builds: intent recorded before
// the build, staging → verify → promote, retries with backoff, nothing asked
// twice after a crash or a lost state file.
type Consumer struct {
	Name    string
	Builder rebuild.Builder
	// Target: Repository, KernelTag (default {{.KernelFull}}), ReleaseTags
	// (optional), StagingRepository and StagingTag.
	Target rebuild.Target
	Build  BuildPolicy
	// ModulePath is where the image must hold kernel modules, a template
	// (default opt/lib/modules/{{.KernelFull}}/); Label, if set, is an image
	// label that must name the kernel (uname -r).
	ModulePath string
	Label      string
}

// KmodVerifier checks a consumer's image: an error wrapping
// rebuild.ErrNoModules means it holds no module for the kernel.
type KmodVerifier interface {
	VerifyKmod(ctx context.Context, image, arch, kernelFull, modulePath, label string) error
}

// DefaultModulePath is where KMM looks for a kmod image's modules.
const DefaultModulePath = "opt/lib/modules/{{.KernelFull}}/"

// consumers advances every consumer's image of every promoted kernel: only
// once a kernel's DTK is verified and promoted is a consumer build asked
// for, with that DTK pinned by digest. A synchronous builder's image is
// verified and promoted in the same pass.
func (p *pass) consumers(ctx context.Context) {
	if len(p.r.Consumers) > 0 && p.r.KmodVerifier == nil {
		// Consumers only ever see verified images: without a verifier,
		// nothing is built that could not be promoted.
		p.warn("consumers are configured but nothing verifies kmod images (Reconciler.KmodVerifier): no consumer image is built")
		return
	}
	for _, c := range p.r.Consumers {
		for _, k := range p.view.kernelList(p.opts.Release) {
			if k.State != state.KernelPromoted || k.ImageDigest == "" {
				continue // never before the DTK is verified and promoted
			}
			lc, ok := p.consumerLifecycle(c, k)
			if !ok {
				continue
			}
			key := c.Name + "/" + k.Key()
			e, ok := p.view.consumers[key]
			if !ok {
				e = state.ConsumerBuild{Consumer: c.Name, Kernel: state.Kernel{Stream: k.Stream, Arch: k.Arch, Kernel: k.Kernel,
					KernelFull: k.KernelFull, RTKernel: k.RTKernel, RHEL: k.RHEL, State: state.KernelNew, FirstSeen: p.now}}
			}
			before := e
			e.Releases, e.DTKImage = k.Releases, k.PinnedImage()
			p.advanceConsumer(ctx, c, lc, &e)
			if !equalBuild(before, e) {
				e.UpdatedAt = p.now
				p.putConsumerBuild(e)
			}
		}
	}
}

// consumerLifecycle is a consumer image's lifecycle for kernel k.
func (p *pass) consumerLifecycle(c Consumer, k state.Kernel) (lifecycle, bool) {
	kernelRef, err := rebuild.KernelImage(c.Target, k)
	if err != nil {
		p.warn(fmt.Sprintf("consumer %s: %v", c.Name, err))
		return lifecycle{}, false
	}
	stagingRef, err := rebuild.StagingImage(c.Target, k)
	if err != nil {
		p.warn(fmt.Sprintf("consumer %s: %v", c.Name, err))
		return lifecycle{}, false
	}
	lc := lifecycle{what: "consumer " + c.Name + "'s image", consumer: c.Name, kernelRef: kernelRef, stagingRef: stagingRef, build: c.Build}
	tmpl := c.ModulePath
	if tmpl == "" {
		tmpl = DefaultModulePath
	}
	modulePath, err := rebuild.ModulePath(tmpl, k.Kernel, k.KernelFull)
	if err != nil {
		p.warn(fmt.Sprintf("consumer %s: %v", c.Name, err))
		return lifecycle{}, false
	}
	lc.verify = func(ctx context.Context, pinned string) error {
		return p.r.KmodVerifier.VerifyKmod(ctx, pinned, k.Arch, k.KernelFull, modulePath, c.Label)
	}
	return lc, true
}

// advanceConsumer moves one consumer build on as far as it goes this pass:
// looked for, asked for, looked for again (a synchronous builder has pushed
// by then), verified, promoted.
func (p *pass) advanceConsumer(ctx context.Context, c Consumer, lc lifecycle, e *state.ConsumerBuild) {
	for step := 0; step < 6; step++ {
		switch e.State {
		case state.KernelNew:
			if p.advance(ctx, &e.Kernel, lc) {
				continue // found: built, maybe verified already
			}
			if p.now.Before(e.NextAttemptAt) || !p.buildConsumer(ctx, c, lc, e) {
				return
			}
		case state.KernelBuildRequested:
			if !p.advance(ctx, &e.Kernel, lc) {
				return
			}
		case state.KernelBuilt:
			if !p.advance(ctx, &e.Kernel, lc) {
				return
			}
		case state.KernelVerified:
			if !p.promoteConsumer(ctx, c, lc, e) {
				return
			}
		case state.KernelPromoted:
			p.promoteConsumer(ctx, c, lc, e) // the tags of releases found since
			return
		default:
			return
		}
	}
}

// buildConsumer asks for a consumer's build, the intent recorded first. It
// reports whether a build was asked for.
func (p *pass) buildConsumer(ctx context.Context, c Consumer, lc lifecycle, e *state.ConsumerBuild) bool {
	a := rebuild.Action{Type: rebuild.ActionBuild, Kernel: e.Kernel.Kernel, Stream: e.Stream, Arch: e.Arch, Consumer: c.Name,
		Releases: e.Releases, Image: lc.stagingRef, Reason: "DTK promoted: " + e.DTKImage, KernelKey: e.Kernel.Key()}
	if e.Attempts > 0 {
		a.Reason = fmt.Sprintf("retry %d: %s", e.Attempts+1, e.Reason)
	}
	if p.opts.DryRun {
		p.action(a)
		return false
	}
	before := *e
	e.State, e.Image, e.Staging, e.BuildRequestedAt, e.UpdatedAt = state.KernelBuildRequested, lc.kernelRef, lc.stagingRef, p.now, p.now
	e.ImageDigest, e.Published = "", false
	e.Attempts++
	// Intent first: if we die after asking, the next pass waits for the
	// build instead of asking again.
	if err := p.recordConsumerBuild(*e, a, "requesting"); err != nil {
		p.fail(fmt.Errorf("recording the build of %s: %w", e.Key(), err))
		*e = before
		return false
	}
	req := rebuild.BuildRequest{Kernel: e.Kernel.Kernel, KernelFull: e.KernelFull, RTKernel: e.RTKernel, RHEL: e.RHEL, Stream: e.Stream,
		Arch: e.Arch, Image: lc.stagingRef, Releases: e.Releases, Consumer: c.Name, DTK: e.DTKImage}
	err := c.Builder.Build(ctx, req)
	a.Result = "requested"
	switch {
	case err == nil:
		p.log.Info().Str("consumer", c.Name).Str("kernel", e.Kernel.Kernel).Str("image", lc.stagingRef).Str("dtk", e.DTKImage).Msg("consumer build requested")
	case errors.Is(err, rebuild.ErrNotConfigured):
		*e = before
		a.Result = "skipped: " + err.Error()
	default:
		e.Reason = err.Error()
		p.attemptFailed(&e.Kernel, lc.build)
		a.Result = "error: " + err.Error()
		p.fail(fmt.Errorf("building %s: %w", e.Key(), err))
	}
	if err := p.recordConsumerBuild(*e, a, a.Result); err != nil {
		p.fail(err)
	}
	p.action(a)
	return a.Result == "requested"
}

// promoteConsumer puts a verified consumer image (pinned by digest) at its
// kernel tag and release tags; once the kernel tag holds it, it is promoted
// and its staging tag removed. It reports whether e moved on.
func (p *pass) promoteConsumer(ctx context.Context, c Consumer, lc lifecycle, e *state.ConsumerBuild) bool {
	if p.opts.DryRun {
		return false
	}
	refs := []struct{ ref, kind, release string }{{lc.kernelRef, state.TagKernel, first(e.Releases)}}
	releases := map[string]state.Release{}
	for _, rel := range p.view.releaseList("") {
		if rel.Arch == e.Arch {
			releases[rel.Version] = rel
		}
	}
	for _, v := range e.Releases {
		rel := releases[v]
		if rel.Withdrawn != "" || (rel.PreRelease() && !p.r.Policy.PrereleaseTags) {
			continue
		}
		for _, tmpl := range c.Target.ReleaseTags {
			tag, err := rebuild.RenderTag(tmpl, rebuild.TagData{Kernel: e.Kernel.Kernel, KernelFull: e.KernelFull, RTKernel: e.RTKernel, RHEL: e.RHEL,
				Release: v, Minor: watcher.Minor(v), Arch: e.Arch, Stream: e.Stream})
			if err != nil {
				p.warn(fmt.Sprintf("consumer %s: %v", c.Name, err))
				continue
			}
			refs = append(refs, struct{ ref, kind, release string }{c.Target.Repository + ":" + tag, state.TagRelease, v})
		}
	}
	failed := false
	for _, r := range refs {
		if pr, ok := p.view.promoted[r.ref]; ok && pr.Digest == e.ImageDigest {
			continue
		}
		a := rebuild.Action{Type: rebuild.ActionPromote, Kernel: e.Kernel.Kernel, Stream: e.Stream, Arch: e.Arch, Consumer: c.Name,
			Release: r.release, Tag: r.ref, Image: e.PinnedImage(), KernelKey: e.Kernel.Key(), Kind: r.kind}
		d, err := p.r.Promoter.Promote(ctx, a.Image, a.Tag)
		switch {
		case errors.Is(err, rebuild.ErrNotConfigured):
			a.Result, failed = "skipped: "+err.Error(), true
		case err != nil:
			a.Result, failed = "error: "+err.Error(), true
			p.fail(fmt.Errorf("promoting %s: %w", a.Tag, err))
		default:
			a.Result = "ok"
			p.putPromotion(state.Promotion{Ref: a.Tag, Digest: d, Release: r.release, Kernel: e.Kernel.Kernel, KernelKey: e.Kernel.Key(),
				Consumer: c.Name, Kind: r.kind, At: p.now}, a)
			if r.kind == state.TagKernel {
				e.Published = true
			}
		}
		p.action(a)
	}
	if e.State == state.KernelVerified && e.Published && !failed {
		e.State, e.PromotedAt = state.KernelPromoted, p.now
		if e.Staging != "" && p.r.Untagger != nil {
			if err := p.r.Untagger.Untag(ctx, e.Staging); err == nil {
				e.StagingRemoved = "removed"
			} else {
				e.StagingRemoved = "kept: " + err.Error()
			}
		}
		return true
	}
	return false
}

func equalBuild(a, b state.ConsumerBuild) bool {
	return a.State == b.State && a.Attempts == b.Attempts && a.ImageDigest == b.ImageDigest && a.Published == b.Published &&
		a.Reason == b.Reason && a.DTKImage == b.DTKImage && slices.Equal(a.Releases, b.Releases) && len(a.Rejections) == len(b.Rejections) &&
		a.StagingRemoved == b.StagingRemoved && a.Image == b.Image
}

// putConsumerBuild keeps a consumer build in the view and, unless dry, the store.
func (p *pass) putConsumerBuild(e state.ConsumerBuild) {
	p.mu.Lock()
	p.view.consumers[e.Key()] = e
	p.mu.Unlock()
	if p.opts.DryRun {
		return
	}
	if err := p.r.Store.Update(func(tx *state.Tx) error { return tx.PutConsumerBuild(e) }); err != nil {
		p.fail(fmt.Errorf("recording %s: %w", e.Key(), err))
	}
}

// recordConsumerBuild writes a consumer build and journals the action, in
// one transaction.
func (p *pass) recordConsumerBuild(e state.ConsumerBuild, a rebuild.Action, result string) error {
	p.mu.Lock()
	p.view.consumers[e.Key()] = e
	p.mu.Unlock()
	return p.r.Store.Update(func(tx *state.Tx) error {
		if err := tx.PutConsumerBuild(e); err != nil {
			return err
		}
		return journal(tx, p.now, a, result)
	})
}
