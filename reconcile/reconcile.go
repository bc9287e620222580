// Package reconcile is dtkbot's pass, the one code path behind both
// `dtkbot reconcile` (once) and `dtkbot run` (on a schedule): discover
// releases, inspect the new ones, record their kernels in the ledger, look at
// the target registry for the images still awaited, plan with rebuild.Plan,
// and apply the plan through the Builder, Promoter and Notifier.
//
// Every step that cannot be undone is preceded by a look at the world and by
// a ledger write of the intent, so a pass killed at any point is finished by
// the next one without doing anything twice.
package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/rebuild"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/releaseinfo"
	"github.com/dtkbot/dtkbot/releasesig"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/watcher"
)

// ImageChecker answers "which digest does this tag have?" (registry.ErrNotFound
// when none): one HEAD request.
type ImageChecker interface {
	Digest(ctx context.Context, ref string) (digest.Digest, error)
}

// Verifier checks that a built image carries the kernel it was built for;
// an error wrapping rebuild.ErrWrongKernel means it does not (a failed build).
type Verifier interface {
	Verify(ctx context.Context, image, kernel, arch string) error
}

// SignatureChecker checks a payload's signature; an error means the check
// could not be made (try again), a verdict is final for this pass.
type SignatureChecker interface {
	Check(ctx context.Context, pullspec string, d digest.Digest) (releasesig.Verdict, error)
}

// BuildPolicy bounds builds: a requested build that has not appeared in the
// registry within Timeout is retried after Backoff (doubling), up to
// MaxAttempts, then the kernel is marked failed.
type BuildPolicy struct {
	Timeout     time.Duration
	MaxAttempts int
	Backoff     time.Duration
}

// Reconciler runs passes. Its fields are set once; RunOnce may be called
// from several goroutines but runs one pass at a time.
type Reconciler struct {
	Discoverer *watcher.Discoverer
	Registry   *registry.Client
	Limits     releaseinfo.Limits
	Store      *state.Store
	Checker    ImageChecker
	// Verifier, when set, must pass a built image before anything is
	// promoted onto it.
	Verifier Verifier
	Builder  rebuild.Builder
	Promoter rebuild.Promoter
	// Notifier may be nil: then no notify actions are planned.
	Notifier rebuild.Notifier
	Target   rebuild.Target
	Policy   rebuild.Policy
	Build    BuildPolicy
	// Signatures and SignatureMode (releasesig.ModeOff, ModeWarn,
	// ModeStrict): in strict mode a payload whose signature does not verify
	// is not recorded, so it never drives a build or a promotion; it is
	// held, and checked again on the next pass.
	Signatures    SignatureChecker
	SignatureMode string
	// Concurrency bounds the payloads inspected at once.
	Concurrency int
	Log         zerolog.Logger
	// Progress, if set, is told how many releases of a pass are inspected.
	Progress func(done, total int)

	mu         sync.Mutex
	inspectors map[string]*releaseinfo.Inspector
}

// Options narrow one pass.
type Options struct {
	// DryRun plans without effects: nothing changes outside the state's
	// inspection cache.
	DryRun bool
	// Channels, when set, restricts the graph to these channels.
	Channels []string
	// Release, when set, restricts the pass to one release version.
	Release string
}

// Result is what a pass saw and did.
type Result struct {
	Releases      int              `json:"releases"`
	Inspected     int              `json:"inspected"`
	GraphRequests int              `json:"graph_requests"`
	Checks        int              `json:"image_checks"`
	Actions       []rebuild.Action `json:"actions"`
	Errors        []string         `json:"errors,omitempty"`
	DryRun        bool             `json:"dry_run,omitempty"`
	Duration      time.Duration    `json:"duration_ns"`
}

