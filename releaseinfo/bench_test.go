package releaseinfo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/poll"
	"github.com/dtkbot/dtkbot/registry"
)

// cost is what one inspection asked of the registry.
type cost struct {
	requests, pings, tokens, bytes int64
}

// trips are all the round trips, auth included.
func (c cost) trips() int64 { return c.requests + c.pings + c.tokens }

func measure(t testing.TB, tw *testWorld, in *Inspector, pullspec string) cost {
	t.Helper()
	before := tw.srv.Stats()
	if _, err := in.Inspect(context.Background(), pullspec); err != nil {
		t.Fatal(err)
	}
	d := tw.srv.Stats().Sub(before)
	return cost{requests: d.Requests, pings: d.Pings, tokens: d.Tokens, bytes: d.BytesServed}
}

// TestInspectRequestBudget holds the cost promise of the README, against a
// registry that wants bearer tokens as quay.io does: a cold inspection of a
// single-arch, single-stream release takes at most 10 round trips, auth
// included (one ping, a token for the release repository and one for the
// component repository, 6 or 7 reads); each further stream (RHEL 10) adds at
// most 6 (its DTK and OS images); a multi-arch payload one manifest-list read
// per image. Bytes stay below one content layer: manifests, configs and
// small layers only. A warm inspection makes none.
func TestInspectRequestBudget(t *testing.T) {
	tw := newTestWorld(t)
	tw.srv.RequireBearerAuth("pull-bot", "s3cret")
	auth := tw.authFile(t, "pull-bot", "s3cret")
	tw.w.ContentSize = 4 << 20 // content layers of a few MB make downloads obvious
	for _, spec := range eraReleases() {
		p := tw.w.Release(spec)
		for arch := range p.Expect {
			in := New(tw.client(registry.Options{AuthFile: auth}), Options{Arch: arch, Cache: &MemoryCache{}})
			cold := measure(t, tw, in, p.Pullspec)
			warm := measure(t, tw, in, p.Pullspec)
			streams := int64(len(p.Expect[arch]))
			budget := 10 + 6*(streams-1)
			if len(p.Expect) > 1 {
				budget += 3
			}
			t.Logf("%-8s %-6s streams=%d cold: %2d round trips (%2d reads, %d ping, %d tokens) %7d bytes; warm: %d; manual pull: %2d requests %9d bytes",
				spec.Version, arch, streams, cold.trips(), cold.requests, cold.pings, cold.tokens, cold.bytes, warm.trips(), p.ManualRequests[arch], p.ManualBytes[arch])
			if cold.trips() > budget || cold.pings != 1 || cold.tokens != 2 {
				t.Errorf("%s/%s: %d round trips (%d pings, %d tokens), budget %d with one ping and a token per repository",
					spec.Version, arch, cold.trips(), cold.pings, cold.tokens, budget)
			}
			if warm.trips() != 0 {
				t.Errorf("%s/%s: warm inspection made %d requests", spec.Version, arch, warm.trips())
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
					total.requests += c.trips()
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
					total.requests += c.trips()
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

// TestOneSessionPerRegistry: however many payloads and images an inspector
// reads, at the same time or not, the registry is pinged once and asked
// once for a token per repository; a token the registry no longer takes
// (expired) is renewed once, not per request.
func TestOneSessionPerRegistry(t *testing.T) {
	tw := newTestWorld(t)
	tw.srv.RequireBearerAuth("pull-bot", "s3cret")
	in := New(tw.client(registry.Options{AuthFile: tw.authFile(t, "pull-bot", "s3cret"), Concurrency: 8}), Options{Concurrency: 8})
	var pullspecs []string
	for i := 0; i < 12; i++ {
		s := payloadtest.Stream{Kernel: fmt.Sprintf("5.14.0-427.%d.1.el9_4", 30+i/3)}
		pullspecs = append(pullspecs, tw.w.Release(specWith(fmt.Sprintf("4.16.%d", 10+i), s)).Pullspec)
	}
	before := tw.srv.Stats()
	for _, r := range in.InspectAll(context.Background(), pullspecs[:8], nil) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if d := tw.srv.Stats().Sub(before); d.Pings != 1 || d.Tokens != 2 {
		t.Errorf("8 payloads at once: %d pings, %d tokens; want 1 and 2 (release and component repositories)", d.Pings, d.Tokens)
	}
	// The registry's clock moves past the tokens' life: each scope is
	// renewed once.
	now := time.Now().Add(10 * time.Minute)
	tw.srv.SetClock(func() time.Time { return now })
	before = tw.srv.Stats()
	for _, r := range in.InspectAll(context.Background(), pullspecs[8:], nil) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if d := tw.srv.Stats().Sub(before); d.Pings != 0 || d.Tokens != 2 {
		t.Errorf("after the tokens expired: %d pings, %d tokens; want 0 and 2", d.Pings, d.Tokens)
	}
}

// TestWrongPullSecretIsAClearError: refused credentials say so, and which
// registry refused them.
func TestWrongPullSecretIsAClearError(t *testing.T) {
	tw := newTestWorld(t)
	tw.srv.RequireBearerAuth("pull-bot", "s3cret")
	p := tw.w.Release(spec416(nil))
	in := New(tw.client(registry.Options{AuthFile: tw.authFile(t, "pull-bot", "wrong"), Attempts: 3}), Options{})
	_, err := in.Inspect(context.Background(), p.Pullspec)
	if err == nil || !strings.Contains(err.Error(), "credentials for "+tw.srv.Host()+" were refused") || strings.Contains(err.Error(), "attempts") {
		t.Fatalf("error %v", err)
	}
}

// TestWaitersForASharedReadLeaveWithTheirContext: an inspection waiting
// for another's read of a shared image stops waiting when its own context
// ends, and makes no request of its own; the read goes on for the other.
func TestWaitersForASharedReadLeaveWithTheirContext(t *testing.T) {
	tw := newTestWorld(t)
	p := tw.w.Release(eraReleases()[4])
	dtk := p.DTK["driver-toolkit"].ForArch("amd64")
	top := "GET /v2/" + dtk.Repo + "/blobs/" + dtk.Layers[len(dtk.Layers)-1].String()
	arrived, release := make(chan struct{}, 4), make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce()
	tw.srv.SetIntercept(func(_ http.ResponseWriter, r *http.Request) bool {
		if r.Method+" "+r.URL.Path == top {
			arrived <- struct{}{}
			<-release
		}
		return false
	})
	in := tw.inspector(Options{})
	first := make(chan error, 1)
	go func() { _, err := in.readDTK(context.Background(), dtk.Pullspec); first <- err }()
	poll.Receive(t, "the first read of the DTK's top layer", 0, arrived)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	waiter := make(chan error, 1)
	go func() { _, err := in.readDTK(ctx, dtk.Pullspec); waiter <- err }()
	if err := poll.Receive(t, "the waiter whose context ended to stop waiting", 0, waiter); !errors.Is(err, context.Canceled) {
		t.Errorf("the waiter: %v", err)
	}
	releaseOnce()
	if err := poll.Receive(t, "the first read to end", 0, first); err != nil {
		t.Errorf("the first read: %v", err)
	}
	if n := tw.srv.Stats().ByPath[top]; n != 1 {
		t.Errorf("the DTK's top layer was read %d times, want once", n)
	}
}
