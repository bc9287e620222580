package reconcile

// One of each way of deciding outside the plan, for TestOutsidersAreFound;
// never compiled.

import (
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
)

func outside(m ledger.Image) []plan.Action {
	a := plan.Action{Type: plan.ActionBuild}
	b := &plan.Action{}
	c := []plan.Action{{Type: plan.ActionHold}}
	var d plan.Action
	if m.State == ledger.StateNew || m.State != ledger.StateBuilt {
		return nil
	}
	m.State = ledger.StateFailed
	_ = ledger.Image{State: ledger.StateNew}
	switch m.State {
	case ledger.StateVerified, ledger.StatePromoted:
	}
	m.Reason, m.State = "failed", ledger.StateFailed
	states := []string{ledger.StateNew, ledger.StateFailed}
	_ = states
	return append(c, a, *b, d)
}
