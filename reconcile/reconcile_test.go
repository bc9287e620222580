package reconcile

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/releasesig"
	"github.com/dtkbot/dtkbot/state"
)

var (
	k1 = payloadtest.Stream{Kernel: "5.14.0-427.37.1.el9_4", RTKernel: "5.14.0-427.37.1.el9_4"}
	k2 = payloadtest.Stream{Kernel: "5.14.0-427.40.1.el9_4", RTKernel: "5.14.0-427.40.1.el9_4"}
	k3 = payloadtest.Stream{Kernel: "5.14.0-427.44.1.el9_4", RTKernel: "5.14.0-427.44.1.el9_4"}
)

func TestReleasesPublishedInSteps(t *testing.T) {
	h := newHarness(t)

	// Step 1: three releases, two kernels.
	h.publish("stable-4.16", "4.16.15", k1)
	h.publish("stable-4.16", "4.16.16", k1)
	h.publish("stable-4.16", "4.16.17", k2)
	res := h.pass(Options{})
	if res.Releases != 3 || res.Inspected != 3 || count(res, "build") != 2 || count(res, "promote:release") != 3 || count(res, "promote:kernel") != 2 {
		t.Fatalf("step 1: %+v", res)
	}
	for _, v := range []string{"4.16.15", "4.16.16", "4.16.17"} {
		d, ok := h.srv.TagDigest("dtkbot/driver-toolkit", v)
		want, _ := h.srv.TagDigest("dtkbot/driver-toolkit", map[string]string{"4.16.17": k2.Kernel, "4.16.15": k1.Kernel, "4.16.16": k1.Kernel}[v]+".x86_64")
		if !ok || d != want {
			t.Errorf("tag %s: %s, want the kernel image %s", v, d, want)
		}
	}
	ks := kernels(t, h.store)
	if ks[k1.Kernel].State != ledger.StatePromoted || strings.Join(ks[k1.Kernel].Releases, ",") != "4.16.15,4.16.16" {
		t.Errorf("ledger %+v", ks[k1.Kernel])
	}

	// Step 2: z-streams that share a known kernel: promotions only.
	h.publish("stable-4.16", "4.16.18", k2)
	h.publish("stable-4.16", "4.16.19", k2)
	res = h.pass(Options{})
	if count(res, "build") != 0 || count(res, "promote") != 2 || count(res, "promote:release") != 2 || res.Inspected != 2 {
		t.Fatalf("step 2: %+v", res.Actions)
	}

	// Step 3: a new kernel: exactly one build.
	h.publish("stable-4.16", "4.16.20", k3)
	res = h.pass(Options{})
	if count(res, "build") != 1 || count(res, "promote:release") != 1 || count(res, "promote:kernel") != 1 {
		t.Fatalf("step 3: %+v", res.Actions)
	}
	if h.builder.total() != 3 {
		t.Errorf("%d builds for 3 kernels", h.builder.total())
	}

	// Steady state: one conditional graph request, no payload read, nothing to do.
	before, graphBefore := h.srv.Stats(), h.graph.Requests.Load()
	res = h.pass(Options{})
	cost := h.srv.Stats().Sub(before)
	if len(res.Actions) != 0 || res.Inspected != 0 || cost.ManifestGETs+cost.BlobGETs+cost.ManifestHEADs != 0 {
		t.Errorf("steady state: actions %+v, registry %+v", res.Actions, cost)
	}
	if n := h.graph.Requests.Load() - graphBefore; n != 1 || h.graph.NotMod.Load() < 1 {
		t.Errorf("steady state: %d graph requests (%d answered 304)", n, h.graph.NotMod.Load())
	}

	// A restart re-inspects nothing.
	h.restart()
	before = h.srv.Stats()
	res = h.pass(Options{})
	if res.Inspected != 0 || len(res.Actions) != 0 || h.srv.Stats().Sub(before).Requests != 0 {
		t.Errorf("after restart: %+v", res)
	}
	if h.builder.total() != 3 {
		t.Errorf("%d builds after restart", h.builder.total())
	}
}

