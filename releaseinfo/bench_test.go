package releaseinfo

import (
	"context"
	"testing"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
)

// cost is what one inspection asked of the registry.
type cost struct {
	requests, pings, bytes int64
}

func measure(t testing.TB, tw *testWorld, in *Inspector, pullspec string) cost {
	t.Helper()
	before := tw.srv.Stats()
	if _, err := in.Inspect(context.Background(), pullspec); err != nil {
		t.Fatal(err)
	}
	d := tw.srv.Stats().Sub(before)
	return cost{requests: d.Requests, pings: d.Auth, bytes: d.BytesServed}
}

// TestInspectRequestBudget holds the cost promise of the README: a cold
// inspection of a single-arch, single-stream release makes at most 8
// registry requests (pings excluded); each further stream (RHEL 10) adds at
// most 6 (its DTK and OS images); a multi-arch payload adds one manifest-list
// read per image. Bytes stay below one content layer: manifests, configs and
// small layers only. A warm inspection makes none.
func TestInspectRequestBudget(t *testing.T) {
	tw := newTestWorld(t)
	tw.w.ContentSize = 4 << 20 // content layers of a few MB make downloads obvious
	for _, spec := range eraReleases() {
		p := tw.w.Release(spec)
		for arch := range p.Expect {
			in := tw.inspector(Options{Arch: arch, Cache: &MemoryCache{}})
			cold := measure(t, tw, in, p.Pullspec)
			warm := measure(t, tw, in, p.Pullspec)
			streams := int64(len(p.Expect[arch]))
			budget := 8 + 6*(streams-1)
			if len(p.Expect) > 1 {
				budget += 1 + 2*streams
			}
			t.Logf("%-8s %-6s streams=%d cold: %2d requests (+%d pings) %7d bytes; warm: %d requests; manual pull: %2d requests %9d bytes",
				spec.Version, arch, streams, cold.requests, cold.pings, cold.bytes, warm.requests+warm.pings, p.ManualRequests[arch], p.ManualBytes[arch])
			if cold.requests > budget {
				t.Errorf("%s/%s: %d requests, budget %d", spec.Version, arch, cold.requests, budget)
			}
			if warm.requests+warm.pings != 0 {
				t.Errorf("%s/%s: warm inspection made %d requests", spec.Version, arch, warm.requests+warm.pings)
			}
			if cold.bytes >= int64(tw.w.ContentSize) {
				t.Errorf("%s/%s: %d bytes is as much as a content layer", spec.Version, arch, cold.bytes)
			}
		}
	}
}

// BenchmarkInspect reports requests and bytes per release, cold and warm,
// next to the manual procedure's (pull the release and DTK images whole).
// Run with `make bench`.
func BenchmarkInspect(b *testing.B) {
	for _, spec := range eraReleases() {
		b.Run(spec.Version, func(b *testing.B) {
			tw := newTestWorld(b)
			p := tw.w.Release(spec)
			arch := "amd64"
			b.Run("cold", func(b *testing.B) {
				var total cost
				for i := 0; i < b.N; i++ {
					c := measure(b, tw, tw.inspector(Options{Arch: arch}), p.Pullspec)
					total.requests += c.requests
					total.bytes += c.bytes
				}
				b.ReportMetric(float64(total.requests)/float64(b.N), "requests/op")
				b.ReportMetric(float64(total.bytes)/float64(b.N), "bytes/op")
				b.ReportMetric(float64(p.ManualRequests[arch]), "manual-requests")
				b.ReportMetric(float64(p.ManualBytes[arch]), "manual-bytes")
			})
			b.Run("warm", func(b *testing.B) {
				in := tw.inspector(Options{Arch: arch, Cache: &MemoryCache{}})
				measure(b, tw, in, p.Pullspec)
				var total cost
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					c := measure(b, tw, in, p.Pullspec)
					total.requests += c.requests + c.pings
				}
				b.ReportMetric(float64(total.requests)/float64(b.N), "requests/op")
			})
		})
	}
}

// TestInspectZStreamsShareImageReads: releases that share an RHCOS build
// share their OS and DTK images, which are read once per inspector.
func TestInspectZStreamsShareImageReads(t *testing.T) {
	tw := newTestWorld(t)
	in := tw.inspector(Options{})
	stream := eraReleases()[4].Stream
	var costs []int64
	for _, v := range []string{"4.16.15", "4.16.16", "4.16.17"} {
		p := tw.w.Release(specWith(v, stream))
		costs = append(costs, measure(t, tw, in, p.Pullspec).requests)
	}
	if costs[1] != 2 || costs[2] != 2 {
		t.Errorf("z-streams sharing a kernel cost %v requests; want the release manifest and last layer only (2)", costs)
	}
}

func specWith(version string, s payloadtest.Stream) payloadtest.ReleaseSpec {
	return payloadtest.ReleaseSpec{Version: version, Stream: s}
}

// TestConcurrentInspectionsShareImageReads: z-streams inspected at the same
// time read their shared DTK and OS images once.
func TestConcurrentInspectionsShareImageReads(t *testing.T) {
	tw := newTestWorld(t)
	stream := eraReleases()[4].Stream // 4.16: release 2 + DTK 3 + OS 2 requests alone
	var pullspecs []string
	for _, v := range []string{"4.16.15", "4.16.16", "4.16.17", "4.16.18"} {
		pullspecs = append(pullspecs, tw.w.Release(specWith(v, stream)).Pullspec)
	}
	before := tw.srv.Stats()
	for _, r := range tw.inspector(Options{Concurrency: 4}).InspectAll(context.Background(), pullspecs, nil) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if n := tw.srv.Stats().Sub(before).Requests; n != 4*2+3+2 {
		t.Errorf("%d requests for 4 concurrent z-streams, want %d", n, 4*2+3+2)
	}
}
