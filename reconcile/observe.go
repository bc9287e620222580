package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/breaker"
	"github.com/dtkbot/dtkbot/build"
	"github.com/dtkbot/dtkbot/guard"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/verify"
)

// refs are where one image is looked for: its kernel tag, and the staging
// reference its builds push to.
type refs struct{ kernel, staging string }

// refsOf renders an image's references (false: they cannot be rendered;
// the plan holds the image with the reason).
func (p *pass) refsOf(k *kind, m ledger.Image) (refs, bool) {
	kernel, err := plan.KernelImage(k.target, m)
	if err != nil {
		return refs{}, false
	}
	staging, err := plan.StagingImage(k.target, m)
	if err != nil {
		return refs{}, false
	}
	return refs{kernel, staging}, true
}

// awaited lists the images, of every kind, that the registry may have news
// of: new, requested, or built but not verified. Images verified or
// promoted are not looked at: the steady state costs no request.
func (p *pass) awaited() []string {
	var out []string
	for _, m := range p.view.imageList("") {
		switch m.State {
		case ledger.StateBuilt, ledger.StateNew, ledger.StateBuildRequested:
			out = append(out, m.Key())
		}
	}
	return out
}

// observe looks in the registry for each of the images keys names and moves
// the ledger on: an image that appeared at the staging reference (or, for
// an image never built by this state file, already at its kernel tag) is
// built, then verified; a build that did not appear in time is retried or
// failed. Images are looked at concurrently (a backfill finds hundreds), as
// many at once as the registry client has calls in flight.
func (p *pass) observe(ctx context.Context, keys []string) {
	slots := make(chan struct{}, max(p.r.Concurrency, 1))
	var wg sync.WaitGroup
	for _, key := range keys {
		m, ok := p.image(key)
		k := p.kinds[m.Kind()]
		if !ok || k == nil {
			continue
		}
		at, ok := p.refsOf(k, m)
		if !ok {
			continue
		}
		slots <- struct{}{}
		guard.Go(&wg, func() {
			defer func() { <-slots }()
			if p.advance(ctx, &m, k, at) {
				m.UpdatedAt = p.now
				p.putImage(m)
			}
		}, func(err error) { p.fail(fmt.Errorf("looking at %s (%s): %w", m.Key(), k.what, err)) })
	}
	wg.Wait()
}

// advance looks for an awaited image, and settles one that is built:
// pinned to its instance for its arch, then verified. It reports whether m
// changed.
func (p *pass) advance(ctx context.Context, m *ledger.Image, k *kind, at refs) bool {
	if m.State == ledger.StateBuilt {
		return p.settleBuilt(ctx, m, k)
	}
	changed := p.lookForImage(ctx, m, k, at)
	if changed && m.State == ledger.StateBuilt {
		p.settleBuilt(ctx, m, k)
	}
	return changed
}

// settleBuilt pins a built image to its instance for its arch, then
// verifies it (when its kind is verified). It reports whether m changed.
func (p *pass) settleBuilt(ctx context.Context, m *ledger.Image, k *kind) bool {
	pinned, ok := p.pinInstance(ctx, m, k)
	if !ok {
		return pinned
	}
	if k.verify == nil {
		return pinned
	}
	return p.verify(ctx, m, k) || pinned
}

// pinInstance makes a built image one image for its arch: when the tag it
// was found at holds a manifest list, ImageDigest becomes the list's
// instance for the image's arch, the only one verified and promoted (a
// list's other platforms would reach arch-less and floating tags
// unverified). A list without that instance is rejected, and so is a list
// found at the kernel tag, which dtkbot did not put there and whose other
// platforms it cannot vouch for. It reports whether m changed, and whether
// the image may go on (false: rejected, or not read now).
func (p *pass) pinInstance(ctx context.Context, m *ledger.Image, k *kind) (changed, ok bool) {
	if m.ListDigest != "" {
		return false, true // pinned already
	}
	found := m.PinnedImage()
	d, list, err := p.r.inspector(m.Arch).Instance(ctx, found)
	switch {
	case err == nil && !list:
		return false, true
	case err == nil && m.Staging == "":
		err = fmt.Errorf("%w: %s is a manifest list: only its %s image could be verified, and the kernel tag, which dtkbot did not put there, serves the others too", verify.ErrRejected, found, m.Arch)
	case err == nil:
		m.ListDigest, m.ImageDigest = m.ImageDigest, d.String()
		p.log.Info().Str("kernel", m.Kernel).Str("kind", k.name).Str("image", found).Str("instance", d.String()).
			Msgf("the %s is a manifest list: only its %s image is verified and promoted", k.what, m.Arch)
		return true, true
	}
	if !verify.Rejects(err) {
		p.fail(fmt.Errorf("reading the manifest of %s (%s): %w", found, k.what, err))
		return false, false
	}
	p.reject(ctx, m, fmt.Errorf("verifying %s: %w", found, err), k)
	p.action(plan.Action{Type: plan.ActionVerify, Kernel: m.Kernel, Stream: m.Stream, Arch: m.Arch, Consumer: m.Consumer,
		Image: found, KernelKey: m.KernelKey(), Result: "rejected: " + err.Error()})
	return true, false
}

