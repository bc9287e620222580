package daemon

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dtkbot/dtkbot/reconcile"
)

// metrics are the daemon's counters, written in the Prometheus text format
// by hand: a dozen series do not justify a client library's dependencies.
type metrics struct {
	mu            sync.Mutex
	passes        int64
	passErrors    int64
	durationSum   float64
	lastDuration  float64
	lastOK        time.Time
	lastPass      *passSummary
	inspected     int64
	graphRequests int64
	checks        int64
	rejected      int64
	drifted       int64
	releasesSeen  int
	skipped       atomic.Int64
}

// passSummary is the last pass, for /status.
type passSummary struct {
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Error    string            `json:"error,omitempty"`
	Result   *reconcile.Result `json:"result,omitempty"`
}

func (m *metrics) record(start, end time.Time, res *reconcile.Result, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.passes++
	m.lastDuration = end.Sub(start).Seconds()
	m.durationSum += m.lastDuration
	s := &passSummary{Started: start, Finished: end, Result: res}
	if err != nil {
		m.passErrors++
		s.Error = err.Error()
	} else {
		m.lastOK = end
	}
	if res != nil {
		m.inspected += int64(res.Inspected)
		m.graphRequests += int64(res.GraphRequests)
		m.checks += int64(res.Checks)
		m.rejected += int64(res.Rejected)
		m.drifted += int64(res.Drifted)
		m.releasesSeen = res.Releases
	}
	m.lastPass = s
}

func (m *metrics) lastSuccess() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastOK
}

func (m *metrics) last() *passSummary {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastPass
}

func (d *Daemon) metrics(w http.ResponseWriter, _ *http.Request) {
	var b strings.Builder
	metric := func(name, typ, help string, samples ...string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		for _, s := range samples {
			fmt.Fprintf(&b, "%s%s\n", name, s)
		}
	}
	m := &d.m
	m.mu.Lock()
	metric("dtkbot_build_info", "gauge", "dtkbot's version.", fmt.Sprintf(`{version=%q} 1`, d.Version))
	metric("dtkbot_passes_total", "counter", "Reconcile passes run.", fmt.Sprintf(" %d", m.passes))
	metric("dtkbot_pass_errors_total", "counter", "Reconcile passes that failed (in part or whole).", fmt.Sprintf(" %d", m.passErrors))
	metric("dtkbot_passes_skipped_total", "counter", "Passes not started because one was running.", fmt.Sprintf(" %d", m.skipped.Load()))
	metric("dtkbot_pass_duration_seconds", "summary", "Duration of reconcile passes.",
		fmt.Sprintf("_sum %g", m.durationSum), fmt.Sprintf("_count %d", m.passes))
	metric("dtkbot_last_pass_duration_seconds", "gauge", "Duration of the last pass.", fmt.Sprintf(" %g", m.lastDuration))
	lastOK := 0.0
	if !m.lastOK.IsZero() {
		lastOK = float64(m.lastOK.Unix())
	}
	metric("dtkbot_last_success_timestamp_seconds", "gauge", "When the last successful pass ended.", fmt.Sprintf(" %g", lastOK))
	metric("dtkbot_releases_seen", "gauge", "Releases known from the graph and the config.", fmt.Sprintf(" %d", m.releasesSeen))
	metric("dtkbot_releases_inspected_total", "counter", "Payloads read (each digest once in its life).", fmt.Sprintf(" %d", m.inspected))
	metric("dtkbot_graph_requests_total", "counter", "Update graph requests.", fmt.Sprintf(" %d", m.graphRequests))
	metric("dtkbot_image_checks_total", "counter", "HEAD requests for awaited kernel images.", fmt.Sprintf(" %d", m.checks))
	metric("dtkbot_verification_failures_total", "counter", "Built images that failed verification (never promoted).", fmt.Sprintf(" %d", m.rejected))
	metric("dtkbot_tag_drift_total", "counter", "Promoted tags the drift audit found moved or gone.", fmt.Sprintf(" %d", m.drifted))
	m.mu.Unlock()

	if held, err := d.Store.HeldCounts(); err == nil {
		samples := []string{}
		for _, reason := range []string{"content", "signature", "inconsistent", "kernel_unknown", "other"} {
			samples = append(samples, fmt.Sprintf(`{reason=%q} %d`, reason, held[reason]))
		}
		metric("dtkbot_releases_held", "gauge", "Releases (or streams of them) held: never built from, by reason.", samples...)
	}

	if counts, _, err := d.Store.Counts(); err == nil {
		var samples []string
		states := make([]string, 0, len(counts))
		for s := range counts {
			states = append(states, s)
		}
		sort.Strings(states)
		for _, s := range states {
			samples = append(samples, fmt.Sprintf(`{state=%q} %d`, s, counts[s]))
		}
		metric("dtkbot_kernels", "gauge", "Kernels in the ledger by state.", samples...)
	}
	if d.Registry != nil {
		c := d.Registry.Counters()
		metric("dtkbot_registry_requests_total", "counter", "Registry requests made by dtkbot's reads, auth round trips (pings, tokens) included.",
			fmt.Sprintf(`{kind="manifest_get"} %d`, c.ManifestGETs), fmt.Sprintf(`{kind="manifest_head"} %d`, c.ManifestHEADs),
			fmt.Sprintf(`{kind="blob_get"} %d`, c.BlobGETs), fmt.Sprintf(`{kind="ping"} %d`, c.Pings), fmt.Sprintf(`{kind="token"} %d`, c.Tokens))
		metric("dtkbot_registry_bytes_total", "counter", "Blob bytes read from registries.", fmt.Sprintf(" %d", c.BlobBytes))
		metric("dtkbot_registry_retries_total", "counter", "Registry calls retried.", fmt.Sprintf(" %d", c.Retries))
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = w.Write([]byte(b.String()))
}
