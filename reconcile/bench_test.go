package reconcile

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
)

// backfillWorld publishes n releases over three channels, five z-streams per
// kernel (as RHCOS builds are shared), and returns the harness.
func backfillWorld(t testing.TB, n int) *harness {
	h := newHarness(t)
	h.channels = []string{"stable-4.14", "stable-4.15", "stable-4.16"}
	for i := 0; i < n; i++ {
		minor := 14 + i%3
		z := i / 3
		kernel := payloadtest.Stream{Kernel: fmt.Sprintf("5.14.0-%d.%d.1.el9_4", 300+minor, z/5), RTKernel: ""}
		h.publish(fmt.Sprintf("stable-4.%d", minor), fmt.Sprintf("4.%d.%d", minor, z), kernel)
	}
	return h
}

// TestBackfillAndSteadyStateCost is the figure of the README: a cold
// backfill of 300 releases, then a steady-state pass, then a restart.
func TestBackfillAndSteadyStateCost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 300 payloads")
	}
	h := backfillWorld(t, 300)
	before, graph0 := h.srv.Stats(), h.graph.Requests.Load()
	start := time.Now()
	r := h.reconciler()
	last, total := 0, 0
	r.Progress = func(done, all int) { last, total = done, all }
	res, err := r.RunOnce(context.Background(), h.now, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if last != 300 || total != 300 {
		t.Errorf("progress ended at %d/%d", last, total)
	}
	cold, coldTime := h.srv.Stats().Sub(before), time.Since(start)
	kernels := count(res, "build")
	t.Logf("cold backfill: %d releases, %d inspected, %d builds, %d promotions in %s; graph %d requests; registry %d requests (+%d pings): %d manifest GETs, %d blob GETs, %d HEADs, %d bytes served",
		res.Releases, res.Inspected, kernels, count(res, "promote"), coldTime.Round(time.Millisecond), h.graph.Requests.Load()-graph0,
		cold.Requests, cold.Auth, cold.ManifestGETs, cold.BlobGETs, cold.ManifestHEADs, cold.BytesServed)
	if res.Releases != 300 || res.Inspected != 300 || kernels != 60 || count(res, "promote:release") != 300 || count(res, "promote:kernel") != 60 {
		t.Fatalf("backfill: %d releases, %d inspected, %d builds, %d promotions", res.Releases, res.Inspected, kernels, count(res, "promote"))
	}

	before, graph0 = h.srv.Stats(), h.graph.Requests.Load()
	start = time.Now()
	res = h.pass(Options{})
	steady := h.srv.Stats().Sub(before)
	t.Logf("steady state: %d graph requests (%d answered 304 so far), registry %d requests (%d manifest GETs, %d blob GETs, %d HEADs), %d bytes, %s, %d actions",
		h.graph.Requests.Load()-graph0, h.graph.NotMod.Load(), steady.Requests, steady.ManifestGETs, steady.BlobGETs, steady.ManifestHEADs, steady.BytesServed,
		time.Since(start).Round(time.Microsecond), len(res.Actions))
	if n := h.graph.Requests.Load() - graph0; n != 3 || steady.ManifestGETs+steady.BlobGETs+steady.ManifestHEADs != 0 || len(res.Actions) != 0 {
		t.Errorf("steady state: %d graph requests, registry %+v, actions %d", n, steady, len(res.Actions))
	}

	h.restart()
	before = h.srv.Stats()
	res = h.pass(Options{})
	if res.Inspected != 0 || h.srv.Stats().Sub(before).Requests != 0 {
		t.Errorf("restart: %d re-inspections, %d registry requests", res.Inspected, h.srv.Stats().Sub(before).Requests)
	}
	t.Logf("restart: %d re-inspections, %d registry requests", res.Inspected, h.srv.Stats().Sub(before).Requests)
}

// BenchmarkSteadyStatePass times a pass with nothing new over 300 known releases.
func BenchmarkSteadyStatePass(b *testing.B) {
	h := backfillWorld(b, 300)
	h.pass(Options{})
	before := h.srv.Stats()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.pass(Options{})
	}
	b.StopTimer()
	c := h.srv.Stats().Sub(before)
	b.ReportMetric(float64(c.Requests)/float64(b.N), "registry-requests/op")
}
