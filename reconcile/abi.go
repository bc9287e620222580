package reconcile

import (
	"context"
	"fmt"
	"slices"

	"github.com/dtkbot/dtkbot/kmod"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/version"
)

// abi gives each promoted DTK, for each consumer, its ABI verdict: would
// the consumer's newest promoted modules of another kernel of the same
// stream and arch load on this one? Every symbol version (CRC) they take
// from the kernel, as their verified image's record keeps them, must equal
// the kernel's Module.symvers (read from the DTK once, as the consumers'
// checks read it); the verdict names the symbols that changed or are gone.
// It is decided once per kernel and consumer, as soon as there is a module
// set to judge, and recorded on the DTK (its issue, pull request, the API
// and the page show it). A DTK promoted before any module set exists gets
// none; nothing is read then.
func (p *pass) abi(ctx context.Context) {
	kv := p.r.KmodVerifier
	if kv == nil || p.opts.DryRun {
		return
	}
	var consumers []string
	for name := range p.kinds {
		if name != ledger.KindDTK {
			consumers = append(consumers, name)
		}
	}
	slices.Sort(consumers)
	if len(consumers) == 0 {
		return
	}
	images := p.view.imageList("")
	for _, dtk := range p.view.dtkList(p.opts.Release) {
		if dtk.State != ledger.StatePromoted || dtk.ImageDigest == "" {
			continue
		}
		changed := false
		for _, name := range consumers {
			if slices.ContainsFunc(dtk.ABI, func(v ledger.ABIVerdict) bool { return v.Consumer == name }) {
				continue
			}
			base, ok := newestModuleSet(images, name, dtk)
			if !ok {
				continue
			}
			k, _, err := kv.KernelOf(ctx, dtk.PinnedImage(), dtk.Arch, dtk.KernelFull)
			if err != nil {
				p.warn(fmt.Sprintf("the ABI verdict of %s for consumer %s: %v", dtk.KernelFull, name, err))
				break
			}
			if k.Symvers == nil {
				break // its DTK lacks Module.symvers: no verdict to give
			}
			dtk.ABI = append(dtk.ABI, verdict(name, base, k, p))
			changed = true
			p.log.Info().Str("kernel", dtk.Kernel).Str("consumer", name).Msg(dtk.ABI[len(dtk.ABI)-1].String())
		}
		if changed {
			dtk.UpdatedAt = p.now
			p.putImage(dtk)
		}
	}
}

// newestModuleSet is consumer's newest promoted image, with its modules
// recorded, of another kernel of dtk's stream and arch, promoted no later
// than dtk (of those promoted at once, the kernel before dtk's).
func newestModuleSet(images []ledger.Image, consumer string, dtk ledger.Image) (ledger.Image, bool) {
	var best ledger.Image
	found := false
	for _, m := range images {
		if m.Consumer != consumer || m.Stream != dtk.Stream || m.Arch != dtk.Arch || m.Kernel == dtk.Kernel ||
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

func verdict(consumer string, base ledger.Image, k *kmod.Kernel, p *pass) ledger.ABIVerdict {
	v := ledger.ABIVerdict{Consumer: consumer, From: base.KernelFull, Image: base.PinnedImage(), At: p.now}
	changed, gone := map[string]bool{}, map[string]bool{}
	for _, m := range base.Modules {
		for _, c := range kmod.CompareImports(m.Imports, k) {
			if c.Gone {
				gone[c.Symbol] = true
			} else {
				changed[c.Symbol] = true
			}
		}
	}
	for s := range changed {
		v.Changed = append(v.Changed, s)
	}
	for s := range gone {
		v.Gone = append(v.Gone, s)
	}
	slices.Sort(v.Changed)
	slices.Sort(v.Gone)
	v.Loads = len(v.Changed) == 0 && len(v.Gone) == 0
	return v
}
