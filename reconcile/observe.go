package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dtkbot/dtkbot/rebuild"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/state"
)

// observe looks in the registry for the image of every kernel still awaited
// and moves the ledger on: an image that appeared at the staging reference
// (or, for a kernel never built by this state file, already at its kernel
// tag) is built, then verified; a build that did not appear in time is
// retried or failed. Kernels built and verified are not looked at: the
// steady state costs no request.
//
// Kernels are looked at concurrently (a backfill finds hundreds), as many at
// once as the registry client has calls in flight.
func (p *pass) observe(ctx context.Context) {
	var awaited []state.Kernel
	for _, k := range p.view.kernelList("") {
		switch k.State {
		case state.KernelBuilt, state.KernelNew, state.KernelBuildRequested:
			awaited = append(awaited, k)
		}
	}
	slots := make(chan struct{}, max(p.r.Concurrency, 1))
	var wg sync.WaitGroup
	for _, k := range awaited {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			changed := false
			switch k.State {
			case state.KernelBuilt:
				changed = p.r.Verifier != nil && p.verify(ctx, &k)
			default:
				changed = p.lookForImage(ctx, &k)
				if changed && k.State == state.KernelBuilt && p.r.Verifier != nil {
					p.verify(ctx, &k)
				}
			}
			if changed {
				k.UpdatedAt = p.now
				p.putKernel(k)
			}
		})
	}
	wg.Wait()
}

// lookForImage HEADs the references a kernel's image may be at: for a new
// kernel first its kernel tag (the image may be there from before the state
// file, or be someone else's), then the staging reference its build pushes
// to. Images that failed verification before do not count. It reports
// whether k changed.
func (p *pass) lookForImage(ctx context.Context, k *state.Kernel) bool {
	kernelRef, err := rebuild.KernelImage(p.r.Target, *k)
	if err != nil {
		return false // Plan holds it with the reason
	}
	stagingRef, err := rebuild.StagingImage(p.r.Target, *k)
	if err != nil {
		return false
	}
	if k.State == state.KernelNew {
		p.checked()
		d, err := p.r.Checker.Digest(ctx, kernelRef)
		_, rejected := k.Rejected(d.String())
		switch {
		case err == nil && !rejected:
			k.State, k.Image, k.Staging, k.ImageDigest, k.Reason = state.KernelBuilt, kernelRef, "", d.String(), ""
			p.log.Info().Str("kernel", k.Kernel).Str("image", kernelRef).Str("digest", d.String()).Msg("kernel tag already holds an image: verifying it")
			return true
		case err != nil && !errors.Is(err, registry.ErrNotFound):
			p.fail(fmt.Errorf("checking the kernel tag of %s: %w", k.Key(), err))
			return false
		}
	}
	p.checked()
	d, err := p.r.Checker.Digest(ctx, stagingRef)
	before, rejected := k.Rejected(d.String())
	rejected = rejected && err == nil
	switch {
	case err == nil && !rejected:
		k.State, k.Image, k.Staging, k.ImageDigest, k.Reason = state.KernelBuilt, kernelRef, stagingRef, d.String(), ""
		p.log.Info().Str("kernel", k.Kernel).Str("image", stagingRef).Str("digest", d.String()).Msg("kernel image built")
		return true
	case rejected && before.Untagged && k.State == state.KernelBuildRequested && before.At.Before(k.BuildRequestedAt):
		// The rejected image's tag was removed, and a later build pushed
		// the very same image again: that attempt failed as well.
		k.Staging, k.ImageDigest = stagingRef, d.String()
		p.reject(ctx, k, fmt.Errorf("%w: the build pushed %s again, which failed verification before: %s", rebuild.ErrWrongKernel, d, before.Reason))
		p.action(rebuild.Action{Type: rebuild.ActionVerify, Kernel: k.Kernel, Stream: k.Stream, Arch: k.Arch,
			Image: stagingRef, KernelKey: k.Key(), Result: "rejected: pushed the rejected image again"})
		return true
	case err != nil && !errors.Is(err, registry.ErrNotFound):
		p.fail(fmt.Errorf("checking the staging image of %s: %w", k.Key(), err))
		return false
	case k.State == state.KernelBuildRequested && p.now.Sub(k.BuildRequestedAt) > p.r.Build.Timeout:
		k.Reason = fmt.Sprintf("the build requested at %s did not appear within %s", k.BuildRequestedAt.UTC().Format(time.RFC3339), p.r.Build.Timeout)
		if rejected {
			k.Reason += fmt.Sprintf(" (%s still holds the image rejected before, %s)", stagingRef, d)
		}
		if k.Attempts >= p.r.Build.MaxAttempts {
			k.State = state.KernelFailed
			k.Reason += fmt.Sprintf(" (%d attempts)", k.Attempts)
		} else {
			k.State = state.KernelNew
			k.NextAttemptAt = p.now.Add(p.r.backoff(k.Attempts))
		}
		return true
	}
	return false
}