// lookForImage HEADs the references an image may be at: for a new image
// first its kernel tag (the image may be there from before the state file,
// or be someone else's), then the staging reference its build pushes to.
// Images that failed verification before do not count. It reports whether
// m changed.
func (p *pass) lookForImage(ctx context.Context, m *ledger.Image, k *kind, at refs) bool {
	if m.State == ledger.StateNew {
		p.checked()
		d, err := p.r.Checker.Digest(ctx, at.kernel)
		_, rejected := m.Rejected(d.String())
		switch {
		case err == nil && !rejected && k.verify == nil:
			// Nothing checks this kind's images (build.verify: false): an
			// image someone else put at the kernel tag is not adopted, so
			// nothing unchecked is spread to release and floating tags.
			m.State, m.Image, m.Staging, m.ImageDigest, m.ListDigest, m.Adopted = ledger.StateFailed, at.kernel, "", "", "", false
			m.Reason = fmt.Sprintf("the kernel tag %s holds %s, which dtkbot did not put there, and %ss are not verified (build.verify: false): it is not adopted and no other tag is pointed at it; remove the tag (or turn verification on), then run dtkbot reconcile --retry-failed", at.kernel, d, k.what)
			p.fail(errors.New(m.Reason))
			return true
		case err == nil && !rejected:
			m.State, m.Image, m.Staging, m.ImageDigest, m.ListDigest, m.Adopted, m.Reason, m.Detail = ledger.StateBuilt, at.kernel, "", d.String(), "", false, "", ""
			p.log.Info().Str("kernel", m.Kernel).Str("kind", k.name).Str("image", at.kernel).Str("digest", d.String()).
				Msgf("the kernel tag already holds a %s: verifying it", k.what)
			return true
		case err != nil && !errors.Is(err, registry.ErrNotFound):
			p.fail(fmt.Errorf("checking the kernel tag of %s (%s): %w", m.Key(), k.what, err))
			return false
		}
	}
	p.checked()
	d, err := p.r.Checker.Digest(ctx, at.staging)
	before, rejected := m.Rejected(d.String())
	rejected = rejected && err == nil
	switch {
	case err == nil && !rejected:
		m.State, m.Image, m.Staging, m.ImageDigest, m.ListDigest, m.Adopted, m.Reason, m.Detail = ledger.StateBuilt, at.kernel, at.staging, d.String(), "", false, "", ""
		p.log.Info().Str("kernel", m.Kernel).Str("kind", k.name).Str("image", at.staging).Str("digest", d.String()).Msgf("%s built", k.what)
		return true
	case rejected && before.Untagged && m.State == ledger.StateBuildRequested && before.At.Before(m.BuildRequestedAt):
		// The rejected image's tag was removed, and a later build pushed
		// the very same image again: that attempt failed as well.
		m.Staging, m.ImageDigest, m.ListDigest = at.staging, d.String(), ""
		p.reject(ctx, m, fmt.Errorf("%w: the build pushed %s again, which failed verification before: %s", verify.ErrRejected, d, before.Reason), k)
		p.action(plan.Action{Type: plan.ActionVerify, Kernel: m.Kernel, Stream: m.Stream, Arch: m.Arch, Consumer: m.Consumer,
			Image: at.staging, KernelKey: m.KernelKey(), Result: "rejected: pushed the rejected image again"})
		return true
	case err != nil && !errors.Is(err, registry.ErrNotFound):
		p.fail(fmt.Errorf("checking the staging image of %s (%s): %w", m.Key(), k.what, err))
		return false
	case m.State == ledger.StateBuildRequested && m.Asked < m.Attempts && reports(k):
		// Recorded, never acknowledged: the pass died in between. Before
		// the timeout decides anything, the backend says whether it has
		// the build (askHowItWent asks again if it has no trace of it).
		return p.askHowItWent(ctx, m, k)
	case m.State == ledger.StateBuildRequested && p.now.Sub(m.BuildRequestedAt) > k.build.Timeout:
		m.Reason = fmt.Sprintf("the build requested at %s did not appear within %s", m.BuildRequestedAt.UTC().Format(time.RFC3339), k.build.Timeout)
		if rejected {
			m.Reason += fmt.Sprintf(" (%s still holds the image rejected before, %s)", at.staging, d)
		}
		if p.attemptFailed(m, k.build) {
			m.Reason += fmt.Sprintf(" (%d attempts)", m.Attempts)
		}
		return true
	case m.State == ledger.StateBuildRequested:
		return p.askHowItWent(ctx, m, k)
	}
	return false
}

