package reconcile

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/internal/citest"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/verify"
)

const kmodRepo = "acme/acme-nic-kmod"

// consumerWorld is a harness whose DTK builds are finished by hand and whose
// consumer, acme-nic, builds kmod images through a CI stand-in's webhook.
type consumerWorld struct {
	*harness
	ci     *citest.CI
	hook   *httptest.Server
	before func(builder.Request) error // runs before each consumer build request
	// certs and skipABI are acme-nic's verify.signing_certs and !verify.abi;
	// second adds a consumer, beta, built by the same CI.
	certs   []*x509.Certificate
	skipABI bool
	second  bool
	// moduleName is acme-nic's kmm.module_name; variants its kernel
	// variants (ledger's spelling; none: the default kernel's).
	moduleName string
	variants   []string
}

func newConsumerWorld(t *testing.T) *consumerWorld {
	h := newHarness(t)
	h.builder.sync = false
	ci := &citest.CI{Secret: []byte("kmod-hook")}
	ci.SetWorld(h.world)
	hook := httptest.NewServer(http.HandlerFunc(ci.Webhook))
	t.Cleanup(hook.Close)
	return &consumerWorld{harness: h, ci: ci, hook: hook}
}

// builderFunc is a Builder from a function.
type builderFunc func(context.Context, builder.Request) error

func (f builderFunc) Build(ctx context.Context, req builder.Request) error { return f(ctx, req) }

func (w *consumerWorld) reconciler() *Reconciler {
	r := realEffects(w.harness, w.builder)()
	webhook := &builder.WebhookBuilder{URL: w.hook.URL, Secret: w.ci.Secret, Attempts: 1}
	r.Consumers = []Consumer{{
		Name: "acme-nic",
		Builder: builderFunc(func(ctx context.Context, req builder.Request) error {
			if w.before != nil {
				if err := w.before(req); err != nil {
					return err
				}
			}
			return webhook.Build(ctx, req)
		}),
		Target:     plan.Target{Repository: w.srv.Host() + "/" + kmodRepo, KernelTag: "{{.KernelFull}}", ReleaseTags: []string{"{{.Release}}"}},
		Build:      BuildPolicy{Timeout: time.Hour, MaxAttempts: 2, Backoff: 10 * time.Minute},
		Label:      "kernel-version",
		Certs:      w.certs,
		SkipABI:    w.skipABI,
		ModuleName: w.moduleName,
		Variants:   w.variants,
	}}
	if w.second {
		r.Consumers = append(r.Consumers, Consumer{Name: "beta", Builder: webhook,
			Target: plan.Target{Repository: w.srv.Host() + "/acme/beta-kmod", KernelTag: "{{.KernelFull}}"},
			Build:  BuildPolicy{Timeout: time.Hour, MaxAttempts: 2, Backoff: 10 * time.Minute}})
	}
	r.KmodVerifier = &verify.Kmod{Registry: r.Registry, Limits: imageread.DefaultLimits(), Kernels: w.store}
	return r
}

func (w *consumerWorld) pass() *Result {
	w.t.Helper()
	res, err := w.reconciler().RunOnce(context.Background(), w.now, Options{})
	if err != nil {
		w.t.Fatalf("pass: %v", err)
	}
	return res
}

func consumerBuilds(t *testing.T, s *state.Store) map[string]ledger.Image {
	t.Helper()
	out := map[string]ledger.Image{}
	exp, err := s.Export()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range exp.Consumers {
		out[c.Kernel] = c
	}
	return out
}

