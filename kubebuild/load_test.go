package kubebuild

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// apiCalls counts the requests a Builder sends the API server, by method
// and resource ("POST jobs", "GET secrets").
type apiCalls struct {
	mu sync.Mutex
	n  map[string]int
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// config is cfg with every request counted.
func (c *apiCalls) config(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			c.mu.Lock()
			if c.n == nil {
				c.n = map[string]int{}
			}
			c.n[r.Method+" "+resourceOf(r.URL.Path)]++
			c.mu.Unlock()
			return rt.RoundTrip(r)
		})
	})
	return cfg
}

// resourceOf is the resource of an API path: /apis/batch/v1/namespaces/ns/jobs/x is jobs.
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, p := range parts {
		if p == "namespaces" && i+2 < len(parts) {
			return parts[i+2]
		}
	}
	return path
}

// take returns the counts so far and starts again.
func (c *apiCalls) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.n
	c.n = nil
	if out == nil {
		out = map[string]int{}
	}
	return out
}

func (c *apiCalls) total(n map[string]int) int {
	sum := 0
	for _, v := range n {
		sum += v
	}
	return sum
}

func describe(n map[string]int) string {
	var out []string
	for k, v := range n {
		out = append(out, fmt.Sprintf("%s: %d", k, v))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// requests are n DTK builds of distinct kernels, attempt 1.
func (f *fixture) requests(n int) []Request {
	var out []Request
	for i := range n {
		out = append(out, f.request(fmt.Sprintf("5.14.0-%d.1.el9_4", 600+i), 1))
	}
	return out
}

// TestAPICallsPerJob: a pass that asks for 20 Jobs reads each Secret once,
// stores the recipe once, and creates each Job with one request (no GET
// first: AlreadyExists answers "was it asked?"). A restarted dtkbot asking
// for the same 20 again makes no Job and sends the same few requests.
func TestAPICallsPerJob(t *testing.T) {
	f := setupWithoutNode(t)
	ctx := testContext(t)
	var calls apiCalls
	reqs := f.requests(20)
	for pass := 1; pass <= 2; pass++ {
		b := f.builder(t, calls.config(f.s.Admin)) // a new process each pass
		for _, req := range reqs {
			if err := b.Build(ctx, req); err != nil {
				t.Fatal(err)
			}
		}
		n := calls.take()
		t.Logf("pass %d: %d API calls for %d Jobs (%.2f a Job): %s", pass, calls.total(n), len(reqs), float64(calls.total(n))/float64(len(reqs)), describe(n))
		wantCM := map[int]int{1: 0, 2: 1}[pass] // the second finds the ConfigMap there and compares it
		if n["POST jobs"] != len(reqs) || n["GET jobs"] != 0 || n["GET secrets"] != 3 || n["POST configmaps"] != 1 || n["GET configmaps"] != wantCM ||
			calls.total(n) != len(reqs)+4+wantCM {
			t.Errorf("pass %d: %s; want one POST a Job, each of the 3 Secrets read once, the recipe stored once", pass, describe(n))
		}
	}
	if jobs := f.jobs(t); len(jobs) != len(reqs) {
		t.Errorf("%d Jobs, want %d", len(jobs), len(reqs))
	}

	// Within one Builder, a new pass asks again what a pass asks once: a
	// Secret deleted between passes is seen.
	b := f.builder(t, calls.config(f.s.Admin))
	b.BeginPass()
	if err := b.Build(ctx, f.request("5.14.0-700.1.el9_4", 1)); err != nil {
		t.Fatal(err)
	}
	if err := f.core.Secrets(f.ns).Delete(ctx, "dtkbot-build-rhsm", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Build(ctx, f.request("5.14.0-701.1.el9_4", 1)); err != nil {
		t.Errorf("within the pass the Secrets are not read again: %v", err)
	}
	b.BeginPass()
	if err := b.Build(ctx, f.request("5.14.0-702.1.el9_4", 1)); err == nil || !strings.Contains(err.Error(), "Secret dtkbot-build-rhsm is not in namespace") {
		t.Errorf("the next pass: %v, want the deleted Secret named", err)
	}
}

// BenchmarkJobCreation creates b.N build Jobs in one pass against the real
// API server, at the Builder's own QPS and burst (the admin config's,
// raised for tests, zeroed: as an in-cluster config has them), and reports
// Jobs created a second and API calls a Job:
//
//	KUBEBUILDER_ASSETS=~/.cache/dtkbot/kube-v1.34.2 go test -run '^$' -bench JobCreation -benchtime 60x ./kubebuild/
func BenchmarkJobCreation(b *testing.B) {
	f := setupWithoutNode(b)
	ctx := testContext(b)
	var calls apiCalls
	cfg := calls.config(f.s.Admin)
	cfg.QPS, cfg.Burst = 0, 0
	builder, err := New(cfg, f.opts)
	if err != nil {
		b.Fatal(err)
	}
	reqs := f.requests(b.N)
	b.ResetTimer()
	start := time.Now()
	for _, req := range reqs {
		if err := builder.Build(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	n := calls.take()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
	b.ReportMetric(float64(calls.total(n))/float64(b.N), "api-calls/job")
	b.Logf("%d Jobs in %s: %s", b.N, elapsed.Round(time.Millisecond), describe(n))
}

// TestTwoInstancesInOneNamespaceMakeTheirOwnJobs: two dtkbot instances
// sharing a namespace (their targets differ) build the same kernel's
// attempt 1: each gets a Job of its own, which builds its own image.
func TestTwoInstancesInOneNamespaceMakeTheirOwnJobs(t *testing.T) {
	f := setupWithoutNode(t)
	ctx := testContext(t)
	a := f.request("5.14.0-427.37.1.el9_4", 1)
	b := a
	b.Image = f.host + "/other-team/driver-toolkit:staging-" + a.KernelFull
	for _, req := range []Request{a, b} {
		if err := f.builder(t, nil).Build(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	images := map[string]bool{}
	for _, j := range f.jobs(t) {
		images[j.Annotations[AnnotImage]] = true
	}
	if len(images) != 2 || !images[a.Image] || !images[b.Image] {
		t.Errorf("the Jobs build %v, want one for each of %s and %s", images, a.Image, b.Image)
	}
}