func TestNotificationsFollowStateChanges(t *testing.T) {
	h := newHarness(t)
	h.builder.sync = false
	h.publish("stable-4.16", "4.16.15", k1)
	res := h.pass(Options{})
	if count(res, "notify") != 1 || h.notifier.notices[0] != k1.Kernel+"="+ledger.StateBuildRequested {
		t.Fatalf("first pass notices %q", h.notifier.notices)
	}
	if res = h.pass(Options{}); count(res, "notify") != 0 {
		t.Errorf("nothing changed, yet %d notices", count(res, "notify"))
	}
	h.builder.Finish()
	h.pass(Options{})
	if got := h.notifier.notices[len(h.notifier.notices)-1]; got != k1.Kernel+"="+ledger.StatePromoted {
		t.Errorf("notices %q", h.notifier.notices)
	}
}

func TestDryRunChangesNothingButTheInspectionCache(t *testing.T) {
	h := newHarness(t)
	h.publish("stable-4.16", "4.16.15", k1)
	h.publish("stable-4.16", "4.16.17", k2)
	before := h.srv.Stats()
	res := h.pass(Options{DryRun: true})
	if c := h.srv.Stats().Sub(before); c.ManifestPUTs != 0 || c.TagDeletes != 0 || c.BlobUploads != 0 {
		t.Errorf("a dry run wrote to the registry: %+v", c)
	}
	if count(res, "build") != 2 || !res.DryRun || h.builder.total() != 0 || len(h.notifier.notices) != 0 {
		t.Fatalf("dry run: %+v, %d builds", res.Actions, h.builder.total())
	}
	exp, err := h.store.Export()
	if err != nil {
		t.Fatal(err)
	}
	if len(exp.Releases) != 0 || len(exp.Kernels) != 0 || len(exp.Inspections) != 2 || len(exp.Graphs) != 0 || len(exp.Journal) != 0 {
		t.Errorf("dry run wrote %d releases, %d kernels, %d graph states, %d journal entries (and %d inspections)",
			len(exp.Releases), len(exp.Kernels), len(exp.Graphs), len(exp.Journal), len(exp.Inspections))
	}
	// The next pass reads no payload again: the inspection cache answers.
	before = h.srv.Stats()
	h.pass(Options{})
	after := h.srv.Stats()
	for path, n := range after.ByPath {
		if n > before.ByPath[path] && strings.HasPrefix(path, "GET ") && !strings.Contains(path, "/dtkbot/driver-toolkit/") {
			t.Errorf("the pass after a dry run read a payload again: %s", path)
		}
	}
	if _, ok := h.srv.TagDigest("dtkbot/driver-toolkit", "4.16.17"); !ok {
		t.Errorf("the real pass after a dry run did not promote")
	}
}

func TestHoldsInconsistentAndUnknownKernels(t *testing.T) {
	h := newHarness(t)
	h.publish("stable-4.16", "4.16.15", payloadtest.Stream{Kernel: k1.Kernel, DTKKernel: k2.Kernel})
	old := h.world.Release(payloadtest.ReleaseSpec{Version: "4.6.13", Stream: payloadtest.Stream{Kernel: "4.18.0-193.40.1.el8_2"}})
	h.releases = []string{old.Pullspec}
	res := h.pass(Options{})
	if count(res, "build") != 0 || count(res, "hold") != 2 || h.builder.total() != 0 {
		t.Fatalf("actions %+v", res.Actions)
	}
	var reasons []string
	for _, a := range res.Actions {
		reasons = append(reasons, a.Release+": "+a.Reason)
	}
	all := strings.Join(reasons, "\n")
	if !strings.Contains(all, "4.16.15: inconsistent payload") || !strings.Contains(all, "4.6.13: kernel unknown") {
		t.Errorf("reasons:\n%s", all)
	}
}