// TestConsumerBuiltOncePerKernelAfterItsDTK: a consumer's image is asked for
// only once its kernel's DTK is verified and promoted, FROM that DTK pinned
// by digest; it is verified, promoted to its kernel and release tags, and
// never asked again, whatever releases of the kernel come later.
func TestConsumerBuiltOncePerKernelAfterItsDTK(t *testing.T) {
	w := newConsumerWorld(t)
	w.publish("stable-4.16", "4.16.15", k1)
	w.pass() // the DTK build is asked for, and still running
	if n := len(w.ci.Requests()); n != 0 {
		t.Fatalf("%d consumer builds asked before the DTK was promoted", n)
	}
	if c, ok := consumerBuilds(t, w.store)[k1.Kernel]; ok {
		t.Fatalf("a consumer build recorded before the DTK was promoted: %+v", c)
	}
	w.builder.Finish()
	res := w.pass()
	dtk := kernels(t, w.store)[k1.Kernel]
	reqs := w.ci.Requests()
	if dtk.State != ledger.StatePromoted || len(reqs) != 1 || reqs[0].DTKImage != dtk.PinnedImage() ||
		reqs[0].KernelFullVersion != k1.Kernel+".x86_64" || reqs[0].KernelVersion != k1.Kernel || reqs[0].RHELVersion != "9.4" {
		t.Fatalf("the consumer build request %+v (DTK %s)", reqs, dtk.PinnedImage())
	}
	c := consumerBuilds(t, w.store)[k1.Kernel]
	staged, _ := w.srv.TagDigest(kmodRepo, "staging-"+k1.Kernel+".x86_64")
	got, ok := w.srv.TagDigest(kmodRepo, k1.Kernel+".x86_64")
	if c.State != ledger.StatePromoted || !ok || got.String() != c.ImageDigest || staged != "" || c.DTKImage != dtk.PinnedImage() {
		t.Fatalf("the consumer build %+v at %s (staging %s)", c, got, staged)
	}
	if d, _ := w.srv.TagDigest(kmodRepo, "4.16.15"); d != got {
		t.Errorf("the consumer's release tag is at %s, want %s", d, got)
	}
	if count(res, "verify") < 2 {
		t.Errorf("the consumer's image was not verified: %+v", res.Actions)
	}
	// A z-stream of the kernel: a release tag, no build.
	w.publish("stable-4.16", "4.16.16", k1)
	w.pass()
	if n := len(w.ci.Requests()); n != 1 {
		t.Errorf("%d consumer builds for one kernel", n)
	}
	if d, _ := w.srv.TagDigest(kmodRepo, "4.16.16"); d != got {
		t.Errorf("the z-stream's consumer tag at %s", d)
	}
	before := w.srv.Stats()
	if res := w.pass(); len(res.Actions) != 0 || w.srv.Stats().Sub(before).Requests != 0 {
		t.Errorf("the steady state: %+v", res.Actions)
	}
}

// TestKmodImageWithoutModulesIsNeverPromoted: an image without a module, or
// with them under another kernel, is rejected each time, retried while
// attempts remain, then failed; no consumer tag ever names it.
func TestKmodImageWithoutModulesIsNeverPromoted(t *testing.T) {
	for name, tweak := range map[string]func(*citest.Builds){
		"no module":        func(b *citest.Builds) { b.NoModules = map[string]bool{k1.Kernel: true} },
		"another kernel's": func(b *citest.Builds) { b.ModulesFor = map[string]string{k1.Kernel: k2.Kernel} },
	} {
		t.Run(name, func(t *testing.T) {
			w := newConsumerWorld(t)
			w.ci.Change(tweak)
			w.builder.sync = true
			w.publish("stable-4.16", "4.16.15", k1)
			for i := 0; i < 4; i++ {
				_, _ = w.reconciler().RunOnce(context.Background(), w.now, Options{})
				w.now = w.now.Add(time.Hour)
				if tags := w.srv.Tags(kmodRepo); strings.Contains(strings.Join(tags, " "), k1.Kernel) && !strings.Contains(strings.Join(tags, " "), "staging-") {
					t.Fatalf("an image without the kernel's modules was tagged: %v", tags)
				}
			}
			c := consumerBuilds(t, w.store)[k1.Kernel]
			if c.State != ledger.StateFailed || len(c.Rejections) != 2 || !strings.Contains(c.Reason, "holds no kernel module") {
				t.Errorf("the consumer build %+v", c)
			}
			if _, ok := w.srv.TagDigest(kmodRepo, k1.Kernel+".x86_64"); ok {
				t.Error("the kernel tag names a rejected image")
			}
			if _, ok := w.srv.TagDigest(kmodRepo, "4.16.15"); ok {
				t.Error("a release tag names a rejected image")
			}
		})
	}
}

