package reconcile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dtkbot/dtkbot/redact"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/version"

	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/breaker"
	"github.com/dtkbot/dtkbot/build"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/promote"
	"github.com/dtkbot/dtkbot/releaseinfo"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/watcher"
)

// pass is one run of the stages: what they share, and the result they fill.
// mu guards res, errs and view where a stage works concurrently (observe).
type pass struct {
	mu    sync.Mutex
	r     *Reconciler
	now   time.Time
	opts  Options
	start time.Time
	res   *Result
	errs  []error
	log   zerolog.Logger

	view     *ledgerView
	disc     watcher.Discovery
	releases []watcher.Release
	sig      SignatureSummary
	// kinds are the kinds of image this pass builds (the DTK, each
	// consumer), by name; tags writes their tags (nil: promotion is not
	// configured).
	kinds map[string]*kind
	tags  *promote.Tags
	// promoteFailed are the images a promotion failed for in this pass:
	// not promoted before the next.
	promoteFailed map[string]bool
	// services are the pass's breakers; said the errors of a kind already
	// said in the pass (saidBefore).
	services *breaker.Set
	said     map[string]bool
}

// begin loads the ledger and starts a pass.
func (r *Reconciler) begin(now time.Time, opts Options) (*pass, error) {
	p := &pass{r: r, now: now, opts: opts, start: time.Now(), log: r.Log,
		res: &Result{Actions: []plan.Action{}, DryRun: opts.DryRun}}
	view, err := r.load()
	if err != nil {
		return p, fmt.Errorf("reading state: %w", err)
	}
	p.view = view
	p.kinds = r.kinds(p)
	for _, k := range p.kinds {
		if b, ok := k.builder.(build.PassScoped); ok {
			b.BeginPass() // what a backend asks once a pass, asked again
		}
	}
	p.promoteFailed = map[string]bool{}
	if r.Promoter != nil {
		p.tags = &promote.Tags{Registry: r.Promoter, Owned: p.owned, Repair: r.Audit.Repair}
	}
	p.adoptedBefore()
	if opts.RetryFailed {
		p.retryFailed()
	}
	return p, nil
}

// adoptedBefore marks adopted the images a state file written before
// Image.Adopted existed recorded as found at their kernel tag (verified
// there, never staged), and forgets the promotion it recorded for that
// tag: the tag is not dtkbot's, so the audit never moves it.
func (p *pass) adoptedBefore() {
	for _, m := range p.view.imageList("") {
		if m.Adopted || m.Staging != "" || m.ImageDigest == "" || (m.State != ledger.StateVerified && m.State != ledger.StatePromoted) {
			continue
		}
		m.Adopted = true
		p.putImage(m)
		pr, ok := p.view.promoted[m.Image]
		switch {
		case !ok || pr.Digest != m.ImageDigest || pr.Kind != ledger.TagKernel:
		case p.opts.DryRun:
			delete(p.view.promoted, m.Image)
		default:
			p.deletePromotion(m.Image, plan.Action{Type: plan.ActionAudit, Kernel: m.Kernel, Tag: m.Image, Consumer: m.Consumer, KernelKey: m.KernelKey(),
				Result: "forgotten: found at its kernel tag and adopted, not promoted by dtkbot"})
		}
	}
}

// fail records an error that fails the pass (after everything else is done).
func (p *pass) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.saidBefore(err) {
		return
	}
	p.errs = append(p.errs, err)
	p.res.Errors = append(p.res.Errors, err.Error())
}

// deferred records an error that does not fail the pass: a notification left
// for the next one.
func (p *pass) deferred(err error) {
	p.mu.Lock()
	said := p.saidBefore(err)
	if !said {
		p.res.Errors = append(p.res.Errors, err.Error())
	}
	p.mu.Unlock()
	if !said {
		p.log.Warn().Err(err).Msg("notification deferred")
	}
}

