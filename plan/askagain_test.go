package plan

import (
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/ledger"
)

// TestAnUnacknowledgedAttemptIsAskedAgainWhenThatBuildsOnce: an attempt
// recorded and never acknowledged, with no backend report, is asked again
// at once (not spent) when no build of its backend outlives the process
// that asked (Kind.AsksAgain: podman, buildah); otherwise (a webhook, a
// workflow) it is waited for until build.timeout, then spent. An acknowledged attempt is never asked again.
func TestAnUnacknowledgedAttemptIsAskedAgainWhenThatBuildsOnce(t *testing.T) {
	asksAgain := dtkKind(true)
	k := asksAgain[ledger.KindDTK]
	k.AsksAgain = true
	asksAgain[ledger.KindDTK] = k

	c := lookAt(requested(1, now.Add(-time.Minute), false), Seen{Staging: staging("")}, asksAgain)
	if summary(c.Actions) != "build" || !c.Actions[0].Again || c.Actions[0].Image != stagingA ||
		!strings.Contains(c.Actions[0].Reason, "attempt 1 was recorded and its request never acknowledged") {
		t.Fatalf("asked again: %s %+v", summary(c.Actions), c.Actions)
	}
	if m := after(c, requested(1, now, false)); m.Attempts != 1 || m.State != ledger.StateBuildRequested {
		t.Errorf("the attempt was spent: %+v", m)
	}
	if c := lookAt(requested(1, now.Add(-time.Minute), true), Seen{Staging: staging("")}, asksAgain); summary(c.Actions) != "" {
		t.Errorf("an acknowledged attempt asked again: %s", summary(c.Actions))
	}
	if c := lookAt(requested(1, now.Add(-time.Minute), false), Seen{Staging: staging("")}, dtkKind(true)); summary(c.Actions) != "" {
		t.Errorf("a backend that may build twice is asked again: %s", summary(c.Actions))
	}
	c = lookAt(requested(1, now.Add(-2*time.Hour), false), Seen{Staging: staging("")}, dtkKind(true))
	if m := after(c, requested(1, now, false)); m.State != ledger.StateNew || !strings.Contains(m.Reason, "did not appear within") {
		t.Errorf("after the timeout, a backend that may build twice: %s %q", m.State, m.Reason)
	}
}
