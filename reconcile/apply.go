package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/breaker"
	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/guard"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/promote"
	"github.com/dtkbot/dtkbot/verify"
)

// applied is what applying a plan's changes did: whether anything moved
// (the next round may have more to do), and the images the next round
// looks at (a build asked for, an image added).
type applied struct {
	moved bool
	look  []string
}

// apply carries out what the plan decided, in its order: the records it
// changed, then its actions, each once in a pass. Verifications run at
// once, Concurrency at a time; every other action in turn. What came of
// each reported action is in the result. A dry run keeps the records in
// memory only, and reports the actions without taking any.
func (p *pass) apply(ctx context.Context, c plan.Changes) applied {
	var out applied
	for _, rc := range c.Releases {
		p.releaseChanged(rc)
		out.moved = true
	}
	for _, ch := range c.Images {
		if _, known := p.book.image(ch.Image.Key()); !known {
			out.look = append(out.look, ch.Image.Key())
		}
		p.imageChanged(ch)
		out.moved = true
	}
	if p.opts.DryRun {
		p.out.planned(c.Actions)
		return applied{}
	}
	for i := 0; i < len(c.Actions); {
		n := 1
		if c.Actions[i].Type == plan.ActionVerify {
			for i+n < len(c.Actions) && c.Actions[i+n].Type == plan.ActionVerify {
				n++
			}
		}
		batch := c.Actions[i : i+n]
		for j, o := range p.carryOut(ctx, batch) {
			a := batch[j]
			p.done.Actions[a.Key()] = true
			p.out.took(a, o)
			out.moved = out.moved || o.moved()
			if a.Type == plan.ActionBuild && o.status == done {
				out.look = append(out.look, a.ImageKey())
			}
		}
		i += n
	}
	slices.Sort(out.look)
	out.look = slices.Compact(out.look)
	return out
}

// carryOut does actions: one, or verifications at once, each in a
// worker of its own whose panic fails its image only.
func (p *pass) carryOut(ctx context.Context, actions []plan.Action) []outcome {
	out := make([]outcome, len(actions))
	if actions[0].Type != plan.ActionVerify {
		out[0] = p.do(ctx, actions[0])
		return out
	}
	guard.Each(p.r.Concurrency, len(actions), func(i int) {
		out[i] = p.do(ctx, actions[i])
	}, func(i int, err error) {
		err = fmt.Errorf("verifying %s: %w", actions[i].Image, err)
		p.out.fail(err)
		out[i] = failure(err.Error())
	})
	return out
}

// do carries out one action.
func (p *pass) do(ctx context.Context, a plan.Action) outcome {
	switch a.Type {
	case plan.ActionHold:
		return outcome{held, "held"}
	case plan.ActionBuild:
		return p.build(ctx, a)
	case plan.ActionVerify:
		return p.verify(ctx, a)
	case plan.ActionPromote:
		o := p.promote(ctx, a)
		if o.status == failed {
			p.done.PromoteFailed[a.ImageKey()] = true // not promoted before the next pass
		}
		return o
	case plan.ActionUnstage:
		return p.unstage(ctx, a)
	case plan.ActionForget:
		return p.forget(a, "forgotten: "+a.Reason)
	case plan.ActionWithdraw:
		return p.withdraw(ctx, a)
	case plan.ActionAudit:
		return p.repoint(ctx, a)
	}
	err := fmt.Errorf("no way to carry out a %s action", a.Type)
	p.out.fail(err)
	return failure(err.Error())
}

// imageChanged keeps an image's record as the plan changed it, and says
// what it said.
func (p *pass) imageChanged(c plan.Change) {
	m := c.Image
	if err := p.book.putImage(m, p.now, nil, ""); err != nil {
		p.out.fail(fmt.Errorf("recording %s: %w", m.Key(), err))
	}
	for _, s := range c.Says {
		p.log.Info().Str("kernel", m.Kernel).Str("kind", m.Kind()).Str("state", m.State).Msg(s)
	}
	if c.Fails != "" {
		p.out.fail(errors.New(c.Fails))
	}
	if c.Warns != "" {
		p.out.warn(c.Warns)
	}
}

