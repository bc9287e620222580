package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dtkbot/dtkbot/guard"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/releaseinfo"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/version"
	"github.com/dtkbot/dtkbot/watcher"
)

// Kinds of held releases (ledger.HeldRelease.Kind).
const (
	HeldContent   = "content"   // the payload's content is broken: never read again unless asked
	HeldSignature = "signature" // strict mode, not verified: checked again after verify.recheck
)

// inspect reads every payload digest never seen before, checks its
// signature (meanwhile, in the same concurrency) and records it with its
// kernels, or holds it: a payload whose content is broken is held for good
// (a digest's content cannot change), so it neither fails this pass nor is
// read by the next. Recorded releases whose signature did not verify are
// checked again once verify.recheck has passed.
func (p *pass) inspect(ctx context.Context) {
	todo, rechecks := p.unseen()
	checks := p.startSignatures(ctx, todo, rechecks)
	results := p.r.inspect(ctx, todo)
	for i, job := range todo {
		rep, err := results[i].Report, results[i].Err
		if err != nil {
			if h, ok := p.contentHold(job, err); ok {
				p.hold(h)
				continue
			}
			p.fail(err)
			continue
		}
		if p.opts.Release != "" && rep.Release != p.opts.Release {
			continue
		}
		rel := recordRelease(job.release, rep, p.now)
		key := ledger.ReleaseKey(rel.Digest, rel.Arch)
		if _, known := p.view.releases[key]; known {
			continue // listed twice (a config pullspec that is also in the graph)
		}
		if !p.checkSignature(ctx, checks, job, rep, &rel) {
			continue // held
		}
		p.res.Inspected++
		changed := p.view.addRelease(rel, rep, p.now)
		_, wasHeld := p.view.held[key]
		delete(p.view.held, key)
		if p.opts.DryRun {
			continue
		}
		if err := p.r.Store.Update(func(tx *state.Tx) error {
			if err := tx.PutRelease(rel); err != nil {
				return err
			}
			for _, k := range changed {
				if err := tx.PutImage(k); err != nil {
					return err
				}
			}
			if wasHeld {
				return tx.DeleteHeld(key)
			}
			return nil
		}); err != nil {
			p.fail(fmt.Errorf("recording release %s: %w", rel.Version, err))
		}
	}
	p.recheckSignatures(ctx, checks, rechecks)
	p.sigWarnings()
}

// job is one release to inspect for one arch.
type job struct {
	release watcher.Release
	arch    string
}

// unseen lists the releases never recorded (a digest is read once in its
// life), not held for their content, nor for a signature checked less than
// verify.recheck ago (unless asked to retry held ones). A release recorded
// before has its sources brought up to date instead, and is listed in
// rechecks (by key) when its signature did not verify and is due again.
func (p *pass) unseen() (out []job, rechecks []string) {
	for _, rel := range p.releases {
		for _, arch := range watcher.PayloadArches(rel.Arch) {
			key := ledger.ReleaseKey(rel.Digest, arch)
			if known, ok := p.view.releases[key]; ok {
				p.refresh(known, rel)
				if p.checking() && !known.SignatureVerified() && p.signatureDue(known.SignatureCheckedAt) {
					rechecks = append(rechecks, key)
				}
				continue
			}
			if h, ok := p.view.held[key]; ok && !p.opts.RetryHeld {
				if h.Kind == HeldContent || (h.Kind == HeldSignature && p.checking() && !p.signatureDue(h.SignatureCheckedAt)) {
					continue
				}
			}
			out = append(out, job{release: rel, arch: arch})
		}
	}
	return out, rechecks
}

// contentHold turns an inspection error into a held release when the
// payload's content is at fault; errors that may pass (network, 5xx, auth,
// a digest mismatch in transit) are not held.
func (p *pass) contentHold(j job, err error) (ledger.HeldRelease, bool) {
	var pe *releaseinfo.PayloadError
	if !registry.IsContent(err) || !errors.As(err, &pe) || pe.Digest == "" {
		return ledger.HeldRelease{}, false
	}
	return ledger.HeldRelease{Version: j.release.Version, Pullspec: j.release.Pullspec, Digest: pe.Digest, Arch: j.arch,
		Channels: j.release.Channels, Kind: HeldContent, Reason: err.Error(), Since: p.since(pe.Digest, j.arch)}, true
}

// hold records a held release.
func (p *pass) hold(h ledger.HeldRelease) {
	_, before := p.view.held[h.Key()]
	p.view.held[h.Key()] = h
	if !before {
		p.log.Warn().Str("release", h.Version).Str("digest", h.Digest).Str("arch", h.Arch).Str("kind", h.Kind).Str("reason", h.Reason).
			Msg("payload held")
	}
	if p.opts.DryRun {
		return
	}
	if err := p.r.Store.Update(func(tx *state.Tx) error { return tx.PutHeld(h) }); err != nil {
		p.fail(fmt.Errorf("recording held release %s: %w", h.Version, err))
	}
}