func TestCrashAfterBuildRequestDoesNotBuildTwice(t *testing.T) {
	h := newHarness(t)
	h.builder.sync = false
	h.publish("stable-4.16", "4.16.15", k1)
	// The process dies right after the builder accepted the request,
	// before the pass recorded the outcome.
	crashed := false
	h.builder.before = func(builder.Request) error {
		if !crashed {
			crashed = true
			h.builder.mu.Lock()
			h.builder.calls = map[string]int{k1.Kernel: 1}
			h.builder.queue = append(h.builder.queue, builder.Request{Kernel: k1.Kernel, KernelFull: k1.Kernel + ".x86_64", RHEL: "9.4", Image: h.target.Repository + ":staging-" + k1.Kernel + ".x86_64"})
			h.builder.mu.Unlock()
			runtime.Goexit()
		}
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = h.reconciler().RunOnce(context.Background(), h.now, Options{})
	}()
	<-done
	h.restart()
	if k := kernels(t, h.store)[k1.Kernel]; k.State != ledger.StateBuildRequested || k.Attempts != 1 {
		t.Fatalf("after the crash: %+v", k)
	}
	// The build is still running: the next pass waits for it.
	res := h.pass(Options{})
	if count(res, "build") != 0 {
		t.Fatalf("rebuilt while the first build was running: %+v", res.Actions)
	}
	h.builder.Finish()
	res = h.pass(Options{})
	if count(res, "promote:release") != 1 || h.builder.total() != 1 {
		t.Errorf("after the build appeared: %+v, %d builds", res.Actions, h.builder.total())
	}
}

func TestBuildThatNeverAppearsIsRetriedThenFailed(t *testing.T) {
	h := newHarness(t)
	h.builder.sync = false // the builds never push
	h.publish("stable-4.16", "4.16.15", k1)
	h.pass(Options{})
	for i := 0; i < 6; i++ {
		h.now = h.now.Add(h.policy.Timeout + 4*h.policy.Backoff + time.Minute)
		h.builder.queue = nil
		h.pass(Options{})
	}
	k := kernels(t, h.store)[k1.Kernel]
	if k.State != ledger.StateFailed || k.Attempts != h.policy.MaxAttempts || h.builder.total() != h.policy.MaxAttempts {
		t.Fatalf("kernel %+v after %d builds", k, h.builder.total())
	}
	res := h.pass(Options{})
	if count(res, "hold") != 1 || !strings.Contains(res.Actions[0].Reason, "did not appear within 1h0m0s") {
		t.Errorf("a failed kernel should be held with its reason: %+v", res.Actions)
	}
}

func TestBuilderErrorsBackOff(t *testing.T) {
	h := newHarness(t)
	h.publish("stable-4.16", "4.16.15", k1)
	fails := 1
	h.builder.before = func(builder.Request) error {
		if fails > 0 {
			fails--
			return errors.New("webhook answered 503")
		}
		return nil
	}
	if _, err := h.reconciler().RunOnce(context.Background(), h.now, Options{}); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("the pass should report the failed build: %v", err)
	}
	if res := h.pass(Options{}); count(res, "build") != 0 {
		t.Errorf("retried before the backoff: %+v", res.Actions)
	}
	h.now = h.now.Add(h.policy.Backoff)
	if res := h.pass(Options{}); count(res, "build") != 1 || count(res, "promote:release") != 1 {
		t.Errorf("after the backoff: %+v", res.Actions)
	}
}

func TestGraphFailureFailsSoftlyAndRecovers(t *testing.T) {
	h := newHarness(t)
	p := h.publish("stable-4.16", "4.16.15", k1)
	extra := h.world.Release(payloadtest.ReleaseSpec{Version: "4.17.0-ec.1", Stream: k2})
	h.releases = []string{extra.Pullspec}
	h.graph.Fail.Store(500)
	res, err := h.reconciler().RunOnce(context.Background(), h.now, Options{})
	if err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("the pass should fail: %v", err)
	}
	if res.Releases != 1 || count(res, "build") != 1 {
		t.Errorf("the config release should still be handled: %+v", res)
	}
	h.graph.Fail.Store(0)
	res = h.pass(Options{})
	if res.Inspected != 1 || count(res, "build") != 1 {
		t.Errorf("recovery: %+v", res.Actions)
	}
	_ = p
}

