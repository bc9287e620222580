package reconcile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/rebuild"
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
}

// begin loads the ledger and starts a pass.
func (r *Reconciler) begin(now time.Time, opts Options) (*pass, error) {
	p := &pass{r: r, now: now, opts: opts, start: time.Now(), log: r.Log,
		res: &Result{Actions: []rebuild.Action{}, DryRun: opts.DryRun}}
	view, err := r.load()
	if err != nil {
		return p, fmt.Errorf("reading state: %w", err)
	}
	p.view = view
	if opts.RetryFailed {
		p.retryFailed()
	}
	return p, nil
}

// fail records an error that fails the pass (after everything else is done).
func (p *pass) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = append(p.errs, err)
	p.res.Errors = append(p.res.Errors, err.Error())
}

// deferred records an error that does not fail the pass: a notification left
// for the next one.
func (p *pass) deferred(err error) {
	p.mu.Lock()
	p.res.Errors = append(p.res.Errors, err.Error())
	p.mu.Unlock()
	p.log.Warn().Err(err).Msg("notification deferred")
}

// warn records something people should know that is no failure.
func (p *pass) warn(msg string) {
	p.mu.Lock()
	p.res.Warnings = append(p.res.Warnings, msg)
	p.mu.Unlock()
	p.log.Warn().Msg(msg)
}

// action adds a done action to the result.
func (p *pass) action(a rebuild.Action) {
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
	p.res.Duration = time.Since(p.start)
	err := errors.Join(p.errs...)
	if !p.opts.DryRun {
		p.record(err)
	}
	return p.res, err
}

// record keeps what the pass did in the state, for pages and reports.
func (p *pass) record(err error) {
	rec := state.PassRecord{Started: p.now, Finished: p.now.Add(p.res.Duration), Duration: p.res.Duration,
		Releases: p.res.Releases, Inspected: p.res.Inspected, Held: p.res.Held, Actions: len(p.res.Actions),
		Failed: err != nil, SignatureMode: p.r.SignatureMode}
	if p.r.Signatures != nil {
		rec.SignatureTrust = p.r.Signatures.Trust()
	}
	rec.Errors = p.res.Errors
	if len(rec.Errors) > 20 {
		rec.Errors = append(rec.Errors[:20:20], fmt.Sprintf("and %d more", len(p.res.Errors)-20))
	}
	if err := p.r.Store.SetLastPass(rec); err != nil {
		p.log.Warn().Err(err).Msg("recording the pass")
	}
}

// ledgerView is the state a pass works on: loaded once, changed in memory,
// written through transaction by transaction (or not at all in a dry run).
type ledgerView struct {
	releases  map[string]state.Release
	kernels   map[string]state.Kernel
	consumers map[string]state.ConsumerBuild
	promoted  map[string]state.Promotion
	held      map[string]state.HeldRelease
}

func (r *Reconciler) load() (*ledgerView, error) {
	v := &ledgerView{releases: map[string]state.Release{}, kernels: map[string]state.Kernel{}, consumers: map[string]state.ConsumerBuild{}}
	err := r.Store.View(func(tx *state.Tx) error {
		rels, err := tx.Releases()
		if err != nil {
			return err
		}
		for _, rel := range rels {
			v.releases[state.ReleaseKey(rel.Digest, rel.Arch)] = rel
		}
		ks, err := tx.Kernels()
		if err != nil {
			return err
		}
		for _, k := range ks {
			v.kernels[k.Key()] = k
		}
		cs, err := tx.ConsumerBuilds()
		if err != nil {
			return err
		}
		for _, c := range cs {
			v.consumers[c.Key()] = c
		}
		if v.promoted, err = tx.Promotions(); err != nil {
			return err
		}
		v.held, err = tx.HeldReleases()
		return err
	})
	return v, err
}

// addRelease records rel and adds it to the ledger entries of its kernels,
// returning the entries it created or changed.
func (v *ledgerView) addRelease(rel state.Release, rep *releaseinfo.Report, now time.Time) []state.Kernel {
	v.releases[state.ReleaseKey(rel.Digest, rel.Arch)] = rel
	var changed []state.Kernel
	for i, s := range rel.Streams {
		if s.Held != "" {
			continue
		}
		src := rep.Streams[i]
		key := state.KernelKey(s.Stream, rel.Arch, s.Kernel)
		k, ok := v.kernels[key]
		if !ok {
			k = state.Kernel{Stream: s.Stream, Arch: rel.Arch, Kernel: s.Kernel, KernelFull: s.KernelFull,
				RTKernel: src.RTKernel, RHEL: src.RHELVersion, DTKImage: src.DTKImage, State: state.KernelNew, FirstSeen: now,
				FirstSource: rel.Version}
			if len(rel.Sources) > 0 {
				k.FirstSource += " from " + rel.Sources[0].String()
			}
		}
		if slices.Contains(k.Releases, rel.Version) {
			continue
		}
		k.Releases = append(k.Releases, rel.Version)
		sort.Slice(k.Releases, func(i, j int) bool { return watcher.CompareVersions(k.Releases[i], k.Releases[j]) < 0 })
		k.UpdatedAt = now
		v.kernels[key] = k
		changed = append(changed, k)
	}
	return changed
}

