package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/breaker"
	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/promote"
	"github.com/dtkbot/dtkbot/redact"
)

// pass is one run: the ledger it works on, what it tells, and what it did
// already (the plan does nothing twice in a pass).
type pass struct {
	r     *Reconciler
	now   time.Time
	opts  Options
	start time.Time
	log   zerolog.Logger
	book  *book
	out   *report
	// kinds are the kinds of image this pass builds (the DTK, each
	// consumer), by name; tags writes their tags (nil: promotion is not
	// configured).
	kinds map[string]*kind
	tags  *promote.Tags
	done  plan.Done
	// eyes look at the world: the registry, the build backends.
	eyes *observer
	// sig sums up the pass's signature checks; services are its breakers.
	sig      SignatureSummary
	services *breaker.Set
}

// begin loads the ledger and starts a pass.
func (r *Reconciler) begin(ctx context.Context, now time.Time, opts Options) (*pass, error) {
	p := &pass{r: r, now: now, opts: opts, start: time.Now(), log: r.Log,
		out:      &report{res: &Result{Actions: []Applied{}, DryRun: opts.DryRun}, log: r.Log},
		done:     plan.Done{Actions: map[string]bool{}, PromoteFailed: map[string]bool{}},
		services: breaker.NewSet(r.ServiceFailures)}
	b, err := openBook(r.Store, opts.DryRun)
	if err != nil {
		return p, fmt.Errorf("reading state: %w", err)
	}
	p.book = b
	p.kinds = r.kinds(p.out.warn)
	p.eyes = &observer{r: r, kinds: p.kinds, out: p.out, now: now, log: p.log}
	for _, k := range p.kinds {
		if b, ok := k.builder.(builder.PassScoped); ok {
			b.BeginPass() // what a backend asks once a pass, asked again
		}
	}
	if r.Promoter != nil {
		p.tags = &promote.Tags{Registry: r.Promoter, Owned: p.book.owned, Repair: r.Audit.Repair}
	}
	if opts.RetryFailed {
		p.apply(ctx, plan.NewRounds(p.book.imageList(opts.Release), now))
	}
	return p, nil
}

// end finishes the result.
func (p *pass) end() (*Result, error) {
	res := p.out.res
	seen := map[string]bool{}
	for _, rel := range p.book.releaseList(p.opts.Release) {
		seen[rel.Version] = true
	}
	res.Releases = len(seen)
	res.Held = len(p.book.heldList(p.opts.Release))
	if p.sig.Mode != "" {
		sig := p.sig
		res.Signatures = &sig
	}
	for _, r := range p.services.Reports() {
		res.Services = append(res.Services, ledger.ServiceReport(r))
		if r.Open {
			p.log.Warn().Str("service", r.Service).Int("requests", r.Requests).Int("unanswered", r.Failures).Int("skipped", r.Skipped).
				Str("reason", r.Reason).Msg("outside service not asked for the rest of the pass")
		}
	}
	res.Duration = time.Since(p.start)
	err := errors.Join(p.out.errs...)
	if !p.opts.DryRun {
		p.recordPass(err)
	}
	return res, err
}

// recordPass keeps what the pass did in the state, for pages and reports.
func (p *pass) recordPass(err error) {
	res := p.out.res
	rec := ledger.PassRecord{Started: p.now, Finished: p.now.Add(res.Duration), Duration: res.Duration,
		Releases: res.Releases, Inspected: res.Inspected, Held: res.Held, Actions: len(res.Actions),
		Failed: err != nil, SignatureMode: p.r.SignatureMode, Services: res.Services}
	if p.r.Signatures != nil {
		rec.SignatureTrust = p.r.Signatures.Trust()
	}
	// The record is what /status and the page show: public text.
	for i, e := range res.Errors {
		if i == 20 {
			rec.Errors = append(rec.Errors, fmt.Sprintf("and %d more", len(res.Errors)-20))
			break
		}
		rec.Errors = append(rec.Errors, redact.Text(e))
	}
	if err := p.r.Store.SetLastPass(rec); err != nil {
		p.log.Warn().Err(err).Msg("recording the pass")
	}
}

// noticeHash sums what a kernel's notification says: its DTK, and its
// consumers' images.
func (p *pass) noticeHash(k ledger.Image) string {
	return NoticeHash(k, p.book.consumersOf(k.Key()))
}

// NoticeHash is what a kernel's notifications say, hashed: its DTK's state
// and its consumers' (a consumer's image promoted changes the issue).
func NoticeHash(k ledger.Image, consumers []ledger.Image) string {
	h := k.NoticeHash()
	for _, c := range consumers {
		who := c.Consumer
		if c.Variant != ledger.VariantDefault {
			who += "+" + c.Variant // the default's as before variants: no notice is due for nothing
		}
		h += fmt.Sprintf("|%s:%s:%s:%d:%d", who, c.State, c.ImageDigest, len(c.Rejections), len(c.Conflicts))
	}
	if len(h) == 16 {
		return h
	}
	sum := sha256.Sum256([]byte(h))
	return hex.EncodeToString(sum[:8])
}
