package daemon

import (
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dtkbot/dtkbot/coverage"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/reconcile"
	"github.com/dtkbot/dtkbot/redact"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/upgradegraph"
)

// metrics are the daemon's Prometheus metrics, with the Go runtime's and
// the process's (go_*, process_*) that dashboards and alerts expect. The
// ledger's counts and the registry client's counters are read at scrape
// time.
type metrics struct {
	reg *prometheus.Registry

	passes, passErrors, skipped             prometheus.Counter
	inspected, graphRequests, checks        prometheus.Counter
	rejected, drifted                       prometheus.Counter
	duration                                prometheus.Histogram
	lastDuration, lastSuccess, releasesSeen prometheus.Gauge
	// Per outside service (the service label: signature-store,
	// update-graph, "release-controller HOST", github, github-actions,
	// "build-webhook HOST"): requests, those unanswered, those skipped,
	// and the passes that stopped asking it.
	serviceRequests, serviceFailures, serviceSkipped, serviceOpened *prometheus.CounterVec
	// The update graph served to clusters: requests by status, and
	// computations (once per change of the state, per channel and arch).
	upgradeRequests *prometheus.CounterVec
	upgradeComputes prometheus.Counter

	mu       sync.Mutex
	lastOK   time.Time
	lastPass *passSummary
}

// passSummary is the last pass, for /status.
type passSummary struct {
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Error    string            `json:"error,omitempty"`
	Result   *reconcile.Result `json:"result,omitempty"`
}

// consumerVariants are the kernel variants each consumer asks for, as
// people name them (default, rt, 64k): the config's, which the update
// graph's options carry.
func consumerVariants(o upgradegraph.Options) map[string][]string {
	out := map[string][]string{}
	for _, c := range o.Consumers {
		vs := o.Variants[c]
		if len(vs) == 0 {
			vs = []string{ledger.VariantDefault}
		}
		for _, v := range vs {
			out[c] = append(out[c], ledger.VariantName(v))
		}
	}
	return out
}

// newMetrics registers dtkbot's metrics; variants (consumer -> the kernel
// variants it asks for, by name) give dtkbot_consumer_images its series
// from the start.
func newMetrics(version string, store *state.Store, reg *registry.Client, index func() (*coverage.Index, error), services []string,
	variants map[string][]string) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		m.reg.MustRegister(c)
		return c
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		m.reg.MustRegister(g)
		return g
	}
	m.passes = counter("dtkbot_passes_total", "Reconcile passes run.")
	m.passErrors = counter("dtkbot_pass_errors_total", "Reconcile passes that failed (in part or whole).")
	m.skipped = counter("dtkbot_passes_skipped_total", "Passes not started because one was running.")
	m.inspected = counter("dtkbot_releases_inspected_total", "Payloads read (each digest once in its life).")
	m.graphRequests = counter("dtkbot_graph_requests_total", "Update graph requests.")
	m.checks = counter("dtkbot_image_checks_total", "HEAD requests for awaited kernel images.")
	m.rejected = counter("dtkbot_verification_failures_total", "Built images that failed verification (never promoted).")
	m.drifted = counter("dtkbot_tag_drift_total", "Promoted tags the drift audit found moved or gone.")
	m.duration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dtkbot_pass_duration_seconds", Help: "Duration of reconcile passes.",
		Buckets: []float64{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600}})
	m.reg.MustRegister(m.duration)
	vec := func(name, help string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"service"})
		m.reg.MustRegister(c)
		return c
	}
	m.serviceRequests = vec("dtkbot_service_requests_total", "Requests sent to an outside service (signature store, update graph, release-controller, GitHub, build backend).")
	m.serviceFailures = vec("dtkbot_service_unanswered_total", "Requests to an outside service that got no answer (a timeout, a connection refused or cut).")
	m.serviceSkipped = vec("dtkbot_service_skipped_total", "Requests not sent to an outside service because it had stopped answering in the pass.")
	m.serviceOpened = vec("dtkbot_service_stopped_passes_total", "Passes that stopped asking an outside service after consecutive failures to answer.")
	// Every configured service has its series from the start, at 0: an
	// alert on one sees 0, not nothing.
	for _, sv := range services {
		for _, v := range []*prometheus.CounterVec{m.serviceRequests, m.serviceFailures, m.serviceSkipped, m.serviceOpened} {
			v.WithLabelValues(sv)
		}
	}
	m.upgradeRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dtkbot_upgrade_graph_requests_total",
		Help: "Requests to the update graph dtkbot serves clusters (/api/upgrades_info/...), by status; 429s of /api/v1/upgrades too."}, []string{"code"})
	m.reg.MustRegister(m.upgradeRequests)
	for _, code := range []string{"200", "304", "404", "429", "503"} {
		m.upgradeRequests.WithLabelValues(code) // every common answer has a series from the start
	}
	m.upgradeComputes = counter("dtkbot_upgrade_graph_computations_total", "Update graphs computed (once per change of the state or the upstream graph, per channel and arch).")
	m.lastDuration = gauge("dtkbot_last_pass_duration_seconds", "Duration of the last pass.")
	m.lastSuccess = gauge("dtkbot_last_success_timestamp_seconds", "When the last successful pass ended.")
	m.releasesSeen = gauge("dtkbot_releases_seen", "Releases known from the graph and the config.")
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "dtkbot_build_info", Help: "dtkbot's version."}, []string{"version"})
	info.WithLabelValues(version).Set(1)
	m.reg.MustRegister(info,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&ledgerCollector{store: store, index: index, variants: variants})
	if reg != nil {
		m.reg.MustRegister(&registryCollector{reg: reg})
	}
	return m
}