// saidBefore reports whether err was said already in this pass, in its
// kind: a request not sent to a service that stopped answering (the count
// is in Result.Services), or a broken auth file (each file once, whatever
// the repositories or releases that needed it): each is said once, never
// once per release. p.mu is held.
func (p *pass) saidBefore(err error) bool {
	var key string
	var open *breaker.OpenError
	var auth *registry.AuthFileError
	switch {
	case errors.As(err, &open):
		key = "service " + open.Service
	case errors.As(err, &auth):
		key = "auth file " + strings.Join(auth.Files, ",")
	default:
		return false
	}
	if p.said == nil {
		p.said = map[string]bool{}
	}
	if p.said[key] {
		return true
	}
	p.said[key] = true
	return false
}

// warn records something people should know that is no failure.
func (p *pass) warn(msg string) {
	p.mu.Lock()
	p.res.Warnings = append(p.res.Warnings, msg)
	p.mu.Unlock()
	p.log.Warn().Msg(msg)
}

// action adds a done action to the result.
func (p *pass) action(a plan.Action) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.res.Actions = append(p.res.Actions, a)
}

// checked counts an image check (a HEAD).
func (p *pass) checked() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.res.Checks++
}

// end finishes the result.
func (p *pass) end() (*Result, error) {
	seen := map[string]bool{}
	for _, rel := range p.view.releases {
		if p.opts.Release == "" || rel.Version == p.opts.Release {
			seen[rel.Version] = true
		}
	}
	p.res.Releases = len(seen)
	for _, h := range p.view.held {
		if p.opts.Release == "" || h.Version == p.opts.Release {
			p.res.Held++
		}
	}
	if p.sig.Mode != "" {
		sig := p.sig
		p.res.Signatures = &sig
	}
	for _, r := range p.services.Reports() {
		p.res.Services = append(p.res.Services, ledger.ServiceReport(r))
		if r.Open {
			p.log.Warn().Str("service", r.Service).Int("requests", r.Requests).Int("unanswered", r.Failures).Int("skipped", r.Skipped).
				Str("reason", r.Reason).Msg("outside service not asked for the rest of the pass")
		}
	}
	p.res.Duration = time.Since(p.start)
	err := errors.Join(p.errs...)
	if !p.opts.DryRun {
		p.record(err)
	}
	return p.res, err
}

// record keeps what the pass did in the state, for pages and reports.
func (p *pass) record(err error) {
	rec := ledger.PassRecord{Started: p.now, Finished: p.now.Add(p.res.Duration), Duration: p.res.Duration,
		Releases: p.res.Releases, Inspected: p.res.Inspected, Held: p.res.Held, Actions: len(p.res.Actions),
		Failed: err != nil, SignatureMode: p.r.SignatureMode, Services: p.res.Services}
	if p.r.Signatures != nil {
		rec.SignatureTrust = p.r.Signatures.Trust()
	}
	// The record is what /status and the page show: public text.
	for i, e := range p.res.Errors {
		if i == 20 {
			rec.Errors = append(rec.Errors, fmt.Sprintf("and %d more", len(p.res.Errors)-20))
			break
		}
		rec.Errors = append(rec.Errors, redact.Text(e))
	}
	if err := p.r.Store.SetLastPass(rec); err != nil {
		p.log.Warn().Err(err).Msg("recording the pass")
	}
}

// ledgerView is the state a pass works on: loaded once, changed in memory,
// written through transaction by transaction (or not at all in a dry run).
// images holds every kind's images by ledger key: the DTKs under their
// kernels' keys, consumers' images under consumer/kernel.
type ledgerView struct {
	releases map[string]ledger.Release
	images   map[string]ledger.Image
	promoted map[string]ledger.Promotion
	held     map[string]ledger.HeldRelease
}

func (r *Reconciler) load() (*ledgerView, error) {
	v := &ledgerView{releases: map[string]ledger.Release{}, images: map[string]ledger.Image{}}
	err := r.Store.View(func(tx *state.Tx) error {
		rels, err := tx.Releases()
		if err != nil {
			return err
		}
		for _, rel := range rels {
			v.releases[ledger.ReleaseKey(rel.Digest, rel.Arch)] = rel
		}
		images, err := tx.Images()
		if err != nil {
			return err
		}
		for _, m := range images {
			v.images[m.Key()] = m
		}
		if v.promoted, err = tx.Promotions(); err != nil {
			return err
		}
		v.held, err = tx.HeldReleases()
		return err
	})
	return v, err
}

