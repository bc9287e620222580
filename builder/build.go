// Package builder asks for images to be built: a kernel's DTK, or a
// consumer's image FROM that DTK. Each backend (podman or buildah here, a
// GitHub Actions workflow, a signed webhook) takes the same Request and
// pushes the image to the request's staging reference; none of them tags
// anything a consumer reads, and none of them decides whether the result
// is good: the image at the staging tag is the truth, and package verify
// judges it.
package builder

import (
	"context"
	"errors"

	"github.com/dtkbot/dtkbot/redact"
)

// Request asks for one image of one kernel: the kernel's DTK, or (Consumer
// set) a consumer's image built FROM the kernel's promoted DTK.
type Request struct {
	Kernel     string   `json:"kernel_version"`    // VERSION-RELEASE
	KernelFull string   `json:"kernel_full"`       // as uname -r
	RTKernel   string   `json:"rt_kernel_version"` // VERSION-RELEASE, or ""
	RHEL       string   `json:"rhel_version"`
	Stream     string   `json:"stream"`
	Arch       string   `json:"arch"`
	Image      string   `json:"image"` // the full reference to push: the staging reference
	Releases   []string `json:"releases"`
	DTKImage   string   `json:"payload_dtk_image,omitempty"`
	// Consumer and DTK are set for a consumer's build (a driver container
	// built FROM the kernel's DTK): its name, and the DTK pinned by digest.
	Consumer string `json:"consumer,omitempty"`
	DTK      string `json:"dtk_image,omitempty"`
	// Variant is, for a consumer's build, the kernel variant it is for
	// (KERNEL_VARIANT: default, rt, 64k; KernelFull is that variant's
	// uname -r). Variants are, for a DTK's build, the variants' kernels it
	// is to carry besides its own (KERNEL_VARIANTS: "rt" with the RT
	// kernel the payload ships, "64k" on aarch64).
	Variant  string   `json:"kernel_variant,omitempty"`
	Variants []string `json:"kernel_variants,omitempty"`
	// Attempt numbers the attempts at this image (1, 2, ...), and Round
	// the rounds of attempts (`--retry-failed` starts a new one, from
	// attempt 1): a backend that names its builds (a Kubernetes Job) tells
	// a retry apart by both.
	Attempt int `json:"attempt,omitempty"`
	Round   int `json:"round,omitempty"`
}

// Builder starts (or runs) the build of one kernel's image. It must be safe
// to call again for the same request: the pass only calls it after checking
// that the image is not in the registry, and records the request first.
type Builder interface {
	Build(ctx context.Context, req Request) error
}

// AsksOnce is a backend whose build cannot outlive dtkbot's asking for it
// (podman, buildah: the build is dtkbot's child, killed with it, and pushes
// only at its end). An attempt recorded and never acknowledged (the
// process died between recording and asking, or during the build) is then
// asked again at once, rather than waited for until build.timeout and
// spent: no build of that attempt can be running or push.
type AsksOnce interface {
	AsksOnce() bool
}

// AsksOnceFor reports whether b is such a backend.
func AsksOnceFor(b Builder) bool {
	a, ok := b.(AsksOnce)
	return ok && a.AsksOnce()
}

// ErrNotConfigured is the result of an effect whose backend is not set up.
var ErrNotConfigured = errors.New("not configured")

// Unconfigured stands in for a Builder the config does not set up: every
// call fails with ErrNotConfigured, which the pass records as "skipped"
// and retries on a later pass.
type Unconfigured struct{ What string }

// Build implements Builder.
func (u Unconfigured) Build(context.Context, Request) error { return u.err() }

func (u Unconfigured) err() error {
	return &notConfigured{u.What}
}

type notConfigured struct{ what string }

func (n *notConfigured) Error() string { return n.what + " " + ErrNotConfigured.Error() }
func (n *notConfigured) Unwrap() error { return ErrNotConfigured }

// Failure is a build that was asked for and failed, said twice: Summary
// for people (what failed, and where to look), Output in the tool's own
// words (its last lines), for dtkbot's log and, when asked, the issue.
type Failure struct {
	Summary string
	Output  string
	Err     error
}

func (f *Failure) Error() string {
	if f.Output == "" {
		return f.Summary
	}
	return f.Summary + " (last output: " + f.Output + ")"
}

func (f *Failure) Unwrap() error { return f.Err }

// Public is what may be shown of the failure.
func (f *Failure) Public() string { return f.Summary }

// SecretHolder is a backend whose builds are given secret values (an RHSM
// activation key, a registry password, a webhook's token): whatever it says
// is scrubbed of them before the pass logs, keeps or shows it (Explain).
type SecretHolder interface {
	// SecretValues are those values. One that cannot be read is left out:
	// the generic patterns of package redact still apply.
	SecretValues(ctx context.Context) []string
}

// secretsOf are b's secret values, if it has any.
func secretsOf(ctx context.Context, b Builder) []string {
	if h, ok := b.(SecretHolder); ok {
		return h.SecretValues(ctx)
	}
	return nil
}

// Explain splits what backend b said of a build that failed into what
// people may be shown, wherever they are (GitHub, /status, the page: no
// build output, no URL path or query), and the whole of it, for the log and
// the state file. Every backend's words go through here (or ExplainReport)
// before the pass keeps them: both are scrubbed of b's secret values, and
// the detail of URL paths and queries and of credential-looking values
// (redact.Log).
func Explain(ctx context.Context, b Builder, err error) (public, detail string) {
	public = err.Error()
	var p interface{ Public() string }
	if errors.As(err, &p) {
		public = p.Public()
	}
	return scrub(ctx, b, public, err.Error())
}

// ExplainReport is Explain for what a Reporter said of a build.
func ExplainReport(ctx context.Context, b Builder, rep Report) (public, detail string) {
	return scrub(ctx, b, rep.Summary, rep.Output)
}

func scrub(ctx context.Context, b Builder, public, detail string) (string, string) {
	secrets := secretsOf(ctx, b)
	return redact.Text(redact.Known(public, secrets)), redact.Log(detail, secrets)
}

// PassScoped is a backend that asks its service some things once a pass
// rather than once a build (a Kubernetes backend: the Secrets its Jobs
// mount, its recipe's ConfigMap): BeginPass starts a new pass, so what
// changed between passes is seen by the next.
type PassScoped interface {
	BeginPass()
}

// Reporter is a backend that can say how a build it was asked for went
// before its image appears: a Kubernetes Job can fail, or be deleted, long
// before build.timeout. The image at the staging reference stays the
// truth: a report never makes a build succeed, it only ends an attempt
// that will not push.
type Reporter interface {
	Report(ctx context.Context, req Request) (Report, error)
}

// Report is how a requested build went.
type Report struct {
	// Over: the build ended without pushing, or nothing builds any more;
	// the attempt is spent.
	Over bool
	// Gone (with Over): the backend has no trace of the build at all:
	// never asked, or deleted since. The pass asks again for an attempt
	// whose request it recorded but never saw acknowledged (a kill in
	// between) rather than spend it: a backend that can say Gone names its
	// builds, so asking twice builds once.
	Gone bool
	// Summary says so, for people; Output is the build's own words, for
	// the log and the state file. The pass scrubs both (ExplainReport).
	Summary, Output string
}
