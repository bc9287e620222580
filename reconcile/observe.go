package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/guard"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/verify"
)

// observer looks at the world for a pass, and only looks: it reads the
// registry and asks the build backends, never changes the ledger, and
// returns what it saw, for the plan.
type observer struct {
	r     *Reconciler
	kinds map[string]*kind
	out   *report
	now   time.Time
	log   zerolog.Logger
}

// images looks at the images awaited and returns what it saw of each,
// for the plan: what its kernel tag (for a new image) and its staging
// reference hold, the image for its arch where what was found (or is
// built) is a manifest list, and, for a requested build that has not
// appeared, what a backend that can say (a Kubernetes Job) says of it. The
// registry, not the ledger, is the truth. Images are looked at
// concurrently (a backfill finds hundreds), as many at once as the
// registry client has calls in flight; what cannot be seen now is said as
// an error of the pass, and the plan decides nothing about it.
func (p *observer) images(ctx context.Context, images []ledger.Image) map[string]plan.Seen {
	awaited := slices.DeleteFunc(slices.Clone(images), func(m ledger.Image) bool { return p.kinds[m.Kind()] == nil || !plan.Awaited(m) })
	seen := make([]*plan.Seen, len(awaited))
	guard.Each(p.r.Concurrency, len(awaited), func(i int) {
		s := p.see(ctx, awaited[i], p.kinds[awaited[i].Kind()])
		seen[i] = &s
	}, func(i int, err error) { // nothing seen: the plan decides nothing about it
		p.out.fail(fmt.Errorf("looking at %s (%s): %w", awaited[i].Key(), p.kinds[awaited[i].Kind()].what, err))
	})
	out := map[string]plan.Seen{}
	for i, s := range seen {
		if s != nil {
			out[awaited[i].Key()] = *s
		}
	}
	return out
}

// see looks for one image: a built one is read for its arch; a new one is
// looked for first at its kernel tag (it may be there from before the
// state file, or be someone else's), then at the staging reference its
// build pushes to. Images that failed verification before do not count as
// found.
func (p *observer) see(ctx context.Context, m ledger.Image, k *kind) plan.Seen {
	var s plan.Seen
	if m.State == ledger.StateBuilt {
		if m.ListDigest == "" {
			s.Instance = p.instance(ctx, m, m.PinnedImage(), k)
		}
		return s
	}
	kernelRef, err1 := plan.KernelImage(k.target, m)
	staging, err2 := plan.StagingImage(k.target, m)
	if err1 != nil || err2 != nil {
		return s // the plan holds it, with the reason
	}
	if m.State == ledger.StateNew {
		var ok bool
		if s.KernelTag, ok = p.head(ctx, m, k, kernelRef, "kernel tag"); !ok {
			return s
		}
		if d := s.KernelTag.Digest; d != "" {
			if _, rejected := m.Rejected(d); !rejected {
				if k.verify != nil {
					s.Instance = p.instance(ctx, m, ledger.Repository(kernelRef)+"@"+d, k)
				}
				return s
			}
		}
	}
	var ok bool
	if s.Staging, ok = p.head(ctx, m, k, staging, "staging image"); !ok {
		return s
	}
	if d := s.Staging.Digest; d != "" {
		if _, rejected := m.Rejected(d); !rejected {
			s.Instance = p.instance(ctx, m, ledger.Repository(staging)+"@"+d, k)
			return s
		}
	}
	if r, reports := k.builder.(builder.Reporter); reports && plan.ReportDue(m, k.plan(), p.now) {
		s.Report = p.askHowItGoes(ctx, m, k, r)
	}
	return s
}

// head is one HEAD: what ref holds (false: the registry could not say).
func (p *observer) head(ctx context.Context, m ledger.Image, k *kind, ref, what string) (plan.Ref, bool) {
	p.out.count(func(res *Result) { res.Checks++ })
	d, err := p.r.Checker.Digest(ctx, ref)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return plan.Ref{Looked: true}, true
	case err != nil:
		p.out.fail(fmt.Errorf("checking the %s of %s (%s): %w", what, m.Key(), k.what, err))
		return plan.Ref{}, false
	}
	return plan.Ref{Looked: true, Digest: d.String()}, true
}

// instance reads the image found at ref (by digest) for m's arch: when it
// is a manifest list, its instance for the arch, the only one verified and
// promoted (a list's other platforms would reach arch-less and floating
// tags unverified). Content that cannot be read as such an image (a list
// without the arch) is said; a read that failed is an error (nil: not
// read).
func (p *observer) instance(ctx context.Context, m ledger.Image, ref string, k *kind) *plan.Instance {
	d, list, err := p.r.inspector(m.Arch).Instance(ctx, ref)
	switch {
	case err == nil:
		return &plan.Instance{Digest: d.String(), List: list}
	case verify.Rejects(err):
		return &plan.Instance{Unreadable: err.Error()}
	}
	p.out.fail(fmt.Errorf("reading the manifest of %s (%s): %w", ref, k.what, err))
	return nil
}