func reports(k *kind) bool {
	_, ok := k.builder.(build.Reporter)
	return ok
}

// askHowItWent asks a backend that can say (a Kubernetes Job) how a build
// whose image has not appeared went: one that failed, or is gone, spends
// the attempt now rather than at build.timeout; one of which the backend
// has no trace, whose request was never acknowledged (the pass died
// between recording the attempt and asking), is asked again instead. It
// reports whether m changed.
func (p *pass) askHowItWent(ctx context.Context, m *ledger.Image, k *kind) bool {
	r, ok := k.builder.(build.Reporter)
	if !ok {
		return false
	}
	rep, err := r.Report(ctx, requestOf(*m))
	unacknowledged := m.Asked < m.Attempts
	switch {
	case err != nil:
		p.warn(fmt.Sprintf("asking how the build of %s (%s) goes: %v", m.Key(), k.what, err))
		return false
	case rep.Gone && unacknowledged:
		return p.askAgain(ctx, m, k)
	case !rep.Over && unacknowledged:
		m.Asked = m.Attempts // the backend has it: it was asked
		return true
	case !rep.Over:
		return false
	}
	m.Reason, m.Detail = build.ExplainReport(ctx, k.builder, rep)
	p.log.Warn().Str("kernel", m.Kernel).Str("kind", k.name).Str("detail", m.Detail).Msg(m.Reason)
	if p.attemptFailed(m, k.build) {
		m.Reason += fmt.Sprintf(" (%d attempts)", m.Attempts)
	}
	return true
}

// askAgain asks for the build of m's current attempt once more: the
// attempt was recorded (intent first), the pass died before the backend
// acknowledged it, and the backend has no trace of it. The backend names
// its builds by attempt (a Reporter does), so this is the request that was
// never made, not a second build; the attempt is not spent. It reports
// whether m changed.
func (p *pass) askAgain(ctx context.Context, m *ledger.Image, k *kind) bool {
	if p.opts.DryRun {
		return false
	}
	a := plan.Action{Type: plan.ActionBuild, Kernel: m.Kernel, Stream: m.Stream, Arch: m.Arch, Consumer: m.Consumer,
		Releases: m.Releases, Image: m.Staging, KernelKey: m.KernelKey(),
		Reason: fmt.Sprintf("attempt %d was recorded and never asked for", m.Attempts)}
	err := k.builder.Build(ctx, requestOf(*m))
	switch {
	case errors.Is(err, build.ErrNotConfigured), errors.Is(err, breaker.ErrOpen):
		// Nothing was asked this time either: the next pass tries again.
		p.fail(fmt.Errorf("building %s: %w", m.Key(), err))
		return false
	case err == nil:
		m.Asked, m.BuildRequestedAt = m.Attempts, p.now
		a.Result = "requested"
		p.log.Info().Str("kernel", m.Kernel).Str("kind", k.name).Str("image", m.Staging).Int("attempt", m.Attempts).
			Msgf("build of the %s requested again: its attempt was recorded, never asked for", k.what)
	default:
		m.Reason, m.Detail = build.Explain(ctx, k.builder, err)
		p.attemptFailed(m, k.build)
		a.Result = "error: " + m.Reason
		p.log.Error().Str("kernel", m.Kernel).Str("kind", k.name).Str("image", m.Staging).Str("detail", m.Detail).Msgf("the build of the %s failed", k.what)
		p.fail(fmt.Errorf("building %s: %s", m.Key(), m.Reason))
	}
	m.UpdatedAt = p.now
	if err := p.recordImage(*m, a, a.Result); err != nil {
		p.fail(err)
	}
	p.action(a)
	return true
}

