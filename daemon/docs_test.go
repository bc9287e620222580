package daemon

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/reconcile"
	"github.com/dtkbot/dtkbot/registry"
)

// servicePasser is a pass that asked an outside service, so that every
// metric has a series.
type servicePasser struct{}

func (servicePasser) RunOnce(context.Context, time.Time, reconcile.Options) (*reconcile.Result, error) {
	return &reconcile.Result{Releases: 1, Services: []ledger.ServiceReport{{Service: "update-graph", Requests: 3, Failures: 3, Skipped: 1, Open: true}}}, nil
}

// TestDocumentedMetricsAreServed: docs/api.md's metrics table names every
// dtkbot metric /metrics serves, with its labels, and nothing else.
func TestDocumentedMetricsAreServed(t *testing.T) {
	data, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{} // name -> labels
	for _, m := range regexp.MustCompile("(?m)^\\| `(dtkbot_[a-z_]+)` \\|([^|]*)\\|").FindAllStringSubmatch(string(data), -1) {
		documented[m[1]] = strings.Trim(strings.TrimSpace(m[2]), "`")
	}
	r := start(t, servicePasser{}, "", func(d *Daemon) { d.Registry = registry.New(registry.Options{}) })
	waitFor(t, func() bool { return !r.d.m().lastSuccessAt().IsZero() })
	_, metrics := get(t, r.url+"/metrics")
	served := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(dtkbot_[a-z_]+?)(_bucket|_sum|_count)?(\{([^}]*)\})? `).FindAllStringSubmatch(metrics, -1) {
		name := m[1]
		if m[2] != "" && !strings.Contains(metrics, "# TYPE "+name+" histogram") {
			name += m[2] // a counter that ends in _count, say
		}
		var labels []string
		for _, kv := range strings.Split(m[4], ",") {
			if k, _, ok := strings.Cut(kv, "="); ok && k != "le" {
				labels = append(labels, k)
			}
		}
		served[name] = strings.Join(labels, ", ")
	}
	for name, labels := range served {
		want, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("%s is served but not in docs/api.md", name)
		case want != labels:
			t.Errorf("%s has labels %q, docs/api.md says %q", name, labels, want)
		}
	}
	var missing []string
	for name := range documented {
		if _, ok := served[name]; !ok {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("docs/api.md documents metrics /metrics does not serve: %v", missing)
	}
}