func (m *metrics) record(start, end time.Time, res *reconcile.Result, err error) {
	took := end.Sub(start).Seconds()
	m.passes.Inc()
	m.duration.Observe(took)
	m.lastDuration.Set(took)
	s := &passSummary{Started: start, Finished: end, Result: publicResult(res)}
	m.mu.Lock()
	if err != nil {
		m.passErrors.Inc()
		s.Error = redact.Text(err.Error())
	} else {
		m.lastOK = end
		m.lastSuccess.Set(float64(end.Unix()))
	}
	m.lastPass = s
	m.mu.Unlock()
	if res != nil {
		m.inspected.Add(float64(res.Inspected))
		m.graphRequests.Add(float64(res.GraphRequests))
		m.checks.Add(float64(res.Checks))
		m.rejected.Add(float64(res.Rejected))
		m.drifted.Add(float64(res.Drifted))
		m.releasesSeen.Set(float64(res.Releases))
		for _, sv := range res.Services {
			m.serviceRequests.WithLabelValues(sv.Service).Add(float64(sv.Requests))
			m.serviceFailures.WithLabelValues(sv.Service).Add(float64(sv.Failures))
			m.serviceSkipped.WithLabelValues(sv.Service).Add(float64(sv.Skipped))
			if sv.Open {
				m.serviceOpened.WithLabelValues(sv.Service).Inc()
			}
		}
	}
}

// publicResult is a pass's result as /status shows it: its texts redacted
// (no URL path or query, no build output), as every public place shows
// them.
func publicResult(res *reconcile.Result) *reconcile.Result {
	if res == nil {
		return nil
	}
	out := *res
	texts := func(in []string) []string {
		var o []string
		for _, t := range in {
			o = append(o, redact.Text(t))
		}
		return o
	}
	out.Errors, out.Warnings, out.Conflicts = texts(res.Errors), texts(res.Warnings), texts(res.Conflicts)
	out.Actions = slices.Clone(res.Actions)
	for i := range out.Actions {
		out.Actions[i].Reason, out.Actions[i].Result = redact.Text(out.Actions[i].Reason), redact.Text(out.Actions[i].Result)
	}
	return &out
}

func (m *metrics) lastSuccessAt() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastOK
}