// askHowItGoes asks a backend that can say how the build of m's current
// attempt goes; its words are explained (and scrubbed) for the plan.
func (p *observer) askHowItGoes(ctx context.Context, m ledger.Image, k *kind, r builder.Reporter) *plan.Report {
	rep, err := r.Report(ctx, requestOf(m, p.kinds))
	if err != nil {
		p.out.warn(fmt.Sprintf("asking how the build of %s (%s) goes: %v", m.Key(), k.what, err))
		return &plan.Report{Unanswered: true}
	}
	out := &plan.Report{Over: rep.Over, Gone: rep.Gone}
	if rep.Over {
		out.Reason, out.Detail = builder.ExplainReport(ctx, k.builder, rep)
		p.log.Warn().Str("kernel", m.Kernel).Str("kind", k.name).Str("detail", out.Detail).Msg(out.Reason)
	}
	return out
}

// kernelFiles reads, once per DTK image, whether each promoted DTK the plan
// names carries the kernel's files, and which variants' kernels
// (plan.KernelFilesDue), as many at once as the pass's concurrency, and
// returns what each lacks, by key. A read that failed is an error of the
// pass.
func (p *observer) kernelFiles(ctx context.Context, dtks []ledger.Image) map[string]ledger.KernelFilesCheck {
	if len(dtks) == 0 || p.r.KmodVerifier == nil {
		return nil
	}
	checks := make([]*ledger.KernelFilesCheck, len(dtks))
	guard.Each(p.r.Concurrency, len(dtks), func(i int) {
		check, err := p.r.readKernelFiles(ctx, dtks[i])
		if err != nil {
			p.out.fail(err)
			return
		}
		checks[i] = &check
	}, func(i int, err error) {
		p.out.fail(fmt.Errorf("reading the kernel's files of the DTK %s: %w", dtks[i].PinnedImage(), err))
	})
	out := map[string]ledger.KernelFilesCheck{}
	for i, check := range checks {
		if check != nil {
			out[dtks[i].Key()] = *check
		}
	}
	return out
}

// tags looks at each tag dtkbot promoted, one HEAD each, and returns
// what each holds ("": gone), and whether it could look at them all.
func (p *observer) tags(ctx context.Context, promoted map[string]ledger.Promotion) (map[string]string, bool) {
	out := map[string]string{}
	complete := true
	for _, ref := range sortedRefs(promoted) {
		p.out.count(func(res *Result) { res.Audited++ })
		d, err := p.r.Checker.Digest(ctx, ref)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			out[ref] = ""
		case err != nil:
			p.out.fail(fmt.Errorf("auditing %s: %w", ref, err))
			complete = false
		default:
			out[ref] = d.String()
		}
	}
	return out, complete
}

// requestOf is the build request of m's current attempt, to its staging
// reference: what was asked for, and what a backend reports on.
func requestOf(m ledger.Image, kinds map[string]*kind) builder.Request {
	req := builder.Request{Kernel: m.Kernel, KernelFull: m.KernelFull, RTKernel: m.RTKernel, RHEL: m.RHEL,
		Stream: m.Stream, Arch: m.Arch, Image: m.Staging, Releases: m.Releases, Attempt: m.Attempts, Round: m.Round}
	if m.IsDTK() {
		req.DTKImage, req.Variants = m.DTKImage, dtkVariants(m, kinds)
	} else {
		req.Consumer, req.DTK, req.Variant = m.Consumer, m.DTKImage, m.Variant
	}
	return req
}

// dtkVariants are the variants' kernels a DTK's build is asked to carry
// besides its own, by name: "64k" on aarch64 when a consumer asks for it
// (the recipe installs kernel-64k where RHEL has it for the kernel, as the
// OpenShift DTK carries it since openshift/driver-toolkit#140, and says in
// its release JSON whether it did). The RT kernel is not asked for: the
// recipe installs the RT_KERNEL_VERSION the payload ships on x86_64, as it
// always did; so a DTK build of a config without 64k sends no
// kernel_variants, which a workflow from before variants does not declare.
func dtkVariants(m ledger.Image, kinds map[string]*kind) []string {
	if m.Arch != ledger.VariantArch(ledger.Variant64K) {
		return nil
	}
	for _, k := range kinds {
		if slices.Contains(k.variants, ledger.Variant64K) {
			return []string{ledger.Variant64K}
		}
	}
	return nil
}
