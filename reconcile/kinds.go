package reconcile

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/kmod"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/verify"
)

// kind is one kind of image dtkbot builds for every kernel, and all that
// differs between kinds: how its images are built, verified and tagged.
// The DTK is one kind, each consumer another; everything else (the plan,
// builds to staging, retries, verification, promotion with its rules,
// mirrors, audit, withdrawal, staging removal, the journal) is one
// lifecycle they share. A new kind of image is a new entry in
// Reconciler.kinds.
type kind struct {
	name    string // ledger.KindDTK, or the consumer's name
	what    string // for logs and reasons: "DTK image", "consumer acme-nic's image"
	builder builder.Builder
	target  plan.Target
	build   BuildPolicy
	// verify checks an image pinned by digest, and says what it found (a
	// kmod image's modules, a DTK's kernel files); an error wrapping
	// verify.ErrRejected rejects it; nil: the kind's images are not
	// verified (build.verify: false), and are promoted once built.
	verify func(ctx context.Context, pinned string, m ledger.Image) (ledger.Verdict, error)
	// needsKernelFiles: its images are checked against the kernel's files
	// of the DTK they are built FROM (a consumer's verify.abi: true).
	needsKernelFiles bool
	// variants are the kernel variants its images are built for (none:
	// the default kernel's only).
	variants []string
}

// Consumer is a team's image built FROM every promoted DTK: a driver
// container, a kmod image KMM loads. It is a kind of image like the DTK:
// the same backends, the same lifecycle and the same guarantees.
type Consumer struct {
	Name    string
	Builder builder.Builder
	// Target is where its images and tags go (its kernel tag defaults to
	// {{.KernelFull}}).
	Target plan.Target
	Build  BuildPolicy
	// ModulePath is where the image must hold kernel modules, a template
	// (default opt/lib/modules/{{.KernelFull}}/); Label, if set, is an image
	// label that must name the kernel (uname -r).
	ModulePath string
	Label      string
	// Certs are the keys its Secure Boot nodes trust (verify.signing_certs):
	// every module must be signed by one. SkipABI (verify.abi: false)
	// accepts images whose DTK lacks the kernel's files, unchecked.
	Certs   []*x509.Certificate
	SkipABI bool
	// ModuleName is the module KMM loads from its images (kmm.module_name):
	// when set, an image that does not hold it is rejected.
	ModuleName string
	// Variants are the kernel variants it is built for (ledger.Variant*:
	// "" the default kernel); none: the default only.
	Variants []string
}

// KmodVerifier checks a consumer's image against the kernel of the DTK it
// was built FROM: an error wrapping verify.ErrRejected is a verdict
// against it. KernelOf reads a kernel's files from a DTK (once: see
// verify.Kmod), for the ABI verdicts; Carried which kernels (the
// variants') a DTK carries, and the files each lacks.
type KmodVerifier interface {
	VerifyKmod(ctx context.Context, c verify.KmodCheck) (verify.KmodResult, error)
	KernelOf(ctx context.Context, dtk, arch, kernelFull string) (*kmod.Kernel, []string, error)
	Carried(ctx context.Context, dtk, arch, kernelFull string) (ledger.KernelFilesCheck, error)
}

// DefaultModulePath is where KMM looks for a kmod image's modules.
const DefaultModulePath = "opt/lib/modules/{{.KernelFull}}/"

// plan is the kind as the planner takes it.
func (k *kind) plan() plan.Kind {
	return plan.Kind{Target: k.target, What: k.what, Verified: k.verify != nil, NeedsKernelFiles: k.needsKernelFiles, Retries: k.build,
		Variants: k.variants, AsksAgain: builder.AsksOnceFor(k.builder)}
}

