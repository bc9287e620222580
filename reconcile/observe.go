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

// lifecycle is what an image's life in the ledger needs, for a kernel's DTK
// and for a consumer's image alike: where it is pushed and promoted, how it
// is verified, how its builds are retried.
type lifecycle struct {
	// what names the image in logs and reasons ("kernel image", "consumer
	// acme-nic's image").
	what string
	// consumer is set for a consumer's image.
	consumer              string
	kernelRef, stagingRef string
	build                 BuildPolicy
	// verify checks the image pinned by digest; an error wrapping
	// rebuild.ErrWrongKernel or rebuild.ErrNoModules rejects it. nil:
	// images are not verified.
	verify func(ctx context.Context, pinned string) error
}

// dtkLifecycle is a kernel's DTK image's lifecycle (false: its tags cannot be
// rendered; Plan holds it with the reason).
func (p *pass) dtkLifecycle(k state.Kernel) (lifecycle, bool) {
	kernelRef, err := rebuild.KernelImage(p.r.Target, k)
	if err != nil {
		return lifecycle{}, false
	}
	stagingRef, err := rebuild.StagingImage(p.r.Target, k)
	if err != nil {
		return lifecycle{}, false
	}
	lc := lifecycle{what: "kernel image", kernelRef: kernelRef, stagingRef: stagingRef, build: p.r.Build}
	if v := p.r.Verifier; v != nil {
		lc.verify = func(ctx context.Context, pinned string) error { return v.Verify(ctx, pinned, k.Kernel, k.Arch) }
	}
	return lc, true
}

// rejects reports whether a verification error is a verdict on the image.
func rejects(err error) bool {
	return errors.Is(err, rebuild.ErrWrongKernel) || errors.Is(err, rebuild.ErrNoModules)
}

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
		lc, ok := p.dtkLifecycle(k)
		if !ok {
			continue
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			if p.advance(ctx, &k, lc) {
				k.UpdatedAt = p.now
				p.putKernel(k)
			}
		})
	}
	wg.Wait()
}

// advance looks for an awaited image, and verifies one that is built. It
// reports whether k changed.
func (p *pass) advance(ctx context.Context, k *state.Kernel, lc lifecycle) bool {
	if k.State == state.KernelBuilt {
		return lc.verify != nil && p.verify(ctx, k, lc)
	}
	changed := p.lookForImage(ctx, k, lc)
	if changed && k.State == state.KernelBuilt && lc.verify != nil {
		p.verify(ctx, k, lc)
	}
	return changed
}

// lookForImage HEADs the references an image may be at: for a new entry
// first its kernel tag (the image may be there from before the state file,
// or be someone else's), then the staging reference its build pushes to.
// Images that failed verification before do not count. It reports whether
// k changed.
func (p *pass) lookForImage(ctx context.Context, k *state.Kernel, lc lifecycle) bool {
	if k.State == state.KernelNew {
		p.checked()
		d, err := p.r.Checker.Digest(ctx, lc.kernelRef)
		_, rejected := k.Rejected(d.String())
		switch {
		case err == nil && !rejected:
			k.State, k.Image, k.Staging, k.ImageDigest, k.Reason = state.KernelBuilt, lc.kernelRef, "", d.String(), ""
			p.log.Info().Str("kernel", k.Kernel).Str("consumer", lc.consumer).Str("image", lc.kernelRef).Str("digest", d.String()).
				Msgf("the kernel tag already holds a %s: verifying it", lc.what)
			return true
		case err != nil && !errors.Is(err, registry.ErrNotFound):
			p.fail(fmt.Errorf("checking the kernel tag of %s (%s): %w", k.Key(), lc.what, err))
			return false
		}
	}
	p.checked()
	d, err := p.r.Checker.Digest(ctx, lc.stagingRef)
	before, rejected := k.Rejected(d.String())
	rejected = rejected && err == nil
	switch {
	case err == nil && !rejected:
		k.State, k.Image, k.Staging, k.ImageDigest, k.Reason = state.KernelBuilt, lc.kernelRef, lc.stagingRef, d.String(), ""
		p.log.Info().Str("kernel", k.Kernel).Str("consumer", lc.consumer).Str("image", lc.stagingRef).Str("digest", d.String()).Msgf("%s built", lc.what)
		return true
	case rejected && before.Untagged && k.State == state.KernelBuildRequested && before.At.Before(k.BuildRequestedAt):
		// The rejected image's tag was removed, and a later build pushed
		// the very same image again: that attempt failed as well.
		k.Staging, k.ImageDigest = lc.stagingRef, d.String()
		p.reject(ctx, k, fmt.Errorf("%w: the build pushed %s again, which failed verification before: %s", rebuild.ErrWrongKernel, d, before.Reason), lc)
		p.action(rebuild.Action{Type: rebuild.ActionVerify, Kernel: k.Kernel, Stream: k.Stream, Arch: k.Arch, Consumer: lc.consumer,
			Image: lc.stagingRef, KernelKey: k.Key(), Result: "rejected: pushed the rejected image again"})
		return true
	case err != nil && !errors.Is(err, registry.ErrNotFound):
		p.fail(fmt.Errorf("checking the staging image of %s (%s): %w", k.Key(), lc.what, err))
		return false
	case k.State == state.KernelBuildRequested && p.now.Sub(k.BuildRequestedAt) > lc.build.Timeout:
		k.Reason = fmt.Sprintf("the build requested at %s did not appear within %s", k.BuildRequestedAt.UTC().Format(time.RFC3339), lc.build.Timeout)
		if rejected {
			k.Reason += fmt.Sprintf(" (%s still holds the image rejected before, %s)", lc.stagingRef, d)
		}
		if p.attemptFailed(k, lc.build) {
			k.Reason += fmt.Sprintf(" (%d attempts)", k.Attempts)
		}
		return true
	}
	return false
}

