package reconcile

import (
	"context"
	"errors"
	"fmt"

	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
)

// Notifier tells people about a kernel's current state. It must find and
// update what it published before rather than publish twice.
type Notifier interface {
	Notify(ctx context.Context, k ledger.Image) error
}

// Previewer is a Notifier that can say what it would do without doing it.
type Previewer interface {
	Preview(ctx context.Context, k ledger.Image) (string, error)
}

// notify announces every kernel whose notice changed since it was last
// announced (plan.Notifications; a dry run previews). GitHub failures never
// fail the pass: the notification is retried on the next one.
func (p *pass) notify(ctx context.Context) {
	if p.r.Notifier == nil {
		return
	}
	actions := plan.Notifications(p.book.dtkList(p.opts.Release), p.noticeHash)
	for _, a := range actions {
		k, _ := p.book.image(a.KernelKey)
		if p.opts.DryRun {
			p.out.took(a, p.preview(ctx, k))
			continue
		}
		p.out.took(a, p.announce(ctx, a, k))
	}
}

// announce tells people about kernel k, and records that they were told.
func (p *pass) announce(ctx context.Context, a plan.Action, k ledger.Image) outcome {
	err := p.r.Notifier.Notify(ctx, k)
	switch {
	case errors.Is(err, builder.ErrNotConfigured):
		return skip(err.Error())
	case err != nil:
		p.out.deferred(fmt.Errorf("notifying kernel %s: %w", a.KernelKey, err), "notification deferred")
		return outcome{failed, "deferred: " + err.Error()}
	}
	k.Notified(p.noticeHash(k))
	if err := p.book.putImage(k, p.now, &a, "ok"); err != nil {
		p.out.deferred(err, "notification deferred")
	}
	return did("ok")
}

// preview says what the notifier would do about kernel k.
func (p *pass) preview(ctx context.Context, k ledger.Image) outcome {
	pv, ok := p.r.Notifier.(Previewer)
	if !ok {
		return outcome{}
	}
	out, err := pv.Preview(ctx, k)
	if err != nil {
		out = "cannot tell: " + err.Error()
	}
	return outcome{unknown, out}
}