// releaseChanged keeps a release's record as the plan changed it.
func (p *pass) releaseChanged(c plan.ReleaseChange) {
	if err := p.book.putRelease(c.Release); err != nil {
		p.out.fail(fmt.Errorf("recording release %s: %w", c.Release.Version, err))
	}
	if c.Says != "" {
		p.log.Info().Str("release", c.Release.Version).Msg(c.Says)
	}
	if c.Warns != "" {
		p.out.warn(c.Warns)
	}
}

// subject is the image an action is about, and its kind.
func (p *pass) subject(a plan.Action) (ledger.Image, *kind, error) {
	m, ok := p.book.image(a.ImageKey())
	k := p.kinds[m.Kind()]
	if !ok || k == nil {
		return m, nil, fmt.Errorf("%s %s: no such image of a kind configured", a.Type, a.ImageKey())
	}
	return m, k, nil
}

// keep records m (journaling a with result when a is not nil); an error
// fails the pass.
func (p *pass) keep(m ledger.Image, a *plan.Action, result string) {
	if err := p.book.putImage(m, p.now, a, result); err != nil {
		p.out.fail(fmt.Errorf("recording %s: %w", m.Key(), err))
	}
}

// build asks for a build of an image's next attempt, to its staging
// reference, recording the intent before the backend is asked (a process
// that dies after asking waits for that build instead of asking again) and
// what the backend answered after.
func (p *pass) build(ctx context.Context, a plan.Action) outcome {
	before, k, err := p.subject(a)
	if err != nil {
		p.out.fail(err)
		return failure(err.Error())
	}
	if a.Again {
		return p.buildAgain(ctx, a, before, k)
	}
	m := before
	if err := m.Request(a.KernelTag, a.Image, p.now); err != nil {
		p.out.fail(err)
		return failure(err.Error())
	}
	// Intent first: if we die after asking for the build, the next pass
	// waits for it instead of asking again.
	if err := p.book.putImage(m, p.now, &a, "requesting"); err != nil {
		p.out.fail(fmt.Errorf("recording the build of %s: %w", a.ImageKey(), err))
		return failure(err.Error())
	}
	err = k.builder.Build(ctx, requestOf(m, p.kinds))
	var o outcome
	switch {
	case err == nil:
		o = did("requested")
		if err := m.Acknowledge(p.now); err != nil {
			p.out.fail(err)
		}
		p.log.Info().Str("kernel", m.Kernel).Str("kind", k.name).Str("image", a.Image).Msgf("build of the %s requested", k.what)
	case errors.Is(err, builder.ErrNotConfigured):
		m, o = before, skip(err.Error()) // nothing was asked: the image stays as it was
	case errors.Is(err, breaker.ErrOpen):
		// The build service stopped answering in this pass: nothing was
		// asked, so no attempt is spent; the next pass asks again.
		m, o = before, skip(err.Error())
		p.out.fail(fmt.Errorf("building %s: %w", a.ImageKey(), err))
	default:
		o = p.buildFailed(ctx, &m, k, a, err)
	}
	p.keep(m, &a, o.text)
	return o
}

// buildAgain asks for the build of an image's current attempt once more:
// the attempt was recorded (intent first), the pass died before the
// backend acknowledged it, and the backend has no trace of it. The backend
// names its builds by attempt (a Reporter does), so this is the request
// that was never made, not a second build; the attempt is not spent.
func (p *pass) buildAgain(ctx context.Context, a plan.Action, m ledger.Image, k *kind) outcome {
	err := k.builder.Build(ctx, requestOf(m, p.kinds))
	var o outcome
	switch {
	case errors.Is(err, builder.ErrNotConfigured), errors.Is(err, breaker.ErrOpen):
		// Nothing was asked this time either: the next pass tries again.
		p.out.fail(fmt.Errorf("building %s: %w", m.Key(), err))
		return skip(err.Error())
	case err == nil:
		o = did("requested")
		if err := m.AskedAgain(p.now); err != nil {
			p.out.fail(err)
		}
		p.log.Info().Str("kernel", m.Kernel).Str("kind", k.name).Str("image", m.Staging).Int("attempt", m.Attempts).
			Msgf("build of the %s requested again: its attempt was recorded, never asked for", k.what)
	default:
		o = p.buildFailed(ctx, &m, k, a, err)
	}
	p.keep(m, &a, o.text)
	return o
}

