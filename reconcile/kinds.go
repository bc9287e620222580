package reconcile

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	"github.com/dtkbot/dtkbot/build"
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
	builder build.Builder
	target  plan.Target
	build   BuildPolicy
	// verify checks an image pinned by digest; an error wrapping
	// verify.ErrRejected rejects it; nil: the kind's images are not
	// verified (build.verify: false), and are promoted once built.
	// It may record on m what it found (a kmod image's modules).
	verify func(ctx context.Context, pinned string, m *ledger.Image) error
	// needsKernelFiles: its images are checked against the kernel's files
	// of the DTK they are built FROM (a consumer's verify.abi: true).
	needsKernelFiles bool
}

// Consumer is a team's image built FROM every promoted DTK: a driver
// container, a kmod image KMM loads. It is a kind of image like the DTK:
// the same backends, the same lifecycle and the same guarantees.
type Consumer struct {
	Name    string
	Builder build.Builder
	// Target: Repository, KernelTag (default {{.KernelFull}}), ReleaseTags,
	// FloatingTags, Mirrors, StagingRepository and StagingTag.
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
}

// KmodVerifier checks a consumer's image against the kernel of the DTK it
// was built FROM: an error wrapping verify.ErrRejected is a verdict
// against it. KernelOf reads a kernel's files from a DTK (once: see
// verify.Kmod), for the ABI verdicts.
type KmodVerifier interface {
	VerifyKmod(ctx context.Context, c verify.KmodCheck) (verify.KmodResult, error)
	KernelOf(ctx context.Context, dtk, arch, kernelFull string) (*kmod.Kernel, []string, error)
}

// DefaultModulePath is where KMM looks for a kmod image's modules.
const DefaultModulePath = "opt/lib/modules/{{.KernelFull}}/"

// kinds is the table of the kinds of image a pass builds, by name.
func (r *Reconciler) kinds(p *pass) map[string]*kind {
	dtk := &kind{name: ledger.KindDTK, what: "DTK image", builder: r.Builder, target: r.Target, build: r.Build}
	if v := r.Verifier; v != nil {
		dtk.verify = func(ctx context.Context, pinned string, m *ledger.Image) error {
			if err := v.Verify(ctx, pinned, m.Kernel, m.Arch); err != nil {
				return err
			}
			return p.verifyKernelFiles(ctx, m)
		}
	}
	out := map[string]*kind{ledger.KindDTK: dtk}
	if len(r.Consumers) > 0 && r.KmodVerifier == nil {
		// Consumers only ever see verified images: without a verifier,
		// nothing is built that could not be promoted.
		p.warn("consumers are configured but nothing verifies kmod images (Reconciler.KmodVerifier): no consumer image is built")
		return out
	}
	for _, c := range r.Consumers {
		tmpl := c.ModulePath
		if tmpl == "" {
			tmpl = DefaultModulePath
		}
		k := &kind{name: c.Name, what: "consumer " + c.Name + "'s image", builder: c.Builder, target: c.Target, build: c.Build, needsKernelFiles: !c.SkipABI}
		kv := r.KmodVerifier
		k.verify = func(ctx context.Context, pinned string, m *ledger.Image) error {
			modulePath, err := verify.ModulePath(tmpl, m.Kernel, m.KernelFull)
			if err != nil {
				return fmt.Errorf("consumer %s: %w", c.Name, err)
			}
			res, err := kv.VerifyKmod(ctx, verify.KmodCheck{Image: pinned, Arch: m.Arch, KernelFull: m.KernelFull, ModulePath: modulePath,
				Label: c.Label, DTK: m.DTKImage, Certs: c.Certs, SkipABI: c.SkipABI, ModuleName: c.ModuleName})
			if err != nil {
				return err
			}
			m.Modules, m.Checked = res.Modules, res.Checked
			return nil
		}
		out[c.Name] = k
	}
	return out
}

// planKinds is the table as the planner takes it.
func (p *pass) planKinds() map[string]plan.Kind {
	out := map[string]plan.Kind{}
	for name, k := range p.kinds {
		out[name] = plan.Kind{Target: k.target, Verified: k.verify != nil, NeedsKernelFiles: k.needsKernelFiles}
	}
	return out
}