func TestFilters(t *testing.T) {
	h := newHarness(t)
	h.channels = []string{"stable-4.16", "fast-4.16"}
	h.publish("stable-4.16", "4.16.15", k1)
	h.publish("fast-4.16", "4.16.17", k2)
	res := h.pass(Options{DryRun: true, Channels: []string{"fast-4.16"}})
	if res.Releases != 1 || count(res, "build") != 1 || res.Actions[0].Kernel != k2.Kernel {
		t.Errorf("channel filter: %+v", res)
	}
	res = h.pass(Options{DryRun: true, Release: "4.16.15"})
	if res.Releases != 1 || count(res, "build") != 1 || res.Actions[0].Kernel != k1.Kernel {
		t.Errorf("release filter: %+v", res)
	}
}

func TestSecondProcessIsRefused(t *testing.T) {
	h := newHarness(t)
	_, err := state.Open(h.statePath, 100*time.Millisecond)
	if !errors.Is(err, state.ErrLocked) || !strings.Contains(err.Error(), h.statePath) {
		t.Fatalf("second open: %v", err)
	}
}

// fakeSignatures verifies the digests it is told to.
type fakeSignatures struct {
	signed  map[string]bool
	down    bool
	noTrust bool
	// checks counts Check calls (made concurrently).
	checks atomic.Int64
}

func (f *fakeSignatures) Trust() string {
	if f.noTrust {
		return ""
	}
	return "test key"
}

func (f *fakeSignatures) Check(_ context.Context, _ string, d digest.Digest) (releasesig.Verdict, error) {
	f.checks.Add(1)
	if f.down {
		return releasesig.Verdict{}, errors.New("signature store: HTTP 503")
	}
	if f.signed[d.String()] {
		return releasesig.Verdict{Verified: true, By: "test key"}, nil
	}
	return releasesig.Verdict{Reason: "no signature verifies"}, nil
}

func TestStrictSignaturesHoldUnverifiedPayloads(t *testing.T) {
	h := newHarness(t)
	good := h.publish("stable-4.16", "4.16.15", k1)
	unsigned := h.publish("stable-4.16", "4.16.17", k2)
	sigs := &fakeSignatures{signed: map[string]bool{good.Digest.String(): true}}
	pass := func() (*Result, error) {
		r := h.reconciler()
		r.Signatures, r.SignatureMode = sigs, releasesig.ModeStrict
		return r.RunOnce(context.Background(), h.now, Options{})
	}
	res, err := pass()
	if err != nil {
		t.Fatal(err)
	}
	if count(res, "build") != 1 || res.Actions[0].Type != "hold" || res.Actions[0].Release != "4.16.17" ||
		!strings.Contains(res.Actions[0].Reason, "signature does not verify") {
		t.Fatalf("actions %+v", res.Actions)
	}
	if _, ok := h.srv.TagDigest("dtkbot/driver-toolkit", "4.16.17"); ok {
		t.Error("an unverified payload was promoted")
	}
	// The store is down: no verdict, still held, the pass reports it.
	sigs.down = true
	if _, err := pass(); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("store down: %v", err)
	}
	// The signature appears: the next pass builds and promotes.
	sigs.down = false
	sigs.signed[unsigned.Digest.String()] = true
	res, err = pass()
	if err != nil || count(res, "build") != 1 || count(res, "promote:release") != 1 || count(res, "hold") != 0 {
		t.Fatalf("after signing: %v %+v", err, res.Actions)
	}
	exp, _ := h.store.Export()
	for _, rel := range exp.Releases {
		if rel.Signature != "verified by test key" {
			t.Errorf("release %s signature %q", rel.Version, rel.Signature)
		}
	}
}

func TestWarnSignaturesProceed(t *testing.T) {
	h := newHarness(t)
	h.publish("stable-4.16", "4.16.17", k2)
	r := h.reconciler()
	r.Signatures, r.SignatureMode = &fakeSignatures{}, releasesig.ModeWarn
	res, err := r.RunOnce(context.Background(), h.now, Options{})
	if err != nil || count(res, "build") != 1 {
		t.Fatalf("%v %+v", err, res.Actions)
	}
	exp, _ := h.store.Export()
	if exp.Releases[0].Signature != "unverified: no signature verifies" {
		t.Errorf("signature %q", exp.Releases[0].Signature)
	}
}