// addRelease records rel and adds it to the DTK images of its kernels,
// returning the images it created or changed.
func (v *ledgerView) addRelease(rel ledger.Release, rep *releaseinfo.Report, now time.Time) []ledger.Image {
	v.releases[ledger.ReleaseKey(rel.Digest, rel.Arch)] = rel
	var changed []ledger.Image
	for i, s := range rel.Streams {
		if s.Held != "" {
			continue
		}
		src := rep.Streams[i]
		key := ledger.KernelKey(s.Stream, rel.Arch, s.Kernel)
		k, ok := v.images[key]
		if !ok {
			k = ledger.Image{Stream: s.Stream, Arch: rel.Arch, Kernel: s.Kernel, KernelFull: s.KernelFull,
				RTKernel: src.RTKernel, RHEL: src.RHELVersion, DTKImage: src.DTKImage, State: ledger.StateNew, FirstSeen: now,
				FirstSource: rel.Version}
			if len(rel.Sources) > 0 {
				k.FirstSource += " from " + rel.Sources[0].String()
			}
		}
		if slices.Contains(k.Releases, rel.Version) {
			continue
		}
		k.Releases = append(k.Releases, rel.Version)
		sort.Slice(k.Releases, func(i, j int) bool { return version.Compare(k.Releases[i], k.Releases[j]) < 0 })
		k.UpdatedAt = now
		v.images[key] = k
		changed = append(changed, k)
	}
	return changed
}

func (v *ledgerView) releaseList(only string) []ledger.Release {
	var out []ledger.Release
	for _, rel := range v.releases {
		if only == "" || rel.Version == only {
			out = append(out, rel)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := version.Compare(out[i].Version, out[j].Version); c != 0 {
			return c < 0
		}
		return out[i].Arch < out[j].Arch
	})
	return out
}

