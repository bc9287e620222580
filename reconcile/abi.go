package reconcile

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/dtkbot/dtkbot/kmod"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
)

// abi gives each promoted DTK, for each consumer, its ABI verdict, as
// plan.ABIDue says they are due: would the consumer's newest promoted
// modules of another kernel of the same stream and arch load on this one?
// Every symbol version (CRC) they take from the kernel, as their verified
// image's record keeps them, must equal the kernel's Module.symvers (read
// from the DTK once, as the consumers' checks read it); the verdict names
// the symbols that changed or are gone. It is recorded on the DTK (its
// issue, pull request, the API and the page show it).
func (p *pass) abi(ctx context.Context) {
	kv := p.r.KmodVerifier
	if kv == nil || p.opts.DryRun {
		return
	}
	consumers := map[string][]string{}
	for name, k := range p.kinds {
		if name != ledger.KindDTK {
			consumers[name] = k.variants
		}
	}
	due := plan.ABIDue(p.book.dtkList(p.opts.Release), p.book.imageList(""), consumers)
	for len(due) > 0 {
		key := due[0].DTK.Key()
		n := 1
		for n < len(due) && due[n].DTK.Key() == key {
			n++
		}
		p.judge(ctx, due[:n])
		due = due[n:]
	}
}

// judge gives one DTK the verdicts due on its kernel, each variant's
// kernel read once.
func (p *pass) judge(ctx context.Context, due []plan.ABICheck) {
	dtk, ok := p.book.image(due[0].DTK.Key())
	if !ok {
		return
	}
	kernels := map[string]*kmod.Kernel{}
	judged := false
	for _, c := range due {
		k, read := kernels[c.KernelFull]
		if !read {
			var err error
			if k, _, err = p.r.KmodVerifier.KernelOf(ctx, dtk.PinnedImage(), dtk.Arch, c.KernelFull); err != nil {
				p.out.warn(fmt.Sprintf("the ABI verdict of %s for consumer %s: %v", c.KernelFull, c.Consumer, err))
			}
			kernels[c.KernelFull] = k
		}
		if k == nil || k.Symvers == nil {
			continue // its DTK lacks Module.symvers: no verdict to give
		}
		v := verdict(c.Consumer, c.Variant, c.Base, k, p.now)
		dtk.Judged(v, p.now)
		judged = true
		p.log.Info().Str("kernel", dtk.Kernel).Str("consumer", c.Consumer).Str("variant", ledger.VariantName(c.Variant)).Msg(v.String())
	}
	if judged {
		p.keep(dtk, nil, "")
	}
}

// verdict compares the symbol versions base's modules (of variant) take
// from the kernel with kernel k's, the same variant's.
func verdict(consumer, variant string, base ledger.Image, k *kmod.Kernel, now time.Time) ledger.ABIVerdict {
	v := ledger.ABIVerdict{Consumer: consumer, Variant: variant, From: base.KernelFull, Image: base.PinnedImage(), At: now}
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