// TestConsumerBuildSurvivesACrashAndALostStateFile: killed right after the
// CI accepted the request, the next pass waits for that build; with the
// state file gone, the image already at the consumer's kernel tag is
// verified and adopted. Nothing is asked twice.
func TestConsumerBuildSurvivesACrashAndALostStateFile(t *testing.T) {
	w := newConsumerWorld(t)
	w.builder.sync = true
	w.ci.Change(func(b *citest.Builds) { b.Never = map[string]bool{k1.Kernel: true} }) // the first consumer build is still running
	crashed := false
	w.before = func(builder.Request) error {
		if !crashed {
			crashed = true
			// The CI gets the request, then the process dies.
			_ = (&builder.WebhookBuilder{URL: w.hook.URL, Secret: w.ci.Secret, Attempts: 1}).Build(context.Background(),
				builder.Request{Kernel: k1.Kernel, KernelFull: k1.Kernel + ".x86_64", RHEL: "9.4", Consumer: "acme-nic", DTK: "x@sha256:" + strings.Repeat("a", 64),
					Image: w.srv.Host() + "/" + kmodRepo + ":staging-" + k1.Kernel + ".x86_64"})
			runtime.Goexit()
		}
		return nil
	}
	w.publish("stable-4.16", "4.16.15", k1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = w.reconciler().RunOnce(context.Background(), w.now, Options{})
	}()
	<-done
	w.restart()
	if c := consumerBuilds(t, w.store)[k1.Kernel]; c.State != ledger.StateBuildRequested || c.Attempts != 1 {
		t.Fatalf("after the crash: %+v", c)
	}
	w.pass()
	if n := len(w.ci.Requests()); n != 1 {
		t.Fatalf("the build was asked again while it runs: %d requests", n)
	}
	// The CI run finishes: the image appears and is promoted.
	w.ci.Change(func(b *citest.Builds) { b.Never = nil })
	_ = (&builder.WebhookBuilder{URL: w.hook.URL, Secret: w.ci.Secret, Attempts: 1}).Build(context.Background(),
		builder.Request{Kernel: k1.Kernel, KernelFull: k1.Kernel + ".x86_64", RHEL: "9.4", Consumer: "acme-nic", DTK: "x@sha256:" + strings.Repeat("a", 64),
			Image: w.srv.Host() + "/" + kmodRepo + ":staging-" + k1.Kernel + ".x86_64"})
	requests := len(w.ci.Requests())
	w.pass()
	if c := consumerBuilds(t, w.store)[k1.Kernel]; c.State != ledger.StatePromoted {
		t.Fatalf("after the build appeared: %+v", c)
	}
	// The state file is lost: everything is found again, nothing rebuilt.
	w.store.Close()
	if err := os.Remove(w.statePath); err != nil {
		t.Fatal(err)
	}
	w.open()
	dtkBuilds := w.builder.total()
	w.pass()
	if n := len(w.ci.Requests()); n != requests || w.builder.total() != dtkBuilds {
		t.Errorf("after losing the state: %d consumer requests (was %d), %d DTK builds (was %d)", n, requests, w.builder.total(), dtkBuilds)
	}
	if c := consumerBuilds(t, w.store)[k1.Kernel]; c.State != ledger.StatePromoted || !c.Published {
		t.Errorf("the consumer build after losing the state: %+v", c)
	}
}

// TestConsumerRetriesAfterBackoffAndWhatItCosts: a build request that fails
// is retried after the backoff, not before; the pass that then builds,
// verifies and promotes the consumer's image (DTK long promoted) costs a
// handful of registry requests and no layer but the image's top ones.
func TestConsumerRetriesAfterBackoffAndWhatItCosts(t *testing.T) {
	w := newConsumerWorld(t)
	w.builder.sync = true
	failing := true
	w.before = func(builder.Request) error {
		if failing {
			return errors.New("CI unavailable")
		}
		return nil
	}
	w.publish("stable-4.16", "4.16.15", k1)
	if _, err := w.reconciler().RunOnce(context.Background(), w.now, Options{}); err == nil || !strings.Contains(err.Error(), "CI unavailable") {
		t.Fatalf("a failed build request does not fail the pass: %v", err)
	}
	c := consumerBuilds(t, w.store)[k1.Kernel]
	if c.State != ledger.StateNew || c.Attempts != 1 || !strings.Contains(c.Reason, "CI unavailable") || c.NextAttemptAt.IsZero() {
		t.Fatalf("after a failed request: %+v", c)
	}
	failing = false
	w.now = w.now.Add(5 * time.Minute) // within the 10-minute backoff
	w.pass()
	if n := len(w.ci.Requests()); n != 0 {
		t.Fatalf("asked again within the backoff: %d requests", n)
	}
	w.now = w.now.Add(10 * time.Minute)
	before := w.srv.Stats()
	w.pass()
	cost := w.srv.Stats().Sub(before)
	c = consumerBuilds(t, w.store)[k1.Kernel]
	if c.State != ledger.StatePromoted || c.Attempts != 2 || len(w.ci.Requests()) != 1 {
		t.Fatalf("after the backoff: %+v, %d requests", c, len(w.ci.Requests()))
	}
	t.Logf("a consumer's image looked for, built, verified, promoted (kernel and release tag), staging removed: %d registry requests (CI push included), %d bytes served",
		cost.Requests, cost.BytesServed)
	if cost.BytesServed > 256<<10 {
		t.Errorf("%d bytes served: a base layer was read", cost.BytesServed)
	}
}