// buildFailed ends an attempt whose request the backend refused, as the
// plan said a failed attempt ends. The reason is public (issues, /status,
// the page); the build's own words stay in the log and the state file.
func (p *pass) buildFailed(ctx context.Context, m *ledger.Image, k *kind, a plan.Action, err error) outcome {
	reason, detail := builder.Explain(ctx, k.builder, err)
	if err := m.AttemptFailed(reason, detail, a.IfFailed, p.now); err != nil {
		p.out.fail(err)
	}
	p.log.Error().Str("kernel", m.Kernel).Str("kind", k.name).Str("image", a.Image).Str("detail", detail).Msgf("the build of the %s failed", k.what)
	p.out.fail(fmt.Errorf("building %s: %s", a.ImageKey(), reason))
	return failure(reason)
}

// verify checks a built image by digest, or rejects it, unread, with the
// plan's own verdict. The verification is recorded in the state before
// the image is read (ledger.Image.BeginVerifying), and cleared with its
// outcome. A verified image at the staging reference waits for promotion;
// one found at the kernel tag is adopted there. One that fails is rejected
// (see reject); one that could not be read stays built for the next pass.
func (p *pass) verify(ctx context.Context, a plan.Action) outcome {
	m, k, err := p.subject(a)
	if err != nil {
		p.out.fail(err)
		return failure(err.Error())
	}
	if a.Verdict != "" {
		return p.reject(ctx, m, k, a, a.Verdict)
	}
	if n := a.Verification.Interrupted; n > 0 {
		p.log.Warn().Str("kernel", m.Kernel).Str("kind", k.name).Str("image", a.Image).Int("interrupted", n).
			Msgf("the last verification of this %s did not end: the process died while it ran", k.what)
	}
	// Recorded before the image is read: if reading it kills the process,
	// the next one knows.
	if err := m.BeginVerifying(a.Verification, p.now); err != nil {
		p.out.fail(err)
		return failure(err.Error())
	}
	p.keep(m, nil, "")
	v, err := k.verify(ctx, a.Image, m)
	switch {
	case verify.Rejects(err):
		// A verdict, or content that cannot change behind its digest: for
		// every kind alike, the image is rejected and the attempt spent.
		return p.reject(ctx, m, k, a, err.Error())
	case err != nil:
		// It could not be read now: no verdict, and no interruption.
		if err := m.Inconclusive(p.now); err != nil {
			p.out.fail(err)
		}
		p.keep(m, nil, "")
		p.out.fail(err)
		return failure(err.Error())
	}
	return p.verified(m, k, a, v)
}

// verified records an image that passed verification: at its staging
// reference, it waits for promotion; found at its kernel tag, it is
// adopted there. The image may get its other tags; the kernel tag stays
// its owner's (trust rule 3): not a promotion of dtkbot's, never audited,
// moved or removed.
func (p *pass) verified(m ledger.Image, k *kind, a plan.Action, v ledger.Verdict) outcome {
	text, transition := "verified", m.Adopt
	if m.Staging != "" {
		transition = m.Verified
	}
	if err := transition(v, p.now); err != nil {
		p.out.fail(err)
		return failure(err.Error())
	}
	if m.Checked != "" {
		text += " (" + m.Checked + ")"
	}
	if m.Adopted {
		text += "; adopted at its kernel tag, which dtkbot did not write and never moves"
	}
	p.log.Info().Str("kernel", m.Kernel).Str("kind", k.name).Str("image", a.Image).Msgf("%s verified", k.what)
	p.keep(m, nil, "")
	return did(text)
}