// imageList lists the images of every kind whose kernel ships in release
// only ("" for all), in key order.
func (v *ledgerView) imageList(only string) []ledger.Image {
	var out []ledger.Image
	for _, m := range v.images {
		if only == "" || slices.Contains(m.Releases, only) {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// dtkList lists the kernels' DTK images, as imageList.
func (v *ledgerView) dtkList(only string) []ledger.Image {
	return slices.DeleteFunc(v.imageList(only), func(m ledger.Image) bool { return !m.IsDTK() })
}

// consumersOf lists the consumers' images of one kernel, by consumer.
func (v *ledgerView) consumersOf(kernelKey string) []ledger.Image {
	var out []ledger.Image
	for _, m := range v.images {
		if !m.IsDTK() && m.KernelKey() == kernelKey {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Consumer < out[j].Consumer })
	return out
}

// image returns an image of the view.
func (p *pass) image(key string) (ledger.Image, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.view.images[key]
	return m, ok
}

// putImage keeps m in the view and, unless dry, in the store.
func (p *pass) putImage(m ledger.Image) {
	p.mu.Lock()
	p.view.images[m.Key()] = m
	p.mu.Unlock()
	if p.opts.DryRun {
		return
	}
	if err := p.r.Store.Update(func(tx *state.Tx) error { return tx.PutImage(m) }); err != nil {
		p.fail(fmt.Errorf("recording %s: %w", m.Key(), err))
	}
}

// recordImage writes an image and journals the action that changed it, in
// one transaction.
func (p *pass) recordImage(m ledger.Image, a plan.Action, result string) error {
	p.mu.Lock()
	p.view.images[m.Key()] = m
	p.mu.Unlock()
	return p.r.Store.Update(func(tx *state.Tx) error {
		if err := tx.PutImage(m); err != nil {
			return err
		}
		return journal(tx, p.now, a, result)
	})
}

// owned is what dtkbot promoted at ref (promote.Tags.Owned).
func (p *pass) owned(ref string) (ledger.Promotion, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr, ok := p.view.promoted[ref]
	return pr, ok
}

// putPromotion keeps a promoted tag in the view and the store, journaling
// the action that placed it.
func (p *pass) putPromotion(pr ledger.Promotion, a plan.Action) {
	p.mu.Lock()
	p.view.promoted[pr.Ref] = pr
	p.mu.Unlock()
	if p.opts.DryRun {
		return
	}
	if err := p.r.Store.Update(func(tx *state.Tx) error {
		if err := tx.PutPromotion(pr); err != nil {
			return err
		}
		return journal(tx, p.now, a, "ok")
	}); err != nil {
		p.fail(fmt.Errorf("recording the promotion of %s: %w", pr.Ref, err))
	}
}

// deletePromotion forgets a tag dtkbot promoted, journaling why.
func (p *pass) deletePromotion(ref string, a plan.Action) {
	p.mu.Lock()
	delete(p.view.promoted, ref)
	p.mu.Unlock()
	if err := p.r.Store.Update(func(tx *state.Tx) error {
		if err := tx.DeletePromotion(ref); err != nil {
			return err
		}
		return journal(tx, p.now, a, a.Result)
	}); err != nil {
		p.fail(fmt.Errorf("forgetting the promotion of %s: %w", ref, err))
	}
}

func journal(tx *state.Tx, now time.Time, a plan.Action, result string) error {
	raw, _ := json.Marshal(a)
	return tx.Journal(state.JournalEntry{At: now, Action: raw, Result: result})
}

// retryFailed gives every failed image, of every kind, a fresh round of
// attempts.
func (p *pass) retryFailed() {
	for _, m := range p.view.imageList(p.opts.Release) {
		if m.State == ledger.StateFailed {
			m.State, m.Attempts, m.NextAttemptAt, m.ImageDigest, m.ListDigest, m.Published, m.Adopted = ledger.StateNew, 0, time.Time{}, "", "", false, false
			// A new round: its attempt 1 is not the last round's (a
			// backend naming builds by attempt tells them apart by it).
			m.Round, m.Asked = m.Round+1, 0
			m.Reason = "retry asked (was: " + m.Reason + ")"
			m.UpdatedAt = p.now
			p.putImage(m)
		}
	}
}

// noticeHash sums what a kernel's notification says: its DTK, and its
// consumers' images.
func (p *pass) noticeHash(k ledger.Image) string {
	return NoticeHash(k, p.view.consumersOf(k.KernelKey()))
}

// NoticeHash is what a kernel's notifications say, hashed: its DTK's state
// and its consumers' (a consumer's image promoted changes the issue).
func NoticeHash(k ledger.Image, consumers []ledger.Image) string {
	h := k.NoticeHash()
	for _, c := range consumers {
		h += fmt.Sprintf("|%s:%s:%s:%d:%d", c.Consumer, c.State, c.ImageDigest, len(c.Rejections), len(c.Conflicts))
	}
	if len(h) == 16 {
		return h
	}
	sum := sha256.Sum256([]byte(h))
	return hex.EncodeToString(sum[:8])
}

// attemptFailed ends a failed attempt on m (a build request refused, a
// build that never appeared, an image that failed verification): failed
// for good once pol.MaxAttempts are spent, else new again after the
// backoff. It reports whether m is failed for good.
func (p *pass) attemptFailed(m *ledger.Image, pol BuildPolicy) bool {
	if m.Attempts >= pol.MaxAttempts {
		m.State = ledger.StateFailed
		return true
	}
	m.State, m.NextAttemptAt = ledger.StateNew, p.now.Add(backoff(pol, m.Attempts))
	return false
}

// backoff is the wait before attempt attempts+1: the policy's backoff,
// doubled for each attempt after the first, at most a day.
func backoff(pol BuildPolicy, attempts int) time.Duration {
	d := pol.Backoff
	for i := 1; i < attempts && d < 24*time.Hour; i++ {
		d *= 2
	}
	return d
}
