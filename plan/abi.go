package plan

import (
	"slices"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/version"
)

// ABICheck is an ABI verdict due: would Consumer's modules of Base (its
// newest promoted image of another kernel of the DTK's stream and arch, of
// the same variant) load on the DTK's kernel of that variant (KernelFull)?
type ABICheck struct {
	DTK      ledger.Image
	Consumer string
	Variant  string
	// KernelFull is the uname -r of the DTK's kernel of Variant.
	KernelFull string
	Base       ledger.Image
}

// ABIDue lists the ABI verdicts due, DTK by DTK: each promoted DTK of dtks,
// for each consumer and each variant it asks for (consumers: name ->
// variants) without a verdict on it, as soon as there is a module set of
// that variant to judge (a DTK promoted before any gets none); a variant is
// judged only on a DTK known to carry it. A variant is compared with the
// same variant: an RT module set against the RT kernel. Each is decided
// once per kernel, consumer and variant. images are every image of the
// ledger.
func ABIDue(dtks, images []ledger.Image, consumers map[string][]string) []ABICheck {
	var out []ABICheck
	for _, dtk := range dtks {
		if !dtk.IsDTK() || !builtFrom(dtk) {
			continue
		}
		for _, name := range sortedKeys(consumers) {
			for _, v := range (Kind{Variants: consumers[name]}).variants() {
				if slices.ContainsFunc(dtk.ABI, func(j ledger.ABIVerdict) bool { return j.Consumer == name && j.Variant == v }) {
					continue
				}
				full := dtk.KernelFull
				if v != ledger.VariantDefault {
					vk, ok := dtk.Carries(v)
					if !ok {
						continue
					}
					full = vk.KernelFull
				}
				if base, ok := newestModuleSet(images, name, v, dtk); ok {
					out = append(out, ABICheck{DTK: dtk, Consumer: name, Variant: v, KernelFull: full, Base: base})
				}
			}
		}
	}
	return out
}

// newestModuleSet is consumer's newest promoted image of variant v, with
// its modules recorded, of another kernel of dtk's stream and arch,
// promoted no later than dtk (of those promoted at once, the kernel before
// dtk's).
func newestModuleSet(images []ledger.Image, consumer, v string, dtk ledger.Image) (ledger.Image, bool) {
	var best ledger.Image
	found := false
	for _, m := range images {
		if m.Consumer != consumer || m.Variant != v || m.Stream != dtk.Stream || m.Arch != dtk.Arch || m.Kernel == dtk.Kernel ||
			m.State != ledger.StatePromoted || len(m.Modules) == 0 || m.PromotedAt.After(dtk.PromotedAt) {
			continue
		}
		if !found || m.PromotedAt.After(best.PromotedAt) || (m.PromotedAt.Equal(best.PromotedAt) && closer(m.Kernel, best.Kernel, dtk.Kernel)) {
			best, found = m, true
		}
	}
	return best, found
}

// closer says whether kernel a is a better base than b for a verdict on
// kernel k, among module sets promoted at once: the newest kernel before k,
// else the newest.
func closer(a, b, k string) bool {
	aBefore, bBefore := version.CompareKernel(a, k) < 0, version.CompareKernel(b, k) < 0
	if aBefore != bBefore {
		return aBefore
	}
	return version.CompareKernel(a, b) > 0
}