// reject records a built image that failed verification (reason): never
// promoted, and never taken for the image again; what comes of the attempt
// is the plan's (a.IfFailed). Its staging tag is removed where the
// registry allows, so a retry pushes to a clean tag.
func (p *pass) reject(ctx context.Context, m ledger.Image, k *kind, a plan.Action, reason string) outcome {
	p.out.count(func(res *Result) { res.Rejected++ })
	p.log.Error().Str("kernel", m.Kernel).Str("kind", k.name).Str("image", m.PinnedImage()).Str("reason", reason).Msgf("the %s failed verification: not promoted", k.what)
	staging := m.Staging
	_, found, err := m.Reject(reason, a.IfFailed, p.now)
	if err != nil {
		p.out.fail(err)
		return failure(err.Error())
	}
	switch {
	case staging == "":
		p.out.fail(errors.New(m.Reason))
	case a.IfFailed.Never:
		p.out.fail(errors.New(reason))
	default:
		p.out.warn(m.Reason)
	}
	// The staging tag goes through promote's one guarded removal: it goes
	// only while it holds the rejected image, and a registry that deletes
	// the manifest with it gets back any tag that named it.
	if staging != "" && p.tags != nil {
		outcome, err := p.tags.RemoveStaging(ctx, staging, digest.Digest(found), p.book.tagsHolding(staging, found))
		switch {
		case err != nil:
			p.log.Info().Str("tag", staging).Err(err).Msg("the rejected image stays at the staging tag")
		case strings.HasPrefix(outcome, "removed") || outcome == "already gone":
			m.Untagged(p.now)
		default:
			p.log.Info().Str("tag", staging).Msg("the rejected image's staging tag: " + outcome)
		}
	}
	p.keep(m, nil, "")
	return rejection(reason)
}

// promote writes one tag through promote.Tags, which keeps the rules: a
// tag other than the kernel tag only after the kernel tag holds the image
// in this pass, and never over a tag dtkbot did not promote.
func (p *pass) promote(ctx context.Context, a plan.Action) outcome {
	if p.tags == nil {
		return skip("promotion is not configured (target.repository)")
	}
	d, err := p.tags.Promote(ctx, a.Image, a.Tag, a.After)
	var c *promote.ConflictError
	switch {
	case errors.As(err, &c):
		p.conflict(a, c)
		return outcome{conflict, "conflict: " + err.Error()}
	case errors.Is(err, promote.ErrUnconfirmed):
		return skip(err.Error())
	case err != nil:
		p.out.fail(fmt.Errorf("promoting %s: %w", a.Tag, err))
		return failure(err.Error())
	}
	pr := ledger.Promotion{Ref: a.Tag, Digest: d.String(), Release: a.Release, Kernel: a.Kernel, KernelKey: a.KernelKey,
		Consumer: a.Consumer, Kind: a.Kind, At: p.now}
	if err := p.book.promote(pr, p.now, a, "ok"); err != nil {
		p.out.fail(fmt.Errorf("recording the promotion of %s: %w", pr.Ref, err))
	}
	if m, ok := p.book.image(a.ImageKey()); ok {
		changed := m.Resolved(a.Tag, p.now)
		if a.After == "" && a.Tag == m.Image && m.KernelTagHolds(d.String(), p.now) {
			changed = true
		}
		if changed {
			p.keep(m, nil, "")
		}
	}
	if a.Kind == ledger.TagRelease {
		p.tagged(a.Release, a.Arch)
	}
	p.log.Info().Str("release", a.Release).Str("tag", a.Tag).Str("digest", d.String()).Str("consumer", a.Consumer).Msg("promoted")
	return did("ok")
}

