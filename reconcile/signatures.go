package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/breaker"
	"github.com/dtkbot/dtkbot/guard"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/releaseinfo"
	"github.com/dtkbot/dtkbot/releasesig"
)

// SignatureSummary is what the signature checks of a pass found.
type SignatureSummary struct {
	Mode string `json:"mode"`
	// Trust is what signatures are verified with; empty means nothing, and
	// then every check says so (one warning per pass, not per release).
	Trust      string   `json:"trust"`
	Verified   int      `json:"verified"`
	Unverified []string `json:"unverified,omitempty"` // releases, in warn mode
	Unchecked  []string `json:"unchecked,omitempty"`  // releases whose store could not be read
	Held       []string `json:"held,omitempty"`       // releases not recorded (strict mode)
	// NotAsked counts the checks not made because the signature store had
	// stopped answering (Result.Services says after what).
	NotAsked int `json:"not_asked,omitempty"`
	// Rechecked counts recorded releases whose signature, not verified
	// before, was checked again (verify.recheck).
	Rechecked int `json:"rechecked,omitempty"`
}

// checking reports whether the pass checks signatures.
func (p *pass) checking() bool {
	r := p.r
	return r.Signatures != nil && r.SignatureMode != "" && r.SignatureMode != releasesig.ModeOff
}

// sigCheck is one payload digest's signature check, under way or done.
type sigCheck struct {
	done    chan struct{}
	verdict releasesig.Verdict
	err     error
}

// sigChecks are the pass's signature checks, by payload digest.
type sigChecks map[string]*sigCheck

// startSignatures checks the signatures of the payloads to inspect and of
// the recorded releases due for a recheck, Concurrency at a time, while
// the payloads are read: a payload's digest is known before it is
// inspected (graph nodes are pinned, tags resolved in discover). Each
// digest is checked once, whatever its arches.
func (p *pass) startSignatures(ctx context.Context, jobs []plan.Payload, rechecks []string) sigChecks {
	checks := sigChecks{}
	if !p.checking() {
		return checks
	}
	type want struct{ pullspec, digest string }
	var wants []want
	add := func(pullspec, d string) {
		if _, ok := checks[d]; ok || d == "" {
			return
		}
		checks[d] = &sigCheck{done: make(chan struct{})}
		wants = append(wants, want{pullspec, d})
	}
	for _, j := range jobs {
		add(j.Release.Pullspec, j.Release.Digest)
	}
	for _, key := range rechecks {
		rel, _ := p.book.release(key)
		add(rel.Pullspec, rel.Digest)
	}
	slots := make(chan struct{}, max(p.r.Concurrency, 1))
	for _, w := range wants {
		c := checks[w.digest]
		go func() {
			defer close(c.done)
			c.err = guard.Run(func() error {
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					return ctx.Err()
				}
				defer func() { <-slots }()
				var err error
				c.verdict, err = p.r.Signatures.Check(ctx, w.pullspec, digest.Digest(w.digest))
				return err
			})
		}()
	}
	return checks
}

// outcome waits for the check of digest d; a digest not started (a
// payload whose digest was learnt only by reading it) is checked now.
func (c sigChecks) outcome(ctx context.Context, p *pass, pullspec, d string) (releasesig.Verdict, error) {
	if sc, ok := c[d]; ok {
		<-sc.done
		return sc.verdict, sc.err
	}
	return p.r.Signatures.Check(ctx, pullspec, digest.Digest(d))
}

// checkSignature applies the signature policy (plan.Admit) to a newly read
// payload. It returns false when the payload must not be recorded: it is
// then held, and checked again once verify.recheck has passed (the store
// may be down now, or the signature published later).
func (p *pass) checkSignature(ctx context.Context, checks sigChecks, pl plan.Payload, rep *releaseinfo.Report, rel *ledger.Release) bool {
	if !p.checking() {
		return true
	}
	p.summaryStarted()
	v, err := checks.outcome(ctx, p, pl.Release.Pullspec, rep.Digest)
	strict := p.r.SignatureMode == releasesig.ModeStrict
	signature, held := plan.Admit(plan.SignatureCheck{Verified: v.Verified, By: v.By, Reason: v.Reason, Err: err, Strict: strict, New: true})
	rel.Signature, rel.SignatureCheckedAt = signature, p.now
	p.summarize(rep.Release, v, err, held != "")
	if held == "" {
		return true
	}
	if err != nil {
		p.out.fail(fmt.Errorf("checking the signature of %s: %w", rep.Release, err))
	}
	key := ledger.ReleaseKey(rep.Digest, rep.Arch)
	p.hold(ledger.HeldRelease{Version: rep.Release, Pullspec: pl.Release.Pullspec, Digest: rep.Digest, Arch: rep.Arch,
		Channels: pl.Release.Channels, Kind: plan.HeldSignature, Reason: held, Since: p.book.heldSince(key, p.now), SignatureCheckedAt: p.now})
	return false
}