// addConsumerImages gives every promoted DTK an image of each consumer (new,
// to be built FROM it), and keeps the consumers' images of each kernel up
// to date with its DTK: the releases that ship the kernel, and the DTK by
// digest. It returns the keys of the images it added.
func (p *pass) addConsumerImages() []string {
	var added []string
	for _, dtk := range p.view.dtkList(p.opts.Release) {
		if dtk.State != ledger.StatePromoted || dtk.ImageDigest == "" {
			continue // never before the DTK is verified and promoted
		}
		for name := range p.kinds {
			if name == ledger.KindDTK {
				continue
			}
			key := ledger.ImageKey(name, dtk.KernelKey())
			m, ok := p.image(key)
			if !ok {
				m = ledger.Image{Consumer: name, Stream: dtk.Stream, Arch: dtk.Arch, Kernel: dtk.Kernel, KernelFull: dtk.KernelFull,
					RTKernel: dtk.RTKernel, RHEL: dtk.RHEL, State: ledger.StateNew, FirstSeen: p.now, FirstSource: dtk.FirstSource}
				added = append(added, key)
			}
			if ok && slices.Equal(m.Releases, dtk.Releases) && m.DTKImage == dtk.PinnedImage() {
				continue
			}
			m.Releases, m.DTKImage, m.UpdatedAt = dtk.Releases, dtk.PinnedImage(), p.now
			p.putImage(m)
		}
	}
	return added
}

// kernelFilesNeededBy names the consumers whose modules are checked against
// the kernel's files of their DTK (verify.abi: true).
func (p *pass) kernelFilesNeededBy() []string {
	var out []string
	for name, k := range p.kinds {
		if k.needsKernelFiles {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// readKernelFiles records on dtk whether its image carries the kernel's
// files (etc/driver-toolkit/<uname -r>/), read once per digest (and kept
// by KmodVerifier for the consumers' checks). Content that cannot be read
// is a verdict too; a read that failed is an error (try again later).
func (p *pass) readKernelFiles(ctx context.Context, dtk *ledger.Image) error {
	if _, ok := dtk.KernelFilesOf(); ok {
		return nil
	}
	_, missing, err := p.r.KmodVerifier.KernelOf(ctx, dtk.PinnedImage(), dtk.Arch, dtk.KernelFull)
	switch {
	case verify.Rejects(err):
		missing = []string{"readable kernel files (" + err.Error() + ")"}
	case err != nil:
		return fmt.Errorf("reading the kernel's files of the DTK %s: %w", dtk.PinnedImage(), err)
	}
	dtk.KernelFiles = &ledger.KernelFilesCheck{Digest: dtk.ImageDigest, Missing: missing}
	return nil
}

// verifyKernelFiles is the DTK's check for its consumers: when one checks
// its modules against the kernel's files (verify.abi: true), a DTK that
// lacks them is rejected, with that one reason, before any consumer image
// is built FROM it (each would be rejected for it).
func (p *pass) verifyKernelFiles(ctx context.Context, dtk *ledger.Image) error {
	needs := p.kernelFilesNeededBy()
	if len(needs) == 0 || p.r.KmodVerifier == nil {
		return nil
	}
	if err := p.readKernelFiles(ctx, dtk); err != nil {
		return err
	}
	if missing := dtk.KernelFiles.Missing; len(missing) > 0 {
		return fmt.Errorf("%w: the DTK %s has no %s, which %s check their modules against (verify.abi: true; dtkbot's DTK recipe copies them: a recipe of your own? or set verify.abi: false)",
			verify.ErrRejected, dtk.PinnedImage(), strings.Join(missing, ", "), strings.Join(needs, ", "))
	}
	return nil
}

// checkKernelFiles reads, once per DTK image, whether each promoted DTK
// carries the kernel's files, when a consumer needs them and its
// verification did not say (a DTK promoted before a consumer needed them):
// the plan builds no such consumer's image FROM a DTK before it knows, and
// holds them, with that one reason, FROM one that lacks them.
func (p *pass) checkKernelFiles(ctx context.Context) {
	if len(p.kernelFilesNeededBy()) == 0 || p.r.KmodVerifier == nil {
		return
	}
	for _, dtk := range p.view.dtkList(p.opts.Release) {
		if _, known := dtk.KernelFilesOf(); known || dtk.State != ledger.StatePromoted || dtk.ImageDigest == "" {
			continue
		}
		if err := p.readKernelFiles(ctx, &dtk); err != nil {
			p.fail(err)
			continue
		}
		dtk.UpdatedAt = p.now
		p.putImage(dtk)
		if len(dtk.KernelFiles.Missing) > 0 {
			p.warn(plan.KernelFilesMissing(dtk))
		}
	}
}