// verify checks a built image by digest. A verified image at the staging
// reference waits for promotion; one found at the kernel tag is adopted
// there. An image carrying another kernel is rejected (see reject); a read
// error leaves k built for the next pass. It reports whether k changed.
func (p *pass) verify(ctx context.Context, k *state.Kernel) bool {
	pinned := k.PinnedImage()
	a := rebuild.Action{Type: rebuild.ActionVerify, Kernel: k.Kernel, Stream: k.Stream, Arch: k.Arch, Image: pinned, KernelKey: k.Key()}
	err := p.r.Verifier.Verify(ctx, pinned, k.Kernel, k.Arch)
	switch {
	case err == nil:
		k.State, k.Reason = state.KernelVerified, ""
		a.Result = "verified"
		p.log.Info().Str("kernel", k.Kernel).Str("image", pinned).Msg("kernel image verified")
		if k.Staging == "" {
			// Found at the kernel tag and verified: the tag is dtkbot's now.
			k.Published = true
			a.Tag, a.Kind = k.Image, state.TagKernel
			p.putPromotion(state.Promotion{Ref: k.Image, Digest: k.ImageDigest, Release: first(k.Releases), Kernel: k.Kernel,
				KernelKey: k.Key(), Kind: state.TagKernel, At: p.now}, a)
		}
	case errors.Is(err, rebuild.ErrWrongKernel):
		p.reject(ctx, k, err)
		a.Result = "rejected: " + err.Error()
	default:
		p.fail(err)
		return false
	}
	p.action(a)
	return true
}

// reject records a built image that failed verification. It is never
// promoted, and never taken for the kernel's image again. A build is retried
// after the backoff while attempts remain; an image someone else put at the
// kernel tag fails the kernel, as dtkbot never overwrites a tag it did not
// promote. The staging tag is removed where the registry allows, so the
// retry pushes to a clean tag.
func (p *pass) reject(ctx context.Context, k *state.Kernel, err error) {
	p.mu.Lock()
	p.res.Rejected++
	p.mu.Unlock()
	k.Rejections = append(k.Rejections, state.Rejection{Digest: k.ImageDigest, Image: k.PinnedImage(), Reason: err.Error(), At: p.now})
	staging := k.Staging
	p.log.Error().Str("kernel", k.Kernel).Str("image", k.PinnedImage()).Err(err).Msg("built image carries the wrong kernel: not promoted")
	switch {
	case staging == "":
		k.State = state.KernelFailed
		k.Reason = fmt.Sprintf("the kernel tag %s holds %s, which dtkbot did not promote and which fails verification (%v); dtkbot never overwrites a tag it did not promote: remove the tag, then run dtkbot reconcile --retry-failed", k.Image, k.ImageDigest, err)
		p.fail(errors.New(k.Reason))
	case k.Attempts >= p.r.Build.MaxAttempts:
		k.State = state.KernelFailed
		k.Reason = fmt.Sprintf("verification failed (%d attempts): %v", k.Attempts, err)
		p.fail(err)
	default:
		k.State = state.KernelNew
		k.NextAttemptAt = p.now.Add(p.r.backoff(k.Attempts))
		k.Reason = fmt.Sprintf("the build of attempt %d failed verification, retrying: %v", k.Attempts, err)
		p.warn(k.Reason)
	}
	k.ImageDigest, k.Published = "", false
	if staging != "" && p.r.Untagger != nil && !p.opts.DryRun {
		if err := p.r.Untagger.Untag(ctx, staging); err != nil {
			p.log.Info().Str("tag", staging).Err(err).Msg("the rejected image stays at the staging tag")
		} else {
			k.Rejections[len(k.Rejections)-1].Untagged = true
		}
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