// conflict records a tag dtkbot will not write on the image that wanted
// it: reported on /status, the kernel's issue and a metric, and tried
// again (one HEAD) on later passes.
func (p *pass) conflict(a plan.Action, c *promote.ConflictError) {
	p.out.count(func(res *Result) { res.Conflicts = append(res.Conflicts, c.Error()) })
	p.log.Warn().Str("tag", a.Tag).Str("holds", c.Has.String()).Str("consumer", a.Consumer).Msg("tag conflict: not overwritten")
	if m, ok := p.book.image(a.ImageKey()); ok && m.Conflict(ledger.Conflict{Tag: a.Tag, Digest: c.Has.String(), Want: c.Want.String(), Since: p.now}) {
		p.keep(m, nil, "")
	}
}

// tagged notes when a release first got a tag: the end of its lead time.
func (p *pass) tagged(version, arch string) {
	for _, rel := range p.book.releaseList(version) {
		if rel.Arch == arch && rel.Tagged(p.now) {
			if err := p.book.putRelease(rel); err != nil {
				p.out.fail(fmt.Errorf("recording release %s: %w", rel.Version, err))
			}
		}
	}
}

// unstage removes a promoted image's staging tag (best effort: a registry
// that does not delete tags keeps it, and that is recorded) through
// promote's one guarded removal, which puts back whatever the registry
// deleted with it.
func (p *pass) unstage(ctx context.Context, a plan.Action) outcome {
	m, _, err := p.subject(a)
	switch {
	case err != nil:
		p.out.fail(err)
		return failure(err.Error())
	case p.tags == nil:
		return skip("promotion is not configured (target.repository)")
	}
	keep := append([]string{m.Image}, p.book.tagsHolding(m.Staging, m.ImageDigest)...)
	slices.Sort(keep)
	outcome, err := p.tags.RemoveStaging(ctx, m.Staging, digest.Digest(m.FoundDigest()), slices.Compact(keep))
	if err != nil {
		// Not a failure of the pass (consumers never read it), but not
		// done: reported, and tried again on the next pass.
		p.out.deferred(fmt.Errorf("removing the staging tag %s (tried again next pass): %w", m.Staging, err), "removing the staging tag: trying again next pass")
		return failure(err.Error())
	}
	if outcome != "removed" {
		p.log.Info().Str("tag", m.Staging).Msg("the staging tag: " + outcome)
	}
	m.StagingGone(outcome, p.now)
	p.keep(m, nil, "")
	return did(outcome)
}

// forget forgets a tag dtkbot promoted, journaling why (result).
func (p *pass) forget(a plan.Action, result string) outcome {
	if err := p.book.forget(a.Tag, p.now, a, result); err != nil {
		p.out.fail(fmt.Errorf("forgetting the promotion of %s: %w", a.Tag, err))
		return failure(err.Error())
	}
	return did(result)
}

// withdraw removes (or reports) a tag dtkbot promoted for a withdrawn
// pre-release, only while it still holds what dtkbot put there
// (promote.Tags.Remove).
func (p *pass) withdraw(ctx context.Context, a plan.Action) outcome {
	pr, ok := p.book.owned(a.Tag)
	if !a.Remove || p.tags == nil || !ok {
		p.out.warn(fmt.Sprintf("tag %s of withdrawn pre-release %s stays (prerelease.on_withdrawn: report)", a.Tag, a.Release))
		return reportedAs("reported")
	}
	outcome, err := p.tags.Remove(ctx, a.Tag, p.book.tagsHolding(a.Tag, pr.Digest))
	var c *promote.ConflictError
	switch {
	case err == nil:
		// Removed (or kept by a registry that does not delete tags): not
		// ours to keep up any more.
		return p.forget(a, outcome)
	case errors.As(err, &c):
		// Someone moved it since: it is theirs now, and stays.
		p.out.warn(fmt.Sprintf("tag %s of withdrawn pre-release %s: %v", a.Tag, a.Release, err))
		return p.forget(a, "kept: "+err.Error())
	}
	p.out.fail(fmt.Errorf("withdrawing %s: %w", a.Tag, err))
	return failure(err.Error())
}