// RunOnce runs one pass at now. It returns an error when part of the pass
// failed; everything it could do is done and recorded even then.
func (r *Reconciler) RunOnce(ctx context.Context, now time.Time, opts Options) (*Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	res := &Result{Actions: []rebuild.Action{}, DryRun: opts.DryRun}
	var errs []error
	fail := func(err error) {
		errs = append(errs, err)
		res.Errors = append(res.Errors, err.Error())
	}
	// GitHub failures never fail the pass: the notification is retried on
	// the next one. They are still reported.
	warn := func(err error) {
		res.Errors = append(res.Errors, err.Error())
		r.Log.Warn().Err(err).Msg("notification deferred")
	}

	disc := r.Discoverer.Discover(ctx, opts.Channels, opts.DryRun)
	res.GraphRequests = disc.GraphRequests
	for _, err := range disc.Errors {
		fail(err)
	}
	for _, s := range disc.Skipped {
		r.Log.Warn().Str("skipped", s).Msg("graph node not usable")
	}
	releases := disc.Releases
	if opts.Release != "" {
		releases = slices.DeleteFunc(releases, func(rel watcher.Release) bool {
			return rel.Version != "" && rel.Version != opts.Release
		})
	}

	// The ledger as stored, then changed in memory by this pass.
	view, err := r.load()
	if err != nil {
		return res, fmt.Errorf("reading state: %w", err)
	}

	// Inspect what is new; record it.
	todo := r.unseen(view, releases)
	reports := r.inspect(ctx, todo)
	var sigHolds []rebuild.Action
	for i, job := range todo {
		rep, err := reports[i].Report, reports[i].Err
		if err != nil {
			fail(err)
			continue
		}
		if opts.Release != "" && rep.Release != opts.Release {
			continue
		}
		rel := recordRelease(job.release, rep, now)
		if _, known := view.releases[state.ReleaseKey(rel.Digest, rel.Arch)]; known {
			continue // a config pullspec by tag that still points at a payload we know
		}
		if hold, ok := r.checkSignature(ctx, job, rep, &rel, fail); !ok {
			sigHolds = append(sigHolds, hold)
			continue
		}
		res.Inspected++
		changed := view.addRelease(rel, rep, now)
		if !opts.DryRun {
			if err := r.Store.Update(func(tx *state.Tx) error {
				if err := tx.PutRelease(rel); err != nil {
					return err
				}
				for _, k := range changed {
					if err := tx.PutKernel(k); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				fail(fmt.Errorf("recording release %s: %w", rel.Version, err))
			}
		}
	}
	seen := map[string]bool{}
	for _, rel := range view.releases {
		if opts.Release == "" || rel.Version == opts.Release {
			seen[rel.Version] = true
		}
	}
	res.Releases = len(seen)

	// Look at the world for the images still awaited.
	r.observeAndRecord(ctx, view, now, res, opts.DryRun, fail)

	in := rebuild.Input{Now: now, Releases: view.releaseList(opts.Release), Kernels: view.kernelList(opts.Release),
		Promoted: view.promoted, Target: r.Target, Policy: r.Policy}
	plan := append(sigHolds, rebuild.Plan(in)...)
	if opts.DryRun {
		res.Actions = append(plan, r.preview(ctx, view, r.notifications(in.Kernels))...)
	} else {
		res.Actions = r.apply(ctx, now, view, plan, fail)
		if requestedBuild(res.Actions) {
			// A synchronous builder (podman) has pushed by now: look again
			// and promote in this pass rather than the next.
			r.observeAndRecord(ctx, view, now, res, false, fail)
			in.Kernels, in.Promoted = view.kernelList(opts.Release), view.promoted
			var promotions []rebuild.Action
			for _, a := range rebuild.Plan(in) {
				if a.Type == rebuild.ActionPromote {
					promotions = append(promotions, a)
				}
			}
			res.Actions = append(res.Actions, r.apply(ctx, now, view, promotions, fail)...)
		}
		res.Actions = append(res.Actions, r.notify(ctx, now, view, opts.Release, warn)...)
	}
	res.Duration = time.Since(start)
	return res, errors.Join(errs...)
}

// Previewer is a Notifier that can say what it would do without doing it.
type Previewer interface {
	Preview(ctx context.Context, k state.Kernel) (string, error)
}

// preview fills a dry run's notify actions with what the notifier would do.
func (r *Reconciler) preview(ctx context.Context, v *ledgerView, actions []rebuild.Action) []rebuild.Action {
	p, ok := r.Notifier.(Previewer)
	if !ok {
		return actions
	}
	for i := range actions {
		out, err := p.Preview(ctx, v.kernels[actions[i].KernelKey])
		if err != nil {
			out = "cannot tell: " + err.Error()
		}
		actions[i].Result = out
	}
	return actions
}

func (r *Reconciler) notifications(kernels []state.Kernel) []rebuild.Action {
	if r.Notifier == nil {
		return nil
	}
	return rebuild.Notifications(kernels)
}

// checkSignature applies the signature policy to a newly read payload. It
// returns false, with a hold, when the payload must not be recorded.
func (r *Reconciler) checkSignature(ctx context.Context, j job, rep *releaseinfo.Report, rel *state.Release, fail func(error)) (rebuild.Action, bool) {
	if r.Signatures == nil || r.SignatureMode == "" || r.SignatureMode == releasesig.ModeOff {
		return rebuild.Action{}, true
	}
	hold := rebuild.Action{Type: rebuild.ActionHold, Release: rep.Release, Arch: rep.Arch}
	v, err := r.Signatures.Check(ctx, j.release.Pullspec, digest.Digest(rep.Digest))
	switch {
	case err != nil && r.SignatureMode == releasesig.ModeStrict:
		fail(fmt.Errorf("checking the signature of %s: %w", rep.Release, err))
		hold.Reason = "signature not checked yet: " + err.Error()
		return hold, false
	case err != nil:
		rel.Signature = "unchecked: " + err.Error()
		r.Log.Warn().Str("release", rep.Release).Err(err).Msg("signature not checked")
	case !v.Verified && r.SignatureMode == releasesig.ModeStrict:
		hold.Reason = "signature does not verify (verify.mode strict): " + v.Reason
		r.Log.Error().Str("release", rep.Release).Str("digest", rep.Digest).Str("reason", v.Reason).Msg("unverified payload held")
		return hold, false
	case !v.Verified:
		rel.Signature = "unverified: " + v.Reason
		r.Log.Warn().Str("release", rep.Release).Str("digest", rep.Digest).Str("reason", v.Reason).Msg("payload signature does not verify")
	default:
		rel.Signature = "verified by " + v.By
	}
	return rebuild.Action{}, true
}

// job is one release to inspect for one arch.
type job struct {
	release watcher.Release
	arch    string
}

// inspectArches are the arches read from a graph arch: a multi payload is
// read for the two arches drivers are built for most.
func inspectArches(graphArch string) []string {
	if graphArch == "multi" {
		return []string{"amd64", "arm64"}
	}
	return []string{graphArch}
}

// unseen lists the releases never recorded (a digest is read once in its life).
func (r *Reconciler) unseen(view *ledgerView, releases []watcher.Release) []job {
	var out []job
	for _, rel := range releases {
		for _, arch := range inspectArches(rel.Arch) {
			if rel.Digest != "" {
				if _, ok := view.releases[state.ReleaseKey(rel.Digest, arch)]; ok {
					continue
				}
			}
			out = append(out, job{release: rel, arch: arch})
		}
	}
	return out
}

func (r *Reconciler) inspector(arch string) *releaseinfo.Inspector {
	if r.inspectors == nil {
		r.inspectors = map[string]*releaseinfo.Inspector{}
	}
	in, ok := r.inspectors[arch]
	if !ok {
		in = releaseinfo.New(r.Registry, releaseinfo.Options{Arch: arch, Limits: r.Limits, Cache: r.Store, Concurrency: r.Concurrency})
		r.inspectors[arch] = in
	}
	return in
}

// inspect reads the jobs, arch by arch, with the inspectors' bounded
// concurrency, reporting progress over all of them.
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
	before := 0
	for _, arch := range arches {
		idx := byArch[arch]
		pullspecs := make([]string, len(idx))
		for k, i := range idx {
			pullspecs[k] = jobs[i].release.Pullspec
		}
		var progress func(done, total int)
		if r.Progress != nil {
			progress = func(done, _ int) { r.Progress(before+done, len(jobs)) }
		}
		for k, res := range r.inspector(arch).InspectAll(ctx, pullspecs, progress) {
			j := jobs[idx[k]]
			if res.Err == nil && j.release.Version != "" && res.Report.Release != j.release.Version {
				res.Report.Warnings = append(res.Report.Warnings, fmt.Sprintf("the graph calls this payload %s", j.release.Version))
			}
			out[idx[k]] = res
		}
		before += len(idx)
	}
	return out
}

// recordRelease turns an inspection into the release record.
func recordRelease(src watcher.Release, rep *releaseinfo.Report, now time.Time) state.Release {
	rel := state.Release{Version: rep.Release, Pullspec: src.Pullspec, Digest: rep.Digest, Arch: rep.Arch,
		Channels: src.Channels, FirstSeen: now}
	for _, s := range rep.Streams {
		ships := state.ReleaseShips{Stream: s.Stream, Kernel: s.Kernel, KernelFull: s.KernelFull}
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

// ledgerView is the state a pass works on: loaded once, changed in memory,
// written through transaction by transaction (or not at all in a dry run).
type ledgerView struct {
	releases map[string]state.Release
	kernels  map[string]state.Kernel
	promoted map[string]state.Promotion
}

func (r *Reconciler) load() (*ledgerView, error) {
	v := &ledgerView{releases: map[string]state.Release{}, kernels: map[string]state.Kernel{}}
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
		v.promoted, err = tx.Promotions()
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
				RTKernel: src.RTKernel, RHEL: src.RHELVersion, DTKImage: src.DTKImage, State: state.KernelNew, FirstSeen: now}
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

// observe looks in the target registry for the image of every kernel still
// awaited (one HEAD each) and moves the ledger on: an image that appeared is
// built; a build that did not appear in time is retried or failed. Kernels
// already built are not looked at: the steady state costs no request.
func (r *Reconciler) observe(ctx context.Context, v *ledgerView, now time.Time, res *Result, fail func(error)) []state.Kernel {
	var changed []state.Kernel
	for _, k := range v.kernelList("") {
		if k.State == state.KernelBuilt && r.Verifier != nil {
			if r.verify(ctx, &k, now, fail) {
				v.kernels[k.Key()] = k
				changed = append(changed, k)
			}
			continue
		}
		if k.State != state.KernelNew && k.State != state.KernelBuildRequested {
			continue
		}
		image, err := rebuild.KernelImage(r.Target, k)
		if err != nil {
			continue // Plan holds it with the reason
		}
		res.Checks++
		d, err := r.Checker.Digest(ctx, image)
		switch {
		case err == nil:
			k.State, k.Image, k.ImageDigest, k.Reason = state.KernelBuilt, image, d.String(), ""
			k.UpdatedAt = now
			r.Log.Info().Str("kernel", k.Kernel).Str("image", image).Str("digest", d.String()).Msg("kernel image present")
			if r.Verifier != nil {
				r.verify(ctx, &k, now, fail)
			}
		case !errors.Is(err, registry.ErrNotFound):
			fail(fmt.Errorf("checking the image of kernel %s: %w", k.Key(), err))
			continue
		case k.State == state.KernelBuildRequested && now.Sub(k.BuildRequestedAt) > r.Build.Timeout:
			k.Reason = fmt.Sprintf("the build requested at %s did not appear within %s", k.BuildRequestedAt.UTC().Format(time.RFC3339), r.Build.Timeout)
			if k.Attempts >= r.Build.MaxAttempts {
				k.State = state.KernelFailed
				k.Reason += fmt.Sprintf(" (%d attempts)", k.Attempts)
			} else {
				k.State = state.KernelNew
				k.NextAttemptAt = now.Add(r.backoff(k.Attempts))
			}
			k.UpdatedAt = now
		default:
			continue
		}
		v.kernels[k.Key()] = k
		changed = append(changed, k)
	}
	return changed
}

// verify checks a built image and moves k to verified, or to failed when the
// image carries another kernel; a read error leaves it built for the next
// pass. It reports whether k changed.
func (r *Reconciler) verify(ctx context.Context, k *state.Kernel, now time.Time, fail func(error)) bool {
	pinned := k.PinnedImage()
	err := r.Verifier.Verify(ctx, pinned, k.Kernel, k.Arch)
	switch {
	case err == nil:
		k.State, k.Reason = state.KernelVerified, ""
		r.Log.Info().Str("kernel", k.Kernel).Str("image", pinned).Msg("kernel image verified")
	case errors.Is(err, rebuild.ErrWrongKernel):
		k.State, k.Reason = state.KernelFailed, err.Error()
		r.Log.Error().Str("kernel", k.Kernel).Str("image", pinned).Err(err).Msg("built image carries the wrong kernel: not promoted")
		fail(err)
	default:
		fail(err)
		return false
	}
	k.UpdatedAt = now
	return true
}

// observeAndRecord runs observe and writes what changed (unless dry).
func (r *Reconciler) observeAndRecord(ctx context.Context, v *ledgerView, now time.Time, res *Result, dry bool, fail func(error)) {
	for _, k := range r.observe(ctx, v, now, res, fail) {
		if dry {
			continue
		}
		if err := r.Store.Update(func(tx *state.Tx) error { return tx.PutKernel(k) }); err != nil {
			fail(fmt.Errorf("recording kernel %s: %w", k.Key(), err))
		}
	}
}

func requestedBuild(actions []rebuild.Action) bool {
	for _, a := range actions {
		if a.Type == rebuild.ActionBuild && a.Result == "requested" {
			return true
		}
	}
	return false
}

func (r *Reconciler) backoff(attempts int) time.Duration {
	d := r.Build.Backoff
	for i := 1; i < attempts && d < 24*time.Hour; i++ {
		d *= 2
	}
	return d
}

// apply performs the plan's builds and promotions, recording intent before
// each build and the outcome after every effect.
func (r *Reconciler) apply(ctx context.Context, now time.Time, v *ledgerView, plan []rebuild.Action, fail func(error)) []rebuild.Action {
	promoteFailed := map[string]bool{}
	for i := range plan {
		a := &plan[i]
		switch a.Type {
		case rebuild.ActionBuild:
			a.Result = r.applyBuild(ctx, now, v, a, fail)
		case rebuild.ActionPromote:
			a.Result = r.applyPromote(ctx, now, v, a, fail)
			if a.Result != "ok" {
				promoteFailed[a.KernelKey] = true
			}
		case rebuild.ActionHold:
			a.Result = "held"
		}
	}
	// A promotable kernel whose tags are in place is promoted: no promotion
	// of it failed, and at least one tag points at it (unless no release tag
	// is configured), so that a kernel whose tags are all held is not.
	tagged := map[string]bool{}
	for _, p := range v.promoted {
		tagged[p.Digest] = true
	}
	for key, k := range v.kernels {
		placed := tagged[k.ImageDigest] || len(r.Target.ReleaseTags) == 0
		if (k.State == state.KernelBuilt && !r.Policy.RequireVerified || k.State == state.KernelVerified) && !promoteFailed[key] && placed {
			k.State, k.UpdatedAt = state.KernelPromoted, now
			v.kernels[key] = k
			if err := r.Store.Update(func(tx *state.Tx) error { return tx.PutKernel(k) }); err != nil {
				fail(err)
			}
		}
	}
	return plan
}

func (r *Reconciler) journal(tx *state.Tx, now time.Time, a rebuild.Action, result string) error {
	raw, _ := json.Marshal(a)
	return tx.Journal(state.JournalEntry{At: now, Action: raw, Result: result})
}

// recordKernel writes a ledger entry and journals the action that changed
// it, in one transaction.
func (r *Reconciler) recordKernel(now time.Time, k state.Kernel, a rebuild.Action, result string) error {
	return r.Store.Update(func(tx *state.Tx) error {
		if err := tx.PutKernel(k); err != nil {
			return err
		}
		return r.journal(tx, now, a, result)
	})
}

func (r *Reconciler) applyBuild(ctx context.Context, now time.Time, v *ledgerView, a *rebuild.Action, fail func(error)) string {
	before := v.kernels[a.KernelKey]
	k := before
	k.State, k.Image, k.BuildRequestedAt, k.UpdatedAt = state.KernelBuildRequested, a.Image, now, now
	k.Attempts++
	// Intent first: if we die after asking for the build, the next pass
	// waits for it instead of asking again.
	if err := r.recordKernel(now, k, *a, "requesting"); err != nil {
		fail(fmt.Errorf("recording the build of %s: %w", a.KernelKey, err))
		return "error: " + err.Error()
	}
	req := rebuild.BuildRequest{Kernel: k.Kernel, KernelFull: k.KernelFull, RTKernel: k.RTKernel, RHEL: k.RHEL,
		Stream: k.Stream, Arch: k.Arch, Image: a.Image, Releases: k.Releases, DTKImage: k.DTKImage}
	err := r.Builder.Build(ctx, req)
	result := "requested"
	switch {
	case err == nil:
		r.Log.Info().Str("kernel", k.Kernel).Str("image", a.Image).Msg("build requested")
	case errors.Is(err, rebuild.ErrNotConfigured):
		k = before // nothing was asked: leave the kernel as it was
		result = "skipped: " + err.Error()
	default:
		k.Reason = err.Error()
		if k.Attempts >= r.Build.MaxAttempts {
			k.State = state.KernelFailed
		} else {
			k.State, k.NextAttemptAt = state.KernelNew, now.Add(r.backoff(k.Attempts))
		}
		result = "error: " + err.Error()
		fail(fmt.Errorf("building kernel %s: %w", a.KernelKey, err))
	}
	v.kernels[a.KernelKey] = k
	if err := r.recordKernel(now, k, *a, result); err != nil {
		fail(err)
	}
	return result
}

func (r *Reconciler) applyPromote(ctx context.Context, now time.Time, v *ledgerView, a *rebuild.Action, fail func(error)) string {
	d, err := r.Promoter.Promote(ctx, a.Image, a.Tag)
	if errors.Is(err, rebuild.ErrNotConfigured) {
		return "skipped: " + err.Error()
	}
	if err != nil {
		fail(fmt.Errorf("promoting %s: %w", a.Tag, err))
		return "error: " + err.Error()
	}
	p := state.Promotion{Ref: a.Tag, Digest: d, Release: a.Release, Kernel: a.Kernel, At: now}
	v.promoted[a.Tag] = p
	if err := r.Store.Update(func(tx *state.Tx) error {
		if err := tx.PutPromotion(p); err != nil {
			return err
		}
		return r.journal(tx, now, *a, "ok")
	}); err != nil {
		fail(err)
	}
	r.Log.Info().Str("release", a.Release).Str("tag", a.Tag).Str("digest", d).Msg("promoted")
	return "ok"
}

// notify announces every kernel whose state changed since its last notice.
func (r *Reconciler) notify(ctx context.Context, now time.Time, v *ledgerView, only string, warn func(error)) []rebuild.Action {
	actions := r.notifications(v.kernelList(only))
	for i := range actions {
		a := &actions[i]
		k := v.kernels[a.KernelKey]
		err := r.Notifier.Notify(ctx, k)
		switch {
		case errors.Is(err, rebuild.ErrNotConfigured):
			a.Result = "skipped: " + err.Error()
			continue
		case err != nil:
			a.Result = "deferred: " + err.Error()
			warn(fmt.Errorf("notifying kernel %s: %w", a.KernelKey, err))
			continue
		}
		a.Result = "ok"
		k.NotifiedState, k.NotifiedHash = k.State, k.NoticeHash()
		v.kernels[a.KernelKey] = k
		if err := r.recordKernel(now, k, *a, "ok"); err != nil {
			warn(err)
		}
	}
	return actions
}
