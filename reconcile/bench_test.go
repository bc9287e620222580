package reconcile

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/internal/need"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/internal/sigtest"
	"github.com/dtkbot/dtkbot/releasesig"
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
	need.Long(t, "builds 300 payloads")
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
	t.Logf("cold backfill: %d releases, %d inspected, %d builds, %d promotions in %s; graph %d requests; registry %d requests (+%d pings, %d tokens): %d manifest GETs, %d blob GETs, %d HEADs, %d bytes served",
		res.Releases, res.Inspected, kernels, count(res, "promote"), coldTime.Round(time.Millisecond), h.graph.Requests.Load()-graph0,
		cold.Requests, cold.Pings, cold.Tokens, cold.ManifestGETs, cold.BlobGETs, cold.ManifestHEADs, cold.BytesServed)
	if res.Releases != 300 || res.Inspected != 300 || kernels != 60 || count(res, "promote:release") != 300 || count(res, "promote:kernel") != 60 {
		t.Fatalf("backfill: %d releases, %d inspected, %d builds, %d promotions", res.Releases, res.Inspected, kernels, count(res, "promote"))
	}
	// With auth counted, z-streams sharing their images cost at most 5
	// round trips a payload to read: one ping and a token per repository
	// for the whole pass. Writing costs at most 4 a tag (a HEAD, the
	// image's manifest read once, a PUT, the HEAD that checks it) and 4 a
	// staging tag removed (the manifest kept to put back, the DELETE, the
	// HEAD that checks it, the HEAD that confirms the kernel tag).
	promotions := count(res, "promote")
	trips := cold.Requests + cold.Pings + cold.Tokens
	budget := int64(5*300 + 4*promotions + 4*kernels)
	t.Logf("cold backfill: %d round trips, %.2f a payload; %d manifest PUTs, %d tag deletes; budget %d", trips, float64(trips)/300, cold.ManifestPUTs, cold.TagDeletes, budget)
	if trips > budget || cold.Pings != 1 {
		t.Errorf("cold backfill: %d round trips (%d pings, %d tokens) for 300 payloads, %d promotions and %d staging tags, budget %d with one ping",
			trips, cold.Pings, cold.Tokens, promotions, kernels, budget)
	}

	before, graph0 = h.srv.Stats(), h.graph.Requests.Load()
	start = time.Now()
	res = h.pass(Options{})
	steady := h.srv.Stats().Sub(before)
	t.Logf("steady state: %d graph requests (%d answered 304 so far), registry %d requests (%d manifest GETs, %d blob GETs, %d HEADs), %d bytes, %s, %d actions",
		h.graph.Requests.Load()-graph0, h.graph.NotMod.Load(), steady.Requests, steady.ManifestGETs, steady.BlobGETs, steady.ManifestHEADs, steady.BytesServed,
		time.Since(start).Round(time.Microsecond), len(res.Actions))
	if n := h.graph.Requests.Load() - graph0; n != 3 || steady.Requests+steady.Pings+steady.Tokens != 0 || len(res.Actions) != 0 {
		t.Errorf("steady state: %d graph requests, registry %+v, actions %d", n, steady, len(res.Actions))
	}

	h.restart()
	before = h.srv.Stats()
	res = h.pass(Options{})
	if d := h.srv.Stats().Sub(before); res.Inspected != 0 || d.Requests+d.Pings+d.Tokens != 0 {
		t.Errorf("restart: %d re-inspections, %d registry round trips", res.Inspected, d.Requests+d.Pings+d.Tokens)
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

// kernelOf is the kernel (VERSION-RELEASE) of the k-th RHCOS build of a
// minor, with the RHEL of its era.
func kernelOf(minor, k int) string {
	switch {
	case minor <= 10:
		return fmt.Sprintf("4.18.0-%d.%d.1.el8_4", 300+minor, k)
	case minor <= 12:
		return fmt.Sprintf("4.18.0-%d.%d.1.el8_6", 300+minor, k)
	case minor <= 15:
		return fmt.Sprintf("5.14.0-%d.%d.1.el9_2", 200+minor, k)
	case minor <= 18:
		return fmt.Sprintf("5.14.0-%d.%d.1.el9_4", 400+minor, k)
	}
	return fmt.Sprintf("5.14.0-%d.%d.1.el9_6", 500+minor, k)
}

// eraBackfill publishes n payloads over every era of payload layout (payloadtest.Eras), as
// OpenShift ships them: z-streams of 4.6 to 4.22, five per RHCOS build (so
// per kernel), 4.21+ with a RHEL 10 stream too, and from 4.18 every tenth
// z-stream also as a multi-arch payload in the multi graph. It returns the
// inspections a cold pass makes (a multi-arch payload is read for amd64 and
// arm64) and the payload digests.
func eraBackfill(h *harness, n int) (inspections int, digests []digest.Digest) {
	h.channels, h.arches = nil, []string{"amd64", "multi"}
	perMinor := (n + 16) / 17
	published := 0
	for minor := 6; minor <= 22; minor++ {
		h.channels = append(h.channels, fmt.Sprintf("stable-4.%d", minor))
		for z := 0; z < perMinor && published < n; z++ {
			v := fmt.Sprintf("4.%d.%d", minor, z)
			s := payloadtest.Stream{Kernel: kernelOf(minor, z/5)}
			if minor >= 16 {
				s.RTKernel = s.Kernel
			}
			spec := payloadtest.ReleaseSpec{Version: v, Stream: s}
			if minor >= 21 {
				spec.Stream10 = &payloadtest.Stream{Kernel: fmt.Sprintf("6.12.0-%d.%d.1.el10_1", 50+minor, z/5)}
			}
			digests = append(digests, h.publishSpec(fmt.Sprintf("stable-4.%d", minor), spec).Digest)
			published++
			inspections++
			if minor >= 18 && z%10 == 0 && published < n {
				spec.Arches = []string{"amd64", "arm64"}
				p := h.world.Release(spec)
				h.graph.Publish(fmt.Sprintf("stable-4.%d", minor), "multi", v, p.Pullspec)
				digests = append(digests, p.Digest)
				published++
				inspections += 2
			}
		}
	}
	return inspections, digests
}

// delay adds d to every request a server answers: the network's latency,
// the model BenchmarkColdBackfill measures concurrency against. Only the
// benchmark uses it, and it reports durations; no test's verdict depends
// on it (the tests of this file assert counts).
func delay(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(d)
			next.ServeHTTP(w, r)
		})
	}
}

