// Package reconcile is dtkbot's pass, the one code path behind both
// `dtkbot reconcile` (once) and `dtkbot run` (on a schedule). It observes,
// applies, and asks package plan, which decides everything, what to do in
// between: RunOnce reads as the values flowing from step to step. It
// discovers the releases the feeds list; reads the payloads the plan says
// are new (and checks their signatures), recording their kernels in the
// ledger; withdraws the pre-releases the plan says are; then moves every
// image of every kind (a kernel's DTK, each consumer's image FROM it)
// through one lifecycle, round after round: observe what the registry and
// the build backends say of the images awaited, plan.Plan, apply (build to
// staging with package builder, verify, promote with package promote,
// which keeps the rules of every tag write), until nothing moves; then
// gives the ABI verdicts due, audits the promoted tags, and notifies.
//
// Observation returns what it saw; apply returns what came of each action,
// and changes an image's record only through its transitions
// (ledger.Image). Every step that cannot be undone is preceded by a look at
// the world and by a ledger write of the intent, so a pass killed at any
// point is finished by the next one without doing anything twice. Builds
// push to a staging reference; only an image that passed verification is
// ever promoted to a tag a consumer reads.
//
// Files: reconcile.go (RunOnce), discover.go, inspect.go (with
// signatures.go), act.go (the rounds, with observe.go, apply.go and
// kinds.go, the table of the kinds of image), abi.go, audit.go, notify.go;
// book.go is the ledger a pass works on, report.go what it tells.
package reconcile

import (
	"context"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/breaker"
	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/promote"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/releaseinfo"
	"github.com/dtkbot/dtkbot/releasesig"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/verify"
	"github.com/dtkbot/dtkbot/watcher"
)

// ImageChecker answers "which digest does this tag have?" (registry.ErrNotFound
// when none): one HEAD request.
type ImageChecker interface {
	Digest(ctx context.Context, ref string) (digest.Digest, error)
}

// Verifier checks that a built image carries the kernel it was built for;
// an error for which verify.Rejects holds (verify.ErrWrongKernel, content
// that cannot be read) is a verdict against it (a failed build).
type Verifier interface {
	Verify(ctx context.Context, image string, want verify.Want) error
}

// SignatureChecker checks a payload's signature; an error means the check
// could not be made (try again), a verdict is final for this pass.
type SignatureChecker interface {
	Check(ctx context.Context, pullspec string, d digest.Digest) (releasesig.Verdict, error)
	// Trust describes the keys and policy it verifies with ("" for none).
	Trust() string
}

// BuildPolicy bounds builds: a requested build that has not appeared in the
// registry within Timeout is retried after Backoff (doubling), up to
// MaxAttempts, then the kernel is marked failed. A build whose image fails
// verification counts as a failed attempt too.
type BuildPolicy = plan.Retries

// PrereleasePolicy is what withdrawn pre-releases (Rejected, or vanished
// from their feeds) do: OnWithdrawn is WithdrawTags (their tags are removed)
// or WithdrawReport. Which kinds drive builds and get tags is
// plan.Policy's.
type PrereleasePolicy struct {
	OnWithdrawn string
}

// Reconciler runs passes. Its fields are set once; RunOnce may be called
// from several goroutines but runs one pass at a time.
type Reconciler struct {
	Discoverer *watcher.Discoverer
	Registry   *registry.Client
	Limits     imageread.Limits
	Store      *state.Store
	Checker    ImageChecker
	// The DTK, the first kind of image: Builder builds it to Target's
	// staging reference, Verifier (when set) must pass it before anything
	// is promoted onto it, Build bounds its attempts.
	Builder  builder.Builder
	Verifier Verifier
	Target   plan.Target
	Build    BuildPolicy
	// Consumers are the other kinds, built FROM each promoted DTK;
	// KmodVerifier checks their images before they are promoted.
	Consumers    []Consumer
	KmodVerifier KmodVerifier
	// Promoter is the registry tags are written to and removed from, under
	// promote's rules (promote.Remote); nil: promotion is not configured.
	Promoter promote.Registry
	// Notifier may be nil: then no notify actions are planned.
	Notifier   Notifier
	Policy     plan.Policy
	Audit      AuditPolicy
	Prerelease PrereleasePolicy
	// ResolveTTL is how long the digest a pullspec by tag resolved to is
	// trusted before it is resolved again.
	ResolveTTL time.Duration
	// Signatures and SignatureMode (releasesig.ModeOff, ModeWarn,
	// ModeStrict): in strict mode a payload whose signature does not verify
	// is not recorded, so it never drives a build or a promotion; it is
	// held, and checked again once SignatureRecheck has passed (as is the
	// signature of a recorded release that did not verify, or could not be
	// checked; a verified one never is). Signatures are checked while
	// payloads are inspected, Concurrency at a time.
	Signatures       SignatureChecker
	SignatureMode    string
	SignatureRecheck time.Duration
	// ServiceFailures is how many consecutive failures to answer (timeouts,
	// refused or cut connections) stop a pass asking an outside service
	// (breaker.DefaultThreshold when 0). The HTTP clients of those services
	// go through a breaker.Transport.
	ServiceFailures int
	// Concurrency bounds the payloads inspected at once.
	Concurrency int
	// VerifyInterruptions is how many verifications of one image may be
	// cut short by the process dying (out of memory, killed) before the
	// image is rejected as one that kills its verifier
	// (DefaultVerifyInterruptions when 0): each is begun only once it is
	// recorded in the state.
	VerifyInterruptions int
	Log                 zerolog.Logger
	// Progress, if set, is told how many releases of a pass are inspected.
	Progress func(done, total int)

	mu sync.Mutex // one pass at a time
	// inspectors are the payload inspectors by arch, kept across passes
	// (their caches), under inspectorsMu: stages ask for them concurrently.
	inspectorsMu sync.Mutex
	inspectors   map[string]*releaseinfo.Inspector
}

