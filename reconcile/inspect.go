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
	"github.com/dtkbot/dtkbot/version"
	"github.com/dtkbot/dtkbot/watcher"
)

// inspected is what reading the payloads found: each payload's report (or
// error), and the signature checks under way meanwhile.
type inspected struct {
	reading plan.Reading
	results []releaseinfo.Result
	sig     *signing
	recheck []ledger.Release
}

// inspect reads the payloads the plan says were never read, and checks
// their signatures meanwhile, in the same concurrency (and those of the
// recorded releases whose signature is due again).
func (p *pass) inspect(ctx context.Context, r plan.Reading) inspected {
	var recheck []ledger.Release
	for _, key := range r.Recheck {
		if rel, ok := p.book.release(key); ok {
			recheck = append(recheck, rel)
		}
	}
	sig := p.startSignatures(ctx, r.Read, recheck)
	return inspected{reading: r, results: p.r.inspect(ctx, r.Read), sig: sig, recheck: recheck}
}

// record keeps what the payloads read say: each release with its kernels,
// its signature admitted by the plan; or it holds the payload: one whose
// content is broken is held for good (a digest's content cannot change),
// so it neither fails this pass nor is read by the next; one whose
// signature strict mode does not admit, until it is checked again. The
// recorded releases listed again are brought up to date first.
func (p *pass) record(ctx context.Context, in inspected) {
	p.apply(ctx, plan.Changes{Releases: in.reading.Releases})
	for i, pl := range in.reading.Read {
		rep, err := in.results[i].Report, in.results[i].Err
		if err != nil {
			if h, ok := p.contentHold(pl, err); ok {
				p.hold(h)
				continue
			}
			p.out.fail(err)
			continue
		}
		if p.opts.Release != "" && rep.Release != p.opts.Release {
			continue
		}
		rel := recordRelease(pl.Release, rep, p.now)
		if _, known := p.book.release(ledger.ReleaseKey(rel.Digest, rel.Arch)); known {
			continue // listed twice (a config pullspec that is also in the graph)
		}
		if held := in.sig.admit(ctx, pl, rep, &rel); held != "" {
			p.hold(ledger.HeldRelease{Version: rep.Release, Pullspec: pl.Release.Pullspec, Digest: rep.Digest, Arch: rep.Arch,
				Channels: pl.Release.Channels, Kind: plan.HeldSignature, Reason: held,
				Since: p.book.heldSince(ledger.ReleaseKey(rep.Digest, rep.Arch), p.now), SignatureCheckedAt: p.now})
			continue
		}
		p.out.count(func(res *Result) { res.Inspected++ })
		var dtkImages []string
		for _, s := range rep.Streams {
			dtkImages = append(dtkImages, s.DTKImage)
		}
		var images []ledger.Image
		for _, c := range plan.Shipped(rel, dtkImages, p.book.image, p.now) {
			images = append(images, c.Image)
		}
		if err := p.book.recordRelease(rel, images); err != nil {
			p.out.fail(fmt.Errorf("recording release %s: %w", rel.Version, err))
		}
	}
	for _, rel := range in.sig.recheck(ctx, in.recheck) {
		if err := p.book.putRelease(rel); err != nil {
			p.out.fail(fmt.Errorf("recording release %s: %w", rel.Version, err))
		}
	}
	in.sig.warnings()
	p.sig = in.sig.summary
}

// contentHold turns an inspection error into a held release when the
// payload's content is at fault; errors that may pass (network, 5xx, auth,
// a digest mismatch in transit) are not held.
func (p *pass) contentHold(pl plan.Payload, err error) (ledger.HeldRelease, bool) {
	var pe *releaseinfo.PayloadError
	if !registry.IsContent(err) || !errors.As(err, &pe) || pe.Digest == "" {
		return ledger.HeldRelease{}, false
	}
	return ledger.HeldRelease{Version: pl.Release.Version, Pullspec: pl.Release.Pullspec, Digest: pe.Digest, Arch: pl.Arch,
		Channels: pl.Release.Channels, Kind: plan.HeldContent, Reason: err.Error(), Since: p.book.heldSince(ledger.ReleaseKey(pe.Digest, pl.Arch), p.now)}, true
}

// hold records a held release.
func (p *pass) hold(h ledger.HeldRelease) {
	before, err := p.book.hold(h)
	if !before {
		p.log.Warn().Str("release", h.Version).Str("digest", h.Digest).Str("arch", h.Arch).Str("kind", h.Kind).Str("reason", h.Reason).
			Msg("payload held")
	}
	if err != nil {
		p.out.fail(fmt.Errorf("recording held release %s: %w", h.Version, err))
	}
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
func (r *Reconciler) inspect(ctx context.Context, jobs []plan.Payload) []releaseinfo.Result {
	out := make([]releaseinfo.Result, len(jobs))
	byArch := map[string][]int{}
	var arches []string
	for i, j := range jobs {
		if _, ok := byArch[j.Arch]; !ok {
			arches = append(arches, j.Arch)
		}
		byArch[j.Arch] = append(byArch[j.Arch], i)
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
			pullspecs[k] = jobs[i].Release.Pullspec
		}
		in := r.inspector(arch)
		guard.Go(&wg, func() {
			for k, res := range in.InspectAll(ctx, pullspecs, progress) {
				j := jobs[idx[k]]
				if res.Err == nil && j.Release.Version != "" && res.Report.Release != j.Release.Version {
					res.Report.Warnings = append(res.Report.Warnings, fmt.Sprintf("the graph calls this payload %s", j.Release.Version))
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
