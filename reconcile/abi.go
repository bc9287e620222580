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
	var consumers []string
	for name := range p.kinds {
		if name != ledger.KindDTK {
			consumers = append(consumers, name)
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

// judge gives one DTK the verdicts due on its kernel, read once.
func (p *pass) judge(ctx context.Context, due []plan.ABICheck) {
	dtk, ok := p.book.image(due[0].DTK.Key())
	if !ok {
		return
	}
	k, _, err := p.r.KmodVerifier.KernelOf(ctx, dtk.PinnedImage(), dtk.Arch, dtk.KernelFull)
	if err != nil {
		p.out.warn(fmt.Sprintf("the ABI verdict of %s for consumer %s: %v", dtk.KernelFull, due[0].Consumer, err))
		return
	}
	if k.Symvers == nil {
		return // its DTK lacks Module.symvers: no verdict to give
	}
	for _, c := range due {
		v := verdict(c.Consumer, c.Base, k, p.now)
		dtk.Judged(v, p.now)
		p.log.Info().Str("kernel", dtk.Kernel).Str("consumer", c.Consumer).Msg(v.String())
	}
	p.keep(dtk, nil, "")
}

// verdict compares the symbol versions base's modules take from the kernel
// with kernel k's.
func verdict(consumer string, base ledger.Image, k *kmod.Kernel, now time.Time) ledger.ABIVerdict {
	v := ledger.ABIVerdict{Consumer: consumer, From: base.KernelFull, Image: base.PinnedImage(), At: now}
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