// DefaultVerifyInterruptions rejects an image the second time its
// verification dies with the process.
const DefaultVerifyInterruptions = plan.DefaultVerifyInterruptions

// Options narrow one pass.
type Options struct {
	// DryRun plans without effects: nothing changes outside the state's
	// inspection cache.
	DryRun bool
	// Channels, when set, restricts the graph to these channels.
	Channels []string
	// Release, when set, restricts the pass to one release version.
	Release string
	// RetryHeld reads again the payloads held for broken content.
	RetryHeld bool
	// RetryFailed gives failed kernels a new round of build attempts.
	RetryFailed bool
}

// Result is what a pass saw and did.
type Result struct {
	Releases      int `json:"releases"`
	Inspected     int `json:"inspected"`
	Held          int `json:"held"`
	GraphRequests int `json:"graph_requests"`
	Checks        int `json:"image_checks"`
	// Rejected counts built images that failed verification in this pass.
	Rejected int `json:"rejected"`
	// Conflicts are the tags dtkbot would have written that hold images it
	// did not put there: left alone, and reported.
	Conflicts []string `json:"conflicts,omitempty"`
	// Audited and Drifted count the tags the drift audit looked at, and
	// those it found moved or gone.
	Audited    int               `json:"audited"`
	Drifted    int               `json:"drifted"`
	Signatures *SignatureSummary `json:"signatures,omitempty"`
	Actions    []Applied         `json:"actions"`
	// Errors failed the pass (or were deferred, for GitHub); Warnings did not.
	Errors   []string      `json:"errors,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
	DryRun   bool          `json:"dry_run,omitempty"`
	Duration time.Duration `json:"duration_ns"`

	// Services are the outside services the pass asked: requests, those
	// unanswered, and those skipped once a service stopped answering.
	Services []ledger.ServiceReport `json:"services,omitempty"`
}

// Applied is an action of the pass, and (after a real run) what came of it.
type Applied struct {
	plan.Action
	Result string `json:"result,omitempty"`
}

// RunOnce runs one pass at now. It returns an error when part of the pass
// failed; everything it could do is done and recorded even then.
func (r *Reconciler) RunOnce(ctx context.Context, now time.Time, opts Options) (*Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := r.begin(ctx, now, opts) // the ledger as stored
	if err != nil {
		return p.out.res, err
	}
	// One breaker per outside service for this pass: every HTTP client of
	// one consults it through the request's context.
	ctx = breaker.NewContext(ctx, p.services)
	listed := p.discover(ctx)                                // the feeds' releases, pinned by digest
	read := p.inspect(ctx, plan.Payloads(p.listing(listed))) // payloads never read, read; signatures due, checked
	p.record(ctx, read)                                      // each release with its kernels, or held
	p.apply(ctx, plan.Withdrawals(p.withdrawing(listed)))    // rejected or vanished pre-releases withdrawn, their tags too
	p.act(ctx)                                               // every kind of image, round after round: observe, plan, apply
	p.abi(ctx)                                               // would each consumer's modules load on each new kernel?
	p.audit(ctx)                                             // promoted tags still where dtkbot put them
	p.notify(ctx)                                            // issues and pull requests
	return p.end()
}
