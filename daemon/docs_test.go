package daemon

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/internal/need"
	"github.com/dtkbot/dtkbot/state"

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
	r := start(t, servicePasser{}, "", func(d *Daemon) {
		d.Registry = registry.New(registry.Options{})
		d.Upgrades.Consumers = []string{"simple-kmod"} // dtkbot_consumer_images has its series
	})
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

// TestEveryMetricExistsFromTheStart: on an empty state, before any pass
// has finished, every documented metric has a series (at 0), the kernels
// of every state and each configured service's included, so that an alert
// on one sees 0, not nothing; the exposition parses (promtool, when
// installed, and Prometheus's own parser).
func TestEveryMetricExistsFromTheStart(t *testing.T) {
	data, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePasser{}
	p.gate.Lock() // the first pass does not end before /metrics is read
	store, err := state.Open(filepath.Join(t.TempDir(), "empty.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Passer: p, Store: store, Registry: registry.New(registry.Options{}), Schedule: "@every 1h", StaleAfter: time.Hour,
		Grace: time.Second, Version: "test", Log: zerolog.Nop(), Services: []string{"update-graph", "github", "build-webhook ci.example.com"}}
	d.Upgrades.Consumers = []string{"simple-kmod", "acme-nic"}
	d.Upgrades.Variants = map[string][]string{"acme-nic": {ledger.VariantDefault, ledger.VariantRT}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, ln) }()
	defer func() { p.gate.Unlock(); cancel(); <-done }()
	_, metrics := get(t, "http://"+ln.Addr().String()+"/metrics")

	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(metrics))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, metrics)
	}
	for _, m := range regexp.MustCompile("(?m)^\\| `(dtkbot_[a-z_]+)` \\|").FindAllStringSubmatch(string(data), -1) {
		f, ok := families[m[1]]
		if !ok || len(f.GetMetric()) == 0 {
			t.Errorf("%s has no series on an empty state", m[1])
		}
	}
	for _, want := range []string{`dtkbot_kernels{state="promoted"} 0`, `dtkbot_kernels{state="failed"} 0`, `dtkbot_kernels{state="build_requested"} 0`,
		`dtkbot_service_stopped_passes_total{service="update-graph"} 0`, `dtkbot_service_unanswered_total{service="github"} 0`,
		`dtkbot_service_requests_total{service="build-webhook ci.example.com"} 0`, `dtkbot_service_skipped_total{service="github"} 0`,
		"dtkbot_passes_total 0", `dtkbot_releases_held{reason="content"} 0`,
		`dtkbot_consumer_images{consumer="simple-kmod",state="promoted",variant="default"} 0`,
		`dtkbot_consumer_images{consumer="acme-nic",state="missing",variant="rt"} 0`,
		`dtkbot_consumer_images{consumer="acme-nic",state="pending",variant="default"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	promtool := need.Command(t, "promtool", "Debian's prometheus package has it; .ci/run installs it")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(metrics)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