// TestNoConsumerImageWithoutAVerifier: with nothing to verify kmod images
// with, no consumer build is asked for, since none could be promoted.
func TestNoConsumerImageWithoutAVerifier(t *testing.T) {
	w := newConsumerWorld(t)
	w.builder.sync = true
	w.publish("stable-4.16", "4.16.15", k1)
	r := w.reconciler()
	r.KmodVerifier = nil
	res, err := r.RunOnce(context.Background(), w.now, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(w.ci.Requests()); n != 0 || len(consumerBuilds(t, w.store)) != 0 {
		t.Fatalf("%d consumer builds asked with no verifier", n)
	}
	if !strings.Contains(strings.Join(res.Warnings, "\n"), "nothing verifies kmod images") {
		t.Errorf("warnings %v", res.Warnings)
	}
	if kernels(t, w.store)[k1.Kernel].State != ledger.StatePromoted {
		t.Error("the DTK itself was held up")
	}
}

// panickingVerifier is a KmodVerifier whose check panics, as a bug in a
// parser of untrusted input would.
type panickingVerifier struct{ KmodVerifier }

func (panickingVerifier) VerifyKmod(context.Context, verify.KmodCheck) (verify.KmodResult, error) {
	var m map[string]int
	m["a panic in a worker goroutine"]++ // assignment to entry in nil map
	return verify.KmodResult{}, nil
}

// TestAPanicInAWorkerFailsItsItemOnly: a verification that panics in one
// of the pass's worker goroutines fails that image for this pass (the
// error says where), and ends neither the pass nor the process: the image
// is left as it was, and the next pass, its verifier mended, promotes it.
func TestAPanicInAWorkerFailsItsItemOnly(t *testing.T) {
	w := newConsumerWorld(t)
	w.builder.sync = true
	w.publish("stable-4.16", "4.16.15", k1)
	r := w.reconciler()
	r.KmodVerifier = panickingVerifier{r.KmodVerifier}
	res, err := r.RunOnce(context.Background(), w.now, Options{})
	if err == nil || !strings.Contains(strings.Join(res.Errors, "\n"), "panic: assignment to entry in nil map (in github.com/dtkbot/dtkbot/reconcile.panickingVerifier.VerifyKmod") {
		t.Fatalf("the pass with a panicking verifier: %v, %q", err, res.Errors)
	}
	// A panic ends the verification as a kill would: the image stays built,
	// its verification recorded as begun (Image.Verifying), to be looked at
	// again; a second one would reject it (TestPoisonImageIsFailed).
	if c := consumerBuilds(t, w.store)[k1.Kernel]; c.State != ledger.StateBuilt || c.Verifying == nil || len(c.Rejections) != 0 {
		t.Errorf("after the panic, the consumer's image %+v; want it built, its verification begun, to be looked at again", c)
	}
	if dtk := kernels(t, w.store)[k1.Kernel]; dtk.State != ledger.StatePromoted {
		t.Errorf("the rest of the pass: the DTK %+v", dtk)
	}
	w.pass()
	if c := consumerBuilds(t, w.store)[k1.Kernel]; c.State != ledger.StatePromoted {
		t.Errorf("the verifier mended: %+v", c)
	}
}
