package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

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

// signing is a pass's signature checks: started while the payloads are
// read, each outcome admitted by the plan, summed up.
type signing struct {
	r       *Reconciler
	now     time.Time
	out     *report
	log     zerolog.Logger
	checks  sigChecks
	summary SignatureSummary
}

// checkingSignatures reports whether passes check signatures.
func (r *Reconciler) checkingSignatures() bool {
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
// the recorded releases due for a recheck (rechecks), Concurrency at a
// time, while the payloads are read: a payload's digest is known before it
// is inspected (graph nodes are pinned, tags resolved in discover). Each
// digest is checked once, whatever its arches.
func (p *pass) startSignatures(ctx context.Context, jobs []plan.Payload, rechecks []ledger.Release) *signing {
	checks := sigChecks{}
	s := &signing{r: p.r, now: p.now, out: p.out, log: p.log, checks: checks}
	if !p.r.checkingSignatures() {
		return s
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
	for _, rel := range rechecks {
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
	return s
}

// outcome waits for the check of digest d; a digest not started (a
// payload whose digest was learnt only by reading it) is checked now.
func (s *signing) outcome(ctx context.Context, pullspec, d string) (releasesig.Verdict, error) {
	if sc, ok := s.checks[d]; ok {
		<-sc.done
		return sc.verdict, sc.err
	}
	return s.r.Signatures.Check(ctx, pullspec, digest.Digest(d))
}

// admit applies the signature policy (plan.Admit) to a newly read payload,
// recording on rel what its check said. It returns the reason the payload
// must not be recorded ("": it may): it is then held, and checked again
// once verify.recheck has passed (the store may be down now, or the
// signature published later).
func (s *signing) admit(ctx context.Context, pl plan.Payload, rep *releaseinfo.Report, rel *ledger.Release) string {
	if !s.r.checkingSignatures() {
		return ""
	}
	s.started()
	v, err := s.outcome(ctx, pl.Release.Pullspec, rep.Digest)
	strict := s.r.SignatureMode == releasesig.ModeStrict
	signature, held := plan.Admit(plan.SignatureCheck{Verified: v.Verified, By: v.By, Reason: v.Reason, Err: err, Strict: strict, New: true})
	rel.Signature, rel.SignatureCheckedAt = signature, s.now
	s.count(rep.Release, v, err, held != "")
	if held != "" && err != nil {
		s.out.fail(fmt.Errorf("checking the signature of %s: %w", rep.Release, err))
	}
	return held
}

// count sums up a signature check of release.
func (s *signing) count(release string, v releasesig.Verdict, err error, held bool) {
	sum := &s.summary
	if errors.Is(err, breaker.ErrOpen) {
		sum.NotAsked++
	}
	switch {
	case held:
		sum.Held = append(sum.Held, release)
	case err != nil:
		sum.Unchecked = append(sum.Unchecked, release)
		s.log.Debug().Str("release", release).Err(err).Msg("signature not checked")
	case !v.Verified:
		sum.Unverified = append(sum.Unverified, release)
		s.log.Debug().Str("release", release).Str("reason", v.Reason).Msg("payload signature does not verify")
	default:
		sum.Verified++
	}
}

// recheck checks again the signatures of recorded releases that had not
// verified, and returns their records as they are now. Their record stays
// (they drive builds as before); what changes is what it says, and when it
// was checked.
func (s *signing) recheck(ctx context.Context, rels []ledger.Release) []ledger.Release {
	var out []ledger.Release
	for _, rel := range rels {
		v, err := s.outcome(ctx, rel.Pullspec, rel.Digest)
		s.started()
		s.summary.Rechecked++
		s.count(rel.Version, v, err, false)
		rel.Signature, _ = plan.Admit(plan.SignatureCheck{Verified: v.Verified, By: v.By, Reason: v.Reason, Err: err})
		rel.SignatureCheckedAt = s.now
		if err == nil && v.Verified {
			s.log.Info().Str("release", rel.Version).Str("digest", rel.Digest).Msg("payload signature verified on a recheck")
		}
		out = append(out, rel)
	}
	return out
}

// started starts the summary.
func (s *signing) started() {
	if s.summary.Mode == "" {
		s.summary = SignatureSummary{Mode: s.r.SignatureMode, Trust: s.r.Signatures.Trust()}
	}
}

// warnings says once per pass what the signature checks found wanting.
func (sg *signing) warnings() {
	s := sg.summary
	switch {
	case s.Mode == "":
		return
	case s.Trust == "":
		sg.out.warn(fmt.Sprintf("no payload signature can be verified (%v): %d payloads recorded unverified", releasesig.ErrNoTrust, len(s.Unverified)+len(s.Held)))
		return
	}
	if len(s.Unverified) > 0 {
		sg.out.warn(fmt.Sprintf("%d payload signatures do not verify (verify.mode %s): %s", len(s.Unverified), s.Mode, list(s.Unverified)))
	}
	if len(s.Unchecked) > 0 {
		why := "the signature store failed"
		if s.NotAsked > 0 {
			why = fmt.Sprintf("the signature store stopped answering: %d not asked", s.NotAsked)
		}
		sg.out.warn(fmt.Sprintf("%d payload signatures could not be checked (%s), checked again after verify.recheck: %s", len(s.Unchecked), why, list(s.Unchecked)))
	}
	if len(s.Held) > 0 {
		sg.out.warn(fmt.Sprintf("%d payloads held until their signatures verify: %s", len(s.Held), list(s.Held)))
	}
}

// list names at most ten releases.
func list(releases []string) string {
	if len(releases) > 10 {
		return strings.Join(releases[:10], ", ") + fmt.Sprintf(" and %d more", len(releases)-10)
	}
	return strings.Join(releases, ", ")
}
