package reconcile

import (
	"context"
	"errors"
	"fmt"

	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
)

// Previewer is a Notifier that can say what it would do without doing it.
type Previewer interface {
	Preview(ctx context.Context, k ledger.Image) (string, error)
}

// notify announces every kernel whose state changed since its last notice
// (a dry run previews). GitHub failures never fail the pass: the
// notification is retried on the next one.
func (p *pass) notify(ctx context.Context) {
	actions := p.notifications()
	if p.opts.DryRun {
		p.res.Actions = append(p.res.Actions, p.preview(ctx, actions)...)
		return
	}
	for i := range actions {
		a := &actions[i]
		k, _ := p.image(a.KernelKey)
		err := p.r.Notifier.Notify(ctx, k)
		switch {
		case errors.Is(err, builder.ErrNotConfigured):
			a.Result = "skipped: " + err.Error()
			continue
		case err != nil:
			a.Result = "deferred: " + err.Error()
			p.deferred(fmt.Errorf("notifying kernel %s: %w", a.KernelKey, err))
			continue
		}
		a.Result = "ok"
		k.NotifiedState, k.NotifiedHash = k.State, p.noticeHash(k)
		if err := p.recordImage(k, *a, "ok"); err != nil {
			p.deferred(err)
		}
	}
	p.res.Actions = append(p.res.Actions, actions...)
}

func (p *pass) notifications() []plan.Action {
	if p.r.Notifier == nil {
		return nil
	}
	return plan.Notifications(p.view.dtkList(p.opts.Release), p.noticeHash)
}

// preview fills a dry run's notify actions with what the notifier would do.
func (p *pass) preview(ctx context.Context, actions []plan.Action) []plan.Action {
	pv, ok := p.r.Notifier.(Previewer)
	if !ok {
		return actions
	}
	for i := range actions {
		k, _ := p.image(actions[i].KernelKey)
		out, err := pv.Preview(ctx, k)
		if err != nil {
			out = "cannot tell: " + err.Error()
		}
		actions[i].Result = out
	}
	return actions
}
