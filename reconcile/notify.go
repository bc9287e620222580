package reconcile

import (
	"context"
	"errors"
	"fmt"

	"github.com/dtkbot/dtkbot/rebuild"
	"github.com/dtkbot/dtkbot/state"
)

// Previewer is a Notifier that can say what it would do without doing it.
type Previewer interface {
	Preview(ctx context.Context, k state.Kernel) (string, error)
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
		k := p.view.kernels[a.KernelKey]
		err := p.r.Notifier.Notify(ctx, k)
		switch {
		case errors.Is(err, rebuild.ErrNotConfigured):
			a.Result = "skipped: " + err.Error()
			continue
		case err != nil:
			a.Result = "deferred: " + err.Error()
			p.deferred(fmt.Errorf("notifying kernel %s: %w", a.KernelKey, err))
			continue
		}
		a.Result = "ok"
		k.NotifiedState, k.NotifiedHash = k.State, p.noticeHash(k)
		if err := p.recordKernel(k, *a, "ok"); err != nil {
			p.deferred(err)
		}
	}
	p.res.Actions = append(p.res.Actions, actions...)
}

func (p *pass) notifications() []rebuild.Action {
	if p.r.Notifier == nil {
		return nil
	}
	return rebuild.Notifications(p.view.kernelList(p.opts.Release), p.noticeHash)
}

// preview fills a dry run's notify actions with what the notifier would do.
func (p *pass) preview(ctx context.Context, actions []rebuild.Action) []rebuild.Action {
	pv, ok := p.r.Notifier.(Previewer)
	if !ok {
		return actions
	}
	for i := range actions {
		out, err := pv.Preview(ctx, p.view.kernels[actions[i].KernelKey])
		if err != nil {
			out = "cannot tell: " + err.Error()
		}
		actions[i].Result = out
	}
	return actions
}
