package upgradegraph

import (
	"errors"
	"testing"

	"github.com/dtkbot/dtkbot/internal/cvotest"
)

// reasonPattern is a Kubernetes condition reason's.
var reasonPattern = cvotest.ReasonPattern

// cvoView decodes a served graph for a cluster at current as the CVO does,
// failing the test where the CVO would fail, drop an update or write a
// status the API server refuses.
func cvoView(t *testing.T, body []byte, current string) ([]cvotest.Release, []cvotest.ConditionalUpdate) {
	t.Helper()
	_, updates, conditional, err := cvotest.GetUpdates(body, current)
	if err != nil {
		t.Fatalf("the CVO at %s: %v", current, err)
	}
	for _, c := range conditional {
		if p := cvotest.Problems(c); len(p) > 0 {
			t.Errorf("the CVO at %s, update to %s: %v", current, c.Release.Version, p)
		}
	}
	return updates, conditional
}

var errNotOffered = errors.New("not offered")

// offered finds the update to target a cluster at current is offered:
// recommended (no risks) or conditional (its risks).
func offered(t *testing.T, body []byte, current, target string) (recommended bool, risks []cvotest.Risk, err error) {
	t.Helper()
	updates, conditional := cvoView(t, body, current)
	for _, u := range updates {
		if u.Version == target {
			return true, nil, nil
		}
	}
	for _, c := range conditional {
		if c.Release.Version == target {
			return false, c.Risks, nil
		}
	}
	return false, nil, errNotOffered
}