// verify checks a built image by digest. A verified image at the staging
// reference waits for promotion; one found at the kernel tag is adopted
// there (Image.Adopted). An image that fails is rejected (see reject); a
// read error leaves m built for the next pass. The verification is
// recorded in the state before the image is read, and the record cleared
// with its outcome: an image whose verification was cut short by the
// process dying Reconciler.VerifyInterruptions times is rejected without
// being read again (a poison image fails instead of killing every
// process that reads it). It reports whether m changed.
func (p *pass) verify(ctx context.Context, m *ledger.Image, k *kind) bool {
	pinned := m.PinnedImage()
	a := plan.Action{Type: plan.ActionVerify, Kernel: m.Kernel, Stream: m.Stream, Arch: m.Arch, Consumer: m.Consumer, Image: pinned, KernelKey: m.KernelKey()}
	rec := ledger.Verification{Digest: m.ImageDigest, Since: p.now}
	if v := m.Verifying; v != nil && v.Digest == m.ImageDigest {
		rec.Since, rec.Interrupted = v.Since, v.Interrupted+1
		p.log.Warn().Str("kernel", m.Kernel).Str("kind", k.name).Str("image", pinned).Int("interrupted", rec.Interrupted).
			Msgf("the last verification of this %s did not end: the process died while it ran", k.what)
	}
	if limit := cmp.Or(p.r.VerifyInterruptions, DefaultVerifyInterruptions); rec.Interrupted >= limit {
		m.Verifying = nil
		err := fmt.Errorf("%w: verifying it stopped the process %d %s (out of memory, or killed, while reading it; first at %s): it is not read again",
			verify.ErrRejected, rec.Interrupted, plural(rec.Interrupted, "time", "times"), rec.Since.UTC().Format(time.RFC3339))
		p.reject(ctx, m, err, k)
		a.Result = "rejected: " + err.Error()
		p.action(a)
		return true
	}
	// Recorded before the image is read: if reading it kills the process,
	// the next one knows.
	m.Verifying = &rec
	p.putImage(*m)
	err := k.verify(ctx, pinned, m)
	m.Verifying = nil
	switch {
	case err == nil:
		m.State, m.Reason, m.Detail = ledger.StateVerified, "", ""
		a.Result = "verified"
		if m.Checked != "" {
			a.Result += " (" + m.Checked + ")"
		}
		p.log.Info().Str("kernel", m.Kernel).Str("kind", k.name).Str("image", pinned).Msgf("%s verified", k.what)
		if m.Staging == "" {
			// Found at the kernel tag and verified: adopted. The image may
			// get its other tags; the kernel tag stays its owner's (trust
			// rule 3): not a promotion of dtkbot's, never audited, moved
			// or removed.
			m.Published, m.Adopted = true, true
			a.Tag, a.Kind = m.Image, ledger.TagKernel
			a.Result += "; adopted at its kernel tag, which dtkbot did not write and never moves"
		}
	case verify.Rejects(err):
		// A verdict, or content that cannot change behind its digest: for
		// every kind alike, the image is rejected and the attempt spent.
		p.reject(ctx, m, err, k)
		a.Result = "rejected: " + err.Error()
	default:
		// It could not be read now: no verdict, and no interruption.
		p.putImage(*m)
		p.fail(err)
		return false
	}
	p.action(a)
	return true
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// reject records a built image that failed verification. It is never
// promoted, and never taken for the image again. A build is retried after
// the backoff while attempts remain; an image someone else put at the
// kernel tag fails the image, as dtkbot never overwrites a tag it did not
// promote. The staging tag is removed where the registry allows, so the
// retry pushes to a clean tag.
func (p *pass) reject(ctx context.Context, m *ledger.Image, err error, k *kind) {
	p.mu.Lock()
	p.res.Rejected++
	p.mu.Unlock()
	m.Rejections = append(m.Rejections, ledger.Rejection{Digest: m.ImageDigest, List: m.ListDigest, Image: m.PinnedImage(), Reason: err.Error(), At: p.now})
	staging := m.Staging
	p.log.Error().Str("kernel", m.Kernel).Str("kind", k.name).Str("image", m.PinnedImage()).Err(err).Msgf("the %s failed verification: not promoted", k.what)
	switch {
	case staging == "":
		m.State = ledger.StateFailed
		m.Reason = fmt.Sprintf("the kernel tag %s holds %s, which dtkbot did not promote and which fails verification (%v); dtkbot never overwrites a tag it did not promote: remove the tag, then run dtkbot reconcile --retry-failed", m.Image, m.ImageDigest, err)
		p.fail(errors.New(m.Reason))
	case p.attemptFailed(m, k.build):
		m.Reason = fmt.Sprintf("verification failed (%d attempts): %v", m.Attempts, err)
		p.fail(err)
	default:
		m.Reason = fmt.Sprintf("the build of attempt %d failed verification, retrying: %v", m.Attempts, err)
		p.warn(m.Reason)
	}
	rejected := m.FoundDigest()
	m.ImageDigest, m.ListDigest, m.Published, m.Adopted = "", "", false, false
	// The staging tag goes through promote's one guarded removal: it goes
	// only while it holds the rejected image, and a registry that deletes
	// the manifest with it gets back any tag that named it.
	if staging != "" && p.tags != nil && !p.opts.DryRun {
		outcome, err := p.tags.RemoveStaging(ctx, staging, digest.Digest(rejected), p.tagsHolding(staging, rejected))
		switch {
		case err != nil:
			p.log.Info().Str("tag", staging).Err(err).Msg("the rejected image stays at the staging tag")
		case strings.HasPrefix(outcome, "removed") || outcome == "already gone":
			m.Rejections[len(m.Rejections)-1].Untagged = true
		default:
			p.log.Info().Str("tag", staging).Msg("the rejected image's staging tag: " + outcome)
		}
	}
}