// summarize counts a signature check of release in the pass's summary.
func (p *pass) summarize(release string, v releasesig.Verdict, err error, held bool) {
	if errors.Is(err, breaker.ErrOpen) {
		p.sig.NotAsked++
	}
	switch {
	case held:
		p.sig.Held = append(p.sig.Held, release)
	case err != nil:
		p.sig.Unchecked = append(p.sig.Unchecked, release)
		p.log.Debug().Str("release", release).Err(err).Msg("signature not checked")
	case !v.Verified:
		p.sig.Unverified = append(p.sig.Unverified, release)
		p.log.Debug().Str("release", release).Str("reason", v.Reason).Msg("payload signature does not verify")
	default:
		p.sig.Verified++
	}
}

// recheckSignatures records the new checks of recorded releases whose
// signature had not verified. Their record stays (they drive builds as
// before); what changes is what the record says, and when it was checked.
func (p *pass) recheckSignatures(ctx context.Context, checks sigChecks, keys []string) {
	for _, key := range keys {
		rel, _ := p.book.release(key)
		v, err := checks.outcome(ctx, p, rel.Pullspec, rel.Digest)
		p.summaryStarted()
		p.sig.Rechecked++
		p.summarize(rel.Version, v, err, false)
		rel.Signature, _ = plan.Admit(plan.SignatureCheck{Verified: v.Verified, By: v.By, Reason: v.Reason, Err: err})
		rel.SignatureCheckedAt = p.now
		if err == nil && v.Verified {
			p.log.Info().Str("release", rel.Version).Str("digest", rel.Digest).Msg("payload signature verified on a recheck")
		}
		if err := p.book.putRelease(rel); err != nil {
			p.out.fail(fmt.Errorf("recording release %s: %w", rel.Version, err))
		}
	}
}

// summaryStarted starts the pass's signature summary.
func (p *pass) summaryStarted() {
	if p.sig.Mode == "" {
		p.sig = SignatureSummary{Mode: p.r.SignatureMode, Trust: p.r.Signatures.Trust()}
	}
}

// sigWarnings says once per pass what the signature checks found wanting.
func (p *pass) sigWarnings() {
	s := p.sig
	switch {
	case s.Mode == "":
		return
	case s.Trust == "":
		p.out.warn(fmt.Sprintf("no payload signature can be verified (%v): %d payloads recorded unverified", releasesig.ErrNoTrust, len(s.Unverified)+len(s.Held)))
		return
	}
	if len(s.Unverified) > 0 {
		p.out.warn(fmt.Sprintf("%d payload signatures do not verify (verify.mode %s): %s", len(s.Unverified), s.Mode, list(s.Unverified)))
	}
	if len(s.Unchecked) > 0 {
		why := "the signature store failed"
		if s.NotAsked > 0 {
			why = fmt.Sprintf("the signature store stopped answering: %d not asked", s.NotAsked)
		}
		p.out.warn(fmt.Sprintf("%d payload signatures could not be checked (%s), checked again after verify.recheck: %s", len(s.Unchecked), why, list(s.Unchecked)))
	}
	if len(s.Held) > 0 {
		p.out.warn(fmt.Sprintf("%d payloads held until their signatures verify: %s", len(s.Held), list(s.Held)))
	}
}

// list names at most ten releases.
func list(releases []string) string {
	if len(releases) > 10 {
		return strings.Join(releases[:10], ", ") + fmt.Sprintf(" and %d more", len(releases)-10)
	}
	return strings.Join(releases, ", ")
}