// verify checks a built image by digest. A verified image at the staging
// reference waits for promotion; one found at the kernel tag is adopted
// there. An image that fails is rejected (see reject); a read error leaves
// k built for the next pass. It reports whether k changed.
func (p *pass) verify(ctx context.Context, k *state.Kernel, lc lifecycle) bool {
	pinned := k.PinnedImage()
	a := rebuild.Action{Type: rebuild.ActionVerify, Kernel: k.Kernel, Stream: k.Stream, Arch: k.Arch, Consumer: lc.consumer, Image: pinned, KernelKey: k.Key()}
	err := lc.verify(ctx, pinned)
	switch {
	case err == nil:
		k.State, k.Reason = state.KernelVerified, ""
		a.Result = "verified"
		p.log.Info().Str("kernel", k.Kernel).Str("consumer", lc.consumer).Str("image", pinned).Msgf("%s verified", lc.what)
		if k.Staging == "" {
			// Found at the kernel tag and verified: the tag is dtkbot's now.
			k.Published = true
			a.Tag, a.Kind = k.Image, state.TagKernel
			p.putPromotion(state.Promotion{Ref: k.Image, Digest: k.ImageDigest, Release: first(k.Releases), Kernel: k.Kernel,
				KernelKey: k.Key(), Consumer: lc.consumer, Kind: state.TagKernel, At: p.now}, a)
		}
	case rejects(err):
		p.reject(ctx, k, err, lc)
		a.Result = "rejected: " + err.Error()
	default:
		p.fail(err)
		return false
	}
	p.action(a)
	return true
}

// reject records a built image that failed verification. It is never
// promoted, and never taken for the image again. A build is retried after
// the backoff while attempts remain; an image someone else put at the
// kernel tag fails the entry, as dtkbot never overwrites a tag it did not
// promote. The staging tag is removed where the registry allows, so the
// retry pushes to a clean tag.
func (p *pass) reject(ctx context.Context, k *state.Kernel, err error, lc lifecycle) {
	p.mu.Lock()
	p.res.Rejected++
	p.mu.Unlock()
	k.Rejections = append(k.Rejections, state.Rejection{Digest: k.ImageDigest, Image: k.PinnedImage(), Reason: err.Error(), At: p.now})
	staging := k.Staging
	p.log.Error().Str("kernel", k.Kernel).Str("consumer", lc.consumer).Str("image", k.PinnedImage()).Err(err).Msgf("the %s failed verification: not promoted", lc.what)
	switch {
	case staging == "":
		k.State = state.KernelFailed
		k.Reason = fmt.Sprintf("the kernel tag %s holds %s, which dtkbot did not promote and which fails verification (%v); dtkbot never overwrites a tag it did not promote: remove the tag, then run dtkbot reconcile --retry-failed", k.Image, k.ImageDigest, err)
		p.fail(errors.New(k.Reason))
	case p.attemptFailed(k, lc.build):
		k.Reason = fmt.Sprintf("verification failed (%d attempts): %v", k.Attempts, err)
		p.fail(err)
	default:
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