// envInt reads a positive integer from the environment, else def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkColdBackfill is the README's backfill figure: a cold dry-run pass
// (discover, inspect every payload and check its signature, look for every
// kernel's image, plan) over at least 1,000 payloads of every era,
// multi-arch included, against a registry that wants bearer tokens and
// answers every request (pings and tokens too) after
// DTKBOT_BENCH_LATENCY_MS (default 20) milliseconds, at
// registry.concurrency 1, 8 and 16; with signatures checked as the default
// config does (verify.mode warn, against a signature store on loopback with
// the registry's latency, every payload signed), and with verify.mode off.
// It reports the wall time and speed-up over sequential, and per payload
// the round trips by kind, the signature requests and the bytes. Run with
// `make bench` (DTKBOT_BENCH_PAYLOADS changes the 1,000).
func BenchmarkColdBackfill(b *testing.B) {
	latency := time.Duration(envInt("DTKBOT_BENCH_LATENCY_MS", 20)) * time.Millisecond
	same := func(h http.Handler) http.Handler { return h }
	h := newHarnessWith(b, delay(latency), same)
	h.world.ContentSize = 1 << 10
	n := envInt("DTKBOT_BENCH_PAYLOADS", 1000)
	inspections, digests := eraBackfill(h, n)

	// The signature store: every payload signed, as Red Hat's are.
	key, keyFile := signingKey(b)
	store := &sigtest.Store{}
	for _, d := range digests {
		sig, err := key.Sign(d, "quay.io/openshift-release-dev/ocp-release")
		if err != nil {
			b.Fatal(err)
		}
		store.Put(d, 1, sig)
	}
	var sigRequests atomic.Int64
	sigSrv := httptest.NewServer(delay(latency)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sigRequests.Add(1)
		store.ServeHTTP(w, r)
	})))
	b.Cleanup(sigSrv.Close)
	b.Logf("%d payloads (%d inspections, %d digests signed), %s per request", n, inspections, len(digests), latency)
	for _, signatures := range []bool{true, false} {
		var sequential time.Duration
		for _, c := range []int{1, 8, 16} {
			name := fmt.Sprintf("signatures=%v/concurrency=%d", map[bool]string{true: "on", false: "off"}[signatures], c)
			b.Run(name, func(b *testing.B) {
				var took time.Duration
				var cost registrytest.Stats
				var sigs int64
				for i := 0; i < b.N; i++ {
					// Cold: a state file and a client that have seen nothing.
					h.store.Close()
					_ = os.Remove(h.statePath)
					h.open()
					h.regOpts.Concurrency = c
					r := h.reconciler()
					r.Concurrency = c
					if signatures {
						r.Signatures, r.SignatureMode, r.SignatureRecheck = checker(b, sigSrv.URL, keyFile, 10*time.Second), releasesig.ModeWarn, 6*time.Hour
					}
					before, sigBefore := h.srv.Stats(), sigRequests.Load()
					start := time.Now()
					res, err := r.RunOnce(context.Background(), h.now, Options{DryRun: true})
					took += time.Since(start)
					if err != nil {
						b.Fatal(err)
					}
					if res.Inspected != inspections-res.Held {
						b.Fatalf("%d inspected, %d held, want %d", res.Inspected, res.Held, inspections)
					}
					if signatures && (res.Signatures == nil || res.Signatures.Verified != res.Inspected) {
						b.Fatalf("signatures %+v, %d inspected", res.Signatures, res.Inspected)
					}
					d := h.srv.Stats().Sub(before)
					cost.Requests += d.Requests
					cost.ManifestGETs += d.ManifestGETs
					cost.BlobGETs += d.BlobGETs
					cost.ManifestHEADs += d.ManifestHEADs
					cost.Pings += d.Pings
					cost.Tokens += d.Tokens
					cost.BytesServed += d.BytesServed
					sigs += sigRequests.Load() - sigBefore
				}
				took /= time.Duration(b.N)
				if c == 1 {
					sequential = took
				}
				per := func(v int64) float64 { return float64(v) / float64(b.N) / float64(n) }
				b.ReportMetric(took.Seconds(), "s/backfill")
				if sequential > 0 {
					b.ReportMetric(sequential.Seconds()/took.Seconds(), "speedup")
				}
				b.ReportMetric(per(cost.Requests+cost.Pings+cost.Tokens), "trips/payload")
				b.ReportMetric(per(sigs), "sig-requests/payload")
				b.ReportMetric(per(cost.BytesServed), "bytes/payload")
				b.Logf("signatures %-3s concurrency %2d: %6.1fs, x%.1f; per payload %.2f round trips: %.2f manifest GETs, %.2f blob GETs, %.2f HEADs, %.3f pings, %.3f tokens; %.2f signature requests; %.0f bytes",
					map[bool]string{true: "on", false: "off"}[signatures], c, took.Seconds(), sequential.Seconds()/took.Seconds(), per(cost.Requests+cost.Pings+cost.Tokens),
					per(cost.ManifestGETs), per(cost.BlobGETs), per(cost.ManifestHEADs), per(cost.Pings), per(cost.Tokens), per(sigs), per(cost.BytesServed))
			})
		}
	}
}