func (m *metrics) last() *passSummary {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastPass
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// ledgerCollector reads the kernels by state, what is held and the lead
// times from the state file at scrape time.
type ledgerCollector struct {
	store    *state.Store
	index    func() (*coverage.Index, error)
	variants map[string][]string // consumer -> variants it asks for, by name
}

var (
	kernelsDesc        = prometheus.NewDesc("dtkbot_kernels", "Kernels in the ledger by state.", []string{"state"}, nil)
	heldDesc           = prometheus.NewDesc("dtkbot_releases_held", "Releases (or streams of them) held: never built from, by reason.", []string{"reason"}, nil)
	heldReasons        = []string{"content", "signature", "inconsistent", "kernel_unknown", "other"}
	consumerImagesDesc = prometheus.NewDesc("dtkbot_consumer_images",
		"Consumers' images (one per kernel and variant), by kernel variant and state; those wanted and not built too (pending, missing).",
		[]string{"consumer", "variant", "state"}, nil)
	// consumerStates are the states of a consumer's image in the
	// coverage index (held and unknown are releases' and streams').
	consumerStates = []string{coverage.StatePromoted, coverage.StateVerified, coverage.StateBuilt, coverage.StateBuilding,
		coverage.StatePending, coverage.StateFailed, coverage.StateMissing}
	kernelStates = []string{ledger.StateNew, ledger.StateBuildRequested, ledger.StateBuilt, ledger.StateVerified, ledger.StatePromoted, ledger.StateFailed}
	conflictDesc = prometheus.NewDesc("dtkbot_tag_conflicts",
		"Tags dtkbot would write that hold images it did not put there (never overwritten), by kind of image (dtk, or the consumer).", []string{"kind"}, nil)

	promotionLeadDesc = prometheus.NewDesc("dtkbot_kernel_promotion_lead_seconds",
		"Per promoted kernel: from first seen in any feed to its image at its kernel tag.", nil, nil)
	gaLeadDesc = prometheus.NewDesc("dtkbot_kernel_ready_before_ga_seconds",
		"Per promoted kernel a GA release ships: how long before that GA release was first seen its image was promoted (negative: after).", nil, nil)
	tagLeadDesc = prometheus.NewDesc("dtkbot_release_tag_lead_seconds",
		"Per tagged release: from first seen to its first release tag.", nil, nil)
	leadBuckets = []float64{-604800, -86400, 0, 3600, 21600, 86400, 259200, 604800, 1209600, 2592000, 5184000, 7776000}
)

func (c *ledgerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- kernelsDesc
	ch <- consumerImagesDesc
	ch <- heldDesc
	ch <- conflictDesc
	ch <- promotionLeadDesc
	ch <- gaLeadDesc
	ch <- tagLeadDesc
}

// histogram makes a constant histogram of durations.
func histogram(desc *prometheus.Desc, ds []time.Duration) prometheus.Metric {
	counts := map[float64]uint64{}
	sum := 0.0
	for _, d := range ds {
		v := d.Seconds()
		sum += v
		for _, b := range leadBuckets {
			if v <= b {
				counts[b]++
			}
		}
	}
	return prometheus.MustNewConstHistogram(desc, uint64(len(ds)), sum, counts)
}

func (c *ledgerCollector) Collect(ch chan<- prometheus.Metric) {
	if counts, _, err := c.store.Counts(); err == nil {
		for _, st := range kernelStates { // every state, 0 included
			if _, ok := counts[st]; !ok {
				counts[st] = 0
			}
		}
		for st, n := range counts {
			ch <- prometheus.MustNewConstMetric(kernelsDesc, prometheus.GaugeValue, float64(n), st)
		}
	}
	if held, err := c.store.HeldCounts(); err == nil {
		for _, reason := range heldReasons {
			ch <- prometheus.MustNewConstMetric(heldDesc, prometheus.GaugeValue, float64(held[reason]), reason)
		}
	}
	if conflicts, err := c.store.Conflicts(); err == nil {
		if _, ok := conflicts[ledger.KindDTK]; !ok {
			conflicts[ledger.KindDTK] = 0 // always there, so an alert can say "> 0"
		}
		for kind, n := range conflicts {
			ch <- prometheus.MustNewConstMetric(conflictDesc, prometheus.GaugeValue, float64(n), kind)
		}
	}
	ix, err := c.index()
	c.collectConsumerImages(ch, ix, err)
	if err == nil {
		_, d := ix.Leads()
		ch <- histogram(promotionLeadDesc, d.Promotion)
		ch <- histogram(gaLeadDesc, d.ReadyBeforeGA)
		ch <- histogram(tagLeadDesc, d.Tag)
	}
}

// collectConsumerImages counts the consumers' images of every kernel by
// consumer, variant and state: every consumer, variant it asks for and
// state from the start (0), and what the index holds besides (a variant
// no longer asked for, with images still in the ledger). Without an index
// there is nothing to count: no series, never a made-up 0.
func (c *ledgerCollector) collectConsumerImages(ch chan<- prometheus.Metric, ix *coverage.Index, err error) {
	if err != nil {
		return
	}
	type key struct{ consumer, variant, state string }
	counts := map[key]int{}
	for consumer, vs := range c.variants {
		for _, v := range vs {
			for _, st := range consumerStates {
				counts[key{consumer, v, st}] = 0
			}
		}
	}
	if err == nil {
		for _, k := range ix.Kernels {
			for _, ci := range k.Consumers {
				counts[key{ci.Consumer, ci.Variant, ci.State}]++
			}
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(consumerImagesDesc, prometheus.GaugeValue, float64(n), k.consumer, k.variant, k.state)
	}
}

// registryCollector reads the registry client's counters at scrape time.
type registryCollector struct{ reg *registry.Client }

var (
	registryRequestsDesc = prometheus.NewDesc("dtkbot_registry_requests_total",
		"Registry requests made by dtkbot's reads, auth round trips (pings, tokens) included.", []string{"kind"}, nil)
	registryBytesDesc   = prometheus.NewDesc("dtkbot_registry_bytes_total", "Blob bytes read from registries.", nil, nil)
	registryRetriesDesc = prometheus.NewDesc("dtkbot_registry_retries_total", "Registry calls retried.", nil, nil)
)

func (c *registryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- registryRequestsDesc
	ch <- registryBytesDesc
	ch <- registryRetriesDesc
}

func (c *registryCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.reg.Counters()
	for kind, v := range map[string]int64{"manifest_get": n.ManifestGETs, "manifest_head": n.ManifestHEADs, "blob_get": n.BlobGETs,
		"ping": n.Pings, "token": n.Tokens} {
		ch <- prometheus.MustNewConstMetric(registryRequestsDesc, prometheus.CounterValue, float64(v), kind)
	}
	ch <- prometheus.MustNewConstMetric(registryBytesDesc, prometheus.CounterValue, float64(n.BlobBytes))
	ch <- prometheus.MustNewConstMetric(registryRetriesDesc, prometheus.CounterValue, float64(n.Retries))
}