// heldActions reports every held release of the pass's scope.
func (p *pass) heldActions() []plan.Action {
	var out []plan.Action
	for _, h := range p.view.held {
		if p.opts.Release != "" && h.Version != p.opts.Release {
			continue
		}
		release := h.Version
		if release == "" {
			release = h.Pullspec
		}
		out = append(out, plan.Action{Type: plan.ActionHold, Release: release, Arch: h.Arch,
			Reason: fmt.Sprintf("held since %s (%s): %s", h.Since.UTC().Format(time.RFC3339), h.Kind, h.Reason)})
	}
	return out
}

// payloadsInFlight is how many payloads are inspected at once per registry
// call in flight.
const payloadsInFlight = 4

func (r *Reconciler) inspector(arch string) *releaseinfo.Inspector {
	r.inspectorsMu.Lock()
	defer r.inspectorsMu.Unlock()
	if r.inspectors == nil {
		r.inspectors = map[string]*releaseinfo.Inspector{}
	}
	in, ok := r.inspectors[arch]
	if !ok {
		// Most of a payload's inspection is waiting (for the network, or for
		// a DTK or OS image another z-stream is reading): more payloads are
		// in progress than calls in flight, which the registry client bounds.
		in = releaseinfo.New(r.Registry, releaseinfo.Options{Arch: arch, Limits: r.Limits, Cache: r.Store, Concurrency: payloadsInFlight * max(r.Concurrency, 1)})
		r.inspectors[arch] = in
	}
	return in
}

// inspect reads the jobs, every arch at the same time (a multi-arch
// payload's instances too): each arch's inspector bounds the payloads it
// reads at once, and the registry client the calls in flight across all.
// Progress is reported over all of them.
func (r *Reconciler) inspect(ctx context.Context, jobs []job) []releaseinfo.Result {
	out := make([]releaseinfo.Result, len(jobs))
	byArch := map[string][]int{}
	var arches []string
	for i, j := range jobs {
		if _, ok := byArch[j.arch]; !ok {
			arches = append(arches, j.arch)
		}
		byArch[j.arch] = append(byArch[j.arch], i)
	}
	var mu sync.Mutex
	done := 0
	var progress func(int, int)
	if r.Progress != nil {
		progress = func(int, int) {
			mu.Lock()
			defer mu.Unlock()
			done++
			r.Progress(done, len(jobs))
		}
	}
	var wg sync.WaitGroup
	for _, arch := range arches {
		idx := byArch[arch]
		pullspecs := make([]string, len(idx))
		for k, i := range idx {
			pullspecs[k] = jobs[i].release.Pullspec
		}
		in := r.inspector(arch)
		guard.Go(&wg, func() {
			for k, res := range in.InspectAll(ctx, pullspecs, progress) {
				j := jobs[idx[k]]
				if res.Err == nil && j.release.Version != "" && res.Report.Release != j.release.Version {
					res.Report.Warnings = append(res.Report.Warnings, fmt.Sprintf("the graph calls this payload %s", j.release.Version))
				}
				out[idx[k]] = res
			}
		}, func(err error) {
			for k, i := range idx {
				if out[i].Err == nil && out[i].Report == nil {
					out[i] = releaseinfo.Result{Pullspec: pullspecs[k], Err: err}
				}
			}
		})
	}
	wg.Wait()
	return out
}

// recordRelease turns an inspection into the release record.
func recordRelease(src watcher.Release, rep *releaseinfo.Report, now time.Time) ledger.Release {
	rel := ledger.Release{Version: rep.Release, Pullspec: src.Pullspec, Digest: rep.Digest, Arch: rep.Arch,
		Channels: src.Channels, Kind: version.Kind(rep.Release), Sources: src.Sources, FirstSeen: now}
	for _, s := range rep.Streams {
		ships := ledger.ReleaseShips{Stream: s.Stream, Kernel: s.Kernel, KernelFull: s.KernelFull, RTKernel: s.RTKernel,
			RHEL: s.RHELVersion, RHCOS: s.RHCOSVersion}
		switch {
		case s.Kernel == "" && len(s.Warnings) == 0:
			ships.Held = "kernel unknown"
		case s.Kernel == "" || !s.Consistent:
			// The warnings say why ("kernel unknown: ...", "inconsistent payload: ...").
			ships.Held = strings.Join(s.Warnings, "; ")
		}
		rel.Streams = append(rel.Streams, ships)
	}
	return rel
}
