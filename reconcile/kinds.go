package reconcile

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"

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
			return v.Verify(ctx, pinned, m.Kernel, m.Arch)
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
		k := &kind{name: c.Name, what: "consumer " + c.Name + "'s image", builder: c.Builder, target: c.Target, build: c.Build}
		kv := r.KmodVerifier
		k.verify = func(ctx context.Context, pinned string, m *ledger.Image) error {
			modulePath, err := verify.ModulePath(tmpl, m.Kernel, m.KernelFull)
			if err != nil {
				return fmt.Errorf("consumer %s: %w", c.Name, err)
			}
			res, err := kv.VerifyKmod(ctx, verify.KmodCheck{Image: pinned, Arch: m.Arch, KernelFull: m.KernelFull, ModulePath: modulePath,
				Label: c.Label, DTK: m.DTKImage, Certs: c.Certs, SkipABI: c.SkipABI})
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
		out[name] = plan.Kind{Target: k.target, Verified: k.verify != nil}
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
