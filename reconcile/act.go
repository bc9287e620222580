package reconcile

import (
	"context"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
)

// maxRounds bounds the rounds of one pass. A synchronous backend (podman)
// has pushed by the time it returns, and a promoted DTK is what its
// consumers are built FROM, so one pass may take a new kernel all the way,
// a round for each step: its DTK found and verified, promoted, settled;
// then each consumer's image looked for, built, found and verified,
// promoted, settled (eight rounds in TestConsumerBuiltOncePerKernelAfterItsDTK,
// the last finding nothing to do).
const maxRounds = 12

// act moves every image of every kind as far as it goes this pass, round
// after round until nothing moves: observe what the registry and the
// backends say of the images that may have news, let plan.Plan decide, and
// apply what it decided. The first round looks at every image awaited;
// each later one only at those the last one asked a build for or added. A
// dry run plans once and reports the plan (apply takes no action in it).
func (p *pass) act(ctx context.Context) {
	look := p.awaited()
	for range maxRounds {
		seen := p.eyes.images(ctx, p.book.imagesOf(look))
		files := p.eyes.kernelFiles(ctx, plan.KernelFilesDue(p.book.dtkList(p.opts.Release), planKinds(p.kinds)))
		applied := p.apply(ctx, plan.Plan(p.input(seen, files)))
		if !applied.moved {
			return
		}
		look = applied.look
	}
}

// awaited lists the images, of every kind, that the registry may have news
// of (plan.Awaited).
func (p *pass) awaited() []string {
	var out []string
	for _, m := range p.book.imageList(p.opts.Release) {
		if plan.Awaited(m) {
			out = append(out, m.Key())
		}
	}
	return out
}

// input is what plan.Plan decides a round from.
func (p *pass) input(seen map[string]plan.Seen, kernelFiles map[string]ledger.KernelFilesCheck) plan.Input {
	return plan.Input{Now: p.now, Releases: p.book.releaseList(p.opts.Release), Images: p.book.imageList(p.opts.Release),
		Promoted: p.book.promotions(), Held: p.book.heldList(p.opts.Release), Kinds: planKinds(p.kinds), Policy: p.r.Policy,
		Seen: seen, KernelFiles: kernelFiles, VerifyInterruptions: p.r.VerifyInterruptions, Done: p.done}
}