func (v *ledgerView) releaseList(only string) []state.Release {
	var out []state.Release
	for _, rel := range v.releases {
		if only == "" || rel.Version == only {
			out = append(out, rel)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := watcher.CompareVersions(out[i].Version, out[j].Version); c != 0 {
			return c < 0
		}
		return out[i].Arch < out[j].Arch
	})
	return out
}

func (v *ledgerView) kernelList(only string) []state.Kernel {
	var out []state.Kernel
	for _, k := range v.kernels {
		if only == "" || slices.Contains(k.Releases, only) {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// putKernel keeps k in the view and, unless dry, in the store.
func (p *pass) putKernel(k state.Kernel) {
	p.mu.Lock()
	p.view.kernels[k.Key()] = k
	p.mu.Unlock()
	if p.opts.DryRun {
		return
	}
	if err := p.r.Store.Update(func(tx *state.Tx) error { return tx.PutKernel(k) }); err != nil {
		p.fail(fmt.Errorf("recording kernel %s: %w", k.Key(), err))
	}
}

// putPromotion keeps a promoted tag in the view and the store, journaling
// the action that placed it.
func (p *pass) putPromotion(pr state.Promotion, a rebuild.Action) {
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

// recordKernel writes a ledger entry and journals the action that changed
// it, in one transaction.
func (p *pass) recordKernel(k state.Kernel, a rebuild.Action, result string) error {
	p.view.kernels[k.Key()] = k
	return p.r.Store.Update(func(tx *state.Tx) error {
		if err := tx.PutKernel(k); err != nil {
			return err
		}
		return journal(tx, p.now, a, result)
	})
}

func journal(tx *state.Tx, now time.Time, a rebuild.Action, result string) error {
	raw, _ := json.Marshal(a)
	return tx.Journal(state.JournalEntry{At: now, Action: raw, Result: result})
}

// retryFailed gives every failed kernel, and consumer build, a fresh round
// of attempts.
func (p *pass) retryFailed() {
	retry := func(k *state.Kernel) {
		k.State, k.Attempts, k.NextAttemptAt, k.ImageDigest, k.Published = state.KernelNew, 0, time.Time{}, "", false
		k.Reason = "retry asked (was: " + k.Reason + ")"
		k.UpdatedAt = p.now
	}
	for _, k := range p.view.kernelList(p.opts.Release) {
		if k.State == state.KernelFailed {
			retry(&k)
			p.putKernel(k)
		}
	}
	for _, c := range p.view.consumers {
		if c.State == state.KernelFailed {
			retry(&c.Kernel)
			p.putConsumerBuild(c)
		}
	}
}

// consumersOf lists the consumer builds of one kernel, by consumer.
func (v *ledgerView) consumersOf(kernelKey string) []state.ConsumerBuild {
	var out []state.ConsumerBuild
	for _, c := range v.consumers {
		if c.Kernel.Key() == kernelKey {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Consumer < out[j].Consumer })
	return out
}

// noticeHash sums what a kernel's notification says: the kernel, and its
// consumers' images.
func (p *pass) noticeHash(k state.Kernel) string {
	return NoticeHash(k, p.view.consumersOf(k.Key()))
}

// NoticeHash is what a kernel's notifications say, hashed: its own state
// and its consumers' (a consumer's image promoted changes the issue).
func NoticeHash(k state.Kernel, builds []state.ConsumerBuild) string {
	h := k.NoticeHash()
	for _, c := range builds {
		h += fmt.Sprintf("|%s:%s:%s:%d", c.Consumer, c.State, c.ImageDigest, len(c.Rejections))
	}
	if len(h) == 16 {
		return h
	}
	sum := sha256.Sum256([]byte(h))
	return hex.EncodeToString(sum[:8])
}

// attemptFailed ends a failed attempt on k (a build request refused, a
// build that never appeared, an image that failed verification): failed
// for good once pol.MaxAttempts are spent, else new again after the
// backoff. It reports whether k is failed for good.
func (p *pass) attemptFailed(k *state.Kernel, pol BuildPolicy) bool {
	if k.Attempts >= pol.MaxAttempts {
		k.State = state.KernelFailed
		return true
	}
	k.State, k.NextAttemptAt = state.KernelNew, p.now.Add(backoff(pol, k.Attempts))
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