// kinds is the table of the kinds of image a pass builds, by name; warn
// says what is wrong with it.
func (r *Reconciler) kinds(warn func(string)) map[string]*kind {
	dtk := &kind{name: ledger.KindDTK, what: "DTK image", builder: r.Builder, target: r.Target, build: r.Build}
	out := map[string]*kind{ledger.KindDTK: dtk}
	if v := r.Verifier; v != nil {
		dtk.verify = func(ctx context.Context, pinned string, m ledger.Image) (ledger.Verdict, error) {
			if err := v.Verify(ctx, pinned, verify.Want{Kernel: m.Kernel, RTKernel: m.RTKernel, Arch: m.Arch}); err != nil {
				return ledger.Verdict{}, err
			}
			return r.verifyKernelFiles(ctx, m, kernelFilesNeededBy(out), variantsAskedBy(out))
		}
	}
	if len(r.Consumers) > 0 && r.KmodVerifier == nil {
		// Consumers only ever see verified images: without a verifier,
		// nothing is built that could not be promoted.
		warn("consumers are configured but nothing verifies kmod images (Reconciler.KmodVerifier): no consumer image is built")
		return out
	}
	for _, c := range r.Consumers {
		tmpl := c.ModulePath
		if tmpl == "" {
			tmpl = DefaultModulePath
		}
		k := &kind{name: c.Name, what: "consumer " + c.Name + "'s image", builder: c.Builder, target: c.Target, build: c.Build, needsKernelFiles: !c.SkipABI,
			variants: c.Variants}
		kv := r.KmodVerifier
		k.verify = func(ctx context.Context, pinned string, m ledger.Image) (ledger.Verdict, error) {
			modulePath, err := verify.ModulePath(tmpl, m.Kernel, m.KernelFull)
			if err != nil {
				return ledger.Verdict{}, fmt.Errorf("consumer %s: %w", c.Name, err)
			}
			res, err := kv.VerifyKmod(ctx, verify.KmodCheck{Image: pinned, Arch: m.Arch, KernelFull: m.KernelFull, ModulePath: modulePath,
				Label: c.Label, DTK: m.DTKImage, Certs: c.Certs, SkipABI: c.SkipABI, ModuleName: c.ModuleName})
			if err != nil {
				return ledger.Verdict{}, err
			}
			return ledger.Verdict{Modules: res.Modules, Checked: res.Checked}, nil
		}
		out[c.Name] = k
	}
	return out
}

// planKinds is the table as the planner takes it.
func planKinds(kinds map[string]*kind) map[string]plan.Kind {
	out := map[string]plan.Kind{}
	for name, k := range kinds {
		out[name] = k.plan()
	}
	return out
}

// kernelFilesNeededBy names the consumers whose modules are checked against
// the kernel's files of their DTK (verify.abi: true).
func kernelFilesNeededBy(kinds map[string]*kind) []string {
	return kindsWhere(kinds, func(k *kind) bool { return k.needsKernelFiles })
}

// variantsAskedBy names the consumers built for a kernel variant: which
// variants' kernels a DTK carries is read with its files, for them.
func variantsAskedBy(kinds map[string]*kind) []string {
	return kindsWhere(kinds, func(k *kind) bool {
		return slices.ContainsFunc(k.variants, func(v string) bool { return v != ledger.VariantDefault })
	})
}

func kindsWhere(kinds map[string]*kind, f func(*kind) bool) []string {
	var out []string
	for name, k := range kinds {
		if f(k) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// readKernelFiles reads whether dtk's image carries the kernel's files
// (etc/driver-toolkit/<uname -r>/), and which variants' kernels it declares
// with theirs, and says which each lacks (kept by KmodVerifier for the
// consumers' checks). Content that cannot be read is a verdict too; a read
// that failed is an error (try again later).
func (r *Reconciler) readKernelFiles(ctx context.Context, dtk ledger.Image) (ledger.KernelFilesCheck, error) {
	check, err := r.KmodVerifier.Carried(ctx, dtk.PinnedImage(), dtk.Arch, dtk.KernelFull)
	switch {
	case verify.Rejects(err):
		check = ledger.KernelFilesCheck{Missing: []string{"readable kernel files (" + err.Error() + ")"}}
	case err != nil:
		return ledger.KernelFilesCheck{}, fmt.Errorf("reading the kernel's files of the DTK %s: %w", dtk.PinnedImage(), err)
	}
	return check, nil
}

// verifyKernelFiles is the DTK's check for its consumers: when one checks
// its modules against the kernel's files (verify.abi: true), a DTK that
// lacks them is rejected, with that one reason, before any consumer image
// is built FROM it (each would be rejected for it). What it reads says
// which variants' kernels the DTK carries, for the consumers built for
// one.
func (r *Reconciler) verifyKernelFiles(ctx context.Context, dtk ledger.Image, needs, variants []string) (ledger.Verdict, error) {
	if (len(needs) == 0 && len(variants) == 0) || r.KmodVerifier == nil {
		return ledger.Verdict{}, nil
	}
	check, ok := dtk.KernelFilesOf()
	if !ok || (len(variants) > 0 && !check.VariantsRead) {
		var err error
		if check, err = r.readKernelFiles(ctx, dtk); err != nil {
			return ledger.Verdict{}, err
		}
		check.Digest, check.VariantsRead = dtk.ImageDigest, true
	}
	if missing := check.Missing; len(missing) > 0 && len(needs) > 0 {
		return ledger.Verdict{}, fmt.Errorf("%w: the DTK %s has no %s, which %s check their modules against (verify.abi: true; dtkbot's DTK recipe copies them: a recipe of your own? or set verify.abi: false)",
			verify.ErrRejected, dtk.PinnedImage(), strings.Join(missing, ", "), strings.Join(needs, ", "))
	}
	return ledger.Verdict{KernelFiles: &check}, nil
}
