package reconcile

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/build"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/releasesig"
)

// ambiguous is a 4.16 payload whose image-references names the DTK twice,
// with two different images.
func ambiguous(version string) payloadtest.ReleaseSpec {
	return payloadtest.ReleaseSpec{Version: version, Stream: k2,
		Tweak: payloadtest.DuplicateTag("driver-toolkit", "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:"+strings.Repeat("0", 64))}
}

// TestBrokenPayloadIsHeldOnce: a payload whose content is broken is held
// with its reason in the pass that read it; that pass and every later one
// are green; it is never read again, across restarts, until asked; a good
// payload beside it is built as usual.
func TestBrokenPayloadIsHeldOnce(t *testing.T) {
	h := newHarness(t)
	h.publish("stable-4.16", "4.16.15", k1)
	broken := h.publishSpec("stable-4.16", ambiguous("4.16.16"))

	res, err := h.reconciler().RunOnce(context.Background(), h.now, Options{})
	if err != nil {
		t.Fatalf("the pass that met the broken payload failed: %v", err)
	}
	if res.Held != 1 || count(res, "build") != 1 || count(res, "hold") != 1 ||
		!strings.Contains(res.Actions[0].Reason, `tag "driver-toolkit" appears twice with different images`) || res.Actions[0].Release != "4.16.16" {
		t.Fatalf("first pass: held %d, actions %+v", res.Held, res.Actions)
	}
	exp, _ := h.store.Export()
	if len(exp.Held) != 1 || exp.Held[0].Digest != broken.Digest.String() || exp.Held[0].Kind != HeldContent || !strings.Contains(exp.Held[0].Reason, "ambiguous") {
		t.Fatalf("state export held %+v", exp.Held)
	}
	for i := 0; i < 3; i++ {
		if i == 1 {
			h.restart()
		}
		before := h.srv.Stats()
		res, err := h.reconciler().RunOnce(context.Background(), h.now, Options{})
		if err != nil || res.Held != 1 || count(res, "hold") != 1 {
			t.Fatalf("pass %d: %v, held %d, %+v", i+2, err, res.Held, res.Actions)
		}
		if c := h.srv.Stats().Sub(before); c.Requests != 0 {
			t.Errorf("pass %d read the held payload again: %d registry requests", i+2, c.Requests)
		}
	}
	// Asked to, a pass reads it again; it is still broken, so still held,
	// and still since the first time.
	before := h.srv.Stats()
	res, err = h.reconciler().RunOnce(context.Background(), h.now.Add(time.Hour), Options{RetryHeld: true})
	if err != nil || res.Held != 1 || h.srv.Stats().Sub(before).ManifestGETs == 0 {
		t.Fatalf("retry-held: %v, held %d", err, res.Held)
	}
	if exp, _ := h.store.Export(); !exp.Held[0].Since.Equal(h.now) {
		t.Errorf("held since %s, want %s", exp.Held[0].Since, h.now)
	}
}

// TestAccessErrorsAreNotHeld: a payload that cannot be read now (here, its
// DTK image is missing from the registry) fails the pass and is read again
// by the next one, which succeeds once the image is back.
func TestAccessErrorsAreNotHeld(t *testing.T) {
	h := newHarness(t)
	p := h.publish("stable-4.16", "4.16.15", k1)
	dtk := p.DTK["driver-toolkit"]
	body, mt, _ := h.srv.Manifest(h.world.ComponentRepo, dtk.Digest.String())
	h.srv.DeleteManifest(h.world.ComponentRepo, dtk.Digest)
	if _, err := h.reconciler().RunOnce(context.Background(), h.now, Options{}); err == nil || !strings.Contains(err.Error(), "manifest unknown") {
		t.Fatalf("the pass should fail: %v", err)
	}
	if exp, _ := h.store.Export(); len(exp.Held) != 0 {
		t.Fatalf("an access error was held: %+v", exp.Held)
	}
	h.srv.PutManifest(h.world.ComponentRepo, "", mt, body)
	if res := h.pass(Options{}); res.Inspected != 1 || count(res, "build") != 1 {
		t.Errorf("after the image came back: %+v", res)
	}
}

// TestIdenticalDuplicateEntryIsUsed: the same entry twice is harmless.
func TestIdenticalDuplicateEntryIsUsed(t *testing.T) {
	h := newHarness(t)
	h.publishSpec("stable-4.16", payloadtest.ReleaseSpec{Version: "4.16.15", Stream: k1, Tweak: payloadtest.DuplicateTag("driver-toolkit", "")})
	res := h.pass(Options{})
	if res.Held != 0 || count(res, "build") != 1 || count(res, "promote:release") != 1 {
		t.Fatalf("%+v", res)
	}
	exp, _ := h.store.Export()
	for _, r := range exp.Inspections {
		if !strings.Contains(strings.Join(r.Warnings, " "), "twice (the same image): used once") {
			t.Errorf("no warning: %q", r.Warnings)
		}
	}
}

// TestDriftAuditRepointsMovedTags: once per interval, every tag dtkbot
// promoted is looked at; a moved or deleted one is re-pointed (or only
// reported), and a tag dtkbot never promoted is left alone.
func TestDriftAuditRepointsMovedTags(t *testing.T) {
	h := newHarness(t)
	h.publish("stable-4.16", "4.16.15", k1)
	h.publish("stable-4.16", "4.16.17", k2)
	withAudit := func(repair bool) *Reconciler {
		r := h.reconciler()
		r.Audit = AuditPolicy{Interval: 24 * time.Hour, Repair: repair}
		return r
	}
	if _, err := withAudit(true).RunOnce(context.Background(), h.now, Options{}); err != nil {
		t.Fatal(err)
	}
	repo := "dtkbot/driver-toolkit"
	want, _ := h.srv.TagDigest(repo, "4.16.15")
	other, _ := h.srv.TagDigest(repo, "4.16.17")
	// Someone moves a release tag, deletes a kernel tag, and pushes a tag
	// of their own.
	move := func(tag string, to interface{ String() string }) {
		body, mt, _ := h.srv.Manifest(repo, to.String())
		h.srv.PutManifest(repo, tag, mt, body)
	}
	move("4.16.15", other)
	move("custom", other)
	h.srv.DeleteTag(repo, k2.Kernel+".x86_64")

	// Within the interval nothing is audited.
	res, _ := withAudit(true).RunOnce(context.Background(), h.now.Add(time.Hour), Options{})
	if res.Audited != 0 {
		t.Fatalf("audited within the interval: %+v", res)
	}
	// Report only: the drift is reported, nothing is touched.
	res, err := withAudit(false).RunOnce(context.Background(), h.now.Add(25*time.Hour), Options{})
	if err != nil || res.Drifted != 2 || count(res, "audit") != 2 {
		t.Fatalf("report only: %v, %+v", err, res)
	}
	if d, _ := h.srv.TagDigest(repo, "4.16.15"); d != other {
		t.Fatalf("a report-only audit moved the tag")
	}
	// Re-point: the moved tag goes back, the deleted one comes back, the
	// tag dtkbot never promoted stays where its owner put it.
	res, err = withAudit(true).RunOnce(context.Background(), h.now.Add(50*time.Hour), Options{})
	if err != nil || res.Drifted != 2 || res.Audited != 4 {
		t.Fatalf("re-point: %v, %+v", err, res)
	}
	for _, a := range res.Actions {
		if a.Type == "audit" && a.Result != "re-pointed" {
			t.Errorf("audit action %+v", a)
		}
	}
	if d, _ := h.srv.TagDigest(repo, "4.16.15"); d != want {
		t.Errorf("4.16.15 at %s, want %s", d, want)
	}
	if d, ok := h.srv.TagDigest(repo, k2.Kernel+".x86_64"); !ok || d != other {
		t.Errorf("the deleted kernel tag was not restored: %s %v", d, ok)
	}
	if d, _ := h.srv.TagDigest(repo, "custom"); d != other {
		t.Errorf("a tag dtkbot never promoted was touched")
	}
	// The next audit is a day later, and finds nothing.
	res, _ = withAudit(true).RunOnce(context.Background(), h.now.Add(75*time.Hour), Options{})
	if res.Audited != 4 || res.Drifted != 0 {
		t.Errorf("the audit after: %+v", res)
	}
}

// TestMirrorsGetKernelTags: every tag, kernel tags first, goes to every
// mirror as well.
func TestMirrorsGetKernelTags(t *testing.T) {
	h := newHarness(t)
	h.target.Mirrors = []string{h.srv.Host() + "/mirror/driver-toolkit"}
	h.publish("stable-4.16", "4.16.15", k1)
	res := h.pass(Options{})
	if count(res, "promote:kernel") != 2 || count(res, "promote:release") != 2 {
		t.Fatalf("%+v", res.Actions)
	}
	want, _ := h.srv.TagDigest("dtkbot/driver-toolkit", k1.Kernel+".x86_64")
	for _, tag := range []string{k1.Kernel + ".x86_64", "4.16.15"} {
		if d, ok := h.srv.TagDigest("mirror/driver-toolkit", tag); !ok || d != want {
			t.Errorf("mirror tag %s at %s, want %s", tag, d, want)
		}
	}
}

// TestStagingTagStaysWhereTheRegistryCannotDeleteTags: best effort, and
// said so in the ledger.
func TestStagingTagStaysWhereTheRegistryCannotDeleteTags(t *testing.T) {
	h := newHarness(t)
	h.srv.SetTagDelete(registrytest.TagDeleteRefused)
	h.publish("stable-4.16", "4.16.15", k1)
	r := h.reconciler()
	if _, err := r.RunOnce(context.Background(), h.now, Options{}); err != nil {
		t.Fatal(err)
	}
	k := kernels(t, h.store)[k1.Kernel]
	if k.State != ledger.StatePromoted || k.StagingRemoved != "kept: the registry does not delete tags" {
		t.Errorf("kernel %+v", k)
	}
	if _, ok := h.srv.TagDigest("dtkbot/driver-toolkit", "staging-"+k1.Kernel+".x86_64"); !ok {
		t.Errorf("the staging tag is gone")
	}
}

// TestLostStateAdoptsVerifiedKernelTags: with the state file gone, kernel
// tags already in the registry are verified and adopted: nothing is built
// or promoted twice.
func TestLostStateAdoptsVerifiedKernelTags(t *testing.T) {
	h := newHarness(t)
	newReconciler := realEffects(h, h.builder)
	h.publish("stable-4.16", "4.16.15", k1)
	h.publish("stable-4.16", "4.16.17", k2)
	if _, err := newReconciler().RunOnce(context.Background(), h.now, Options{}); err != nil {
		t.Fatal(err)
	}
	h.store.Close()
	if err := os.Remove(h.statePath); err != nil {
		t.Fatal(err)
	}
	h.open()
	before := h.srv.Stats()
	res, err := newReconciler().RunOnce(context.Background(), h.now, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h.builder.total() != 2 || count(res, "build") != 0 || h.srv.Stats().Sub(before).ManifestPUTs != 0 || count(res, "verify") != 2 {
		t.Errorf("after losing the state: %d builds in all, %+v", h.builder.total(), res.Actions)
	}
	for _, k := range kernels(t, h.store) {
		if k.State != ledger.StatePromoted || !k.Published {
			t.Errorf("kernel %s %s", k.Kernel, k.State)
		}
	}
}

// TestForeignImageAtTheKernelTagIsNeverOverwritten: an image someone else
// put at a kernel tag, carrying another kernel, fails the kernel; dtkbot
// neither overwrites that tag nor promotes release tags onto it.
func TestForeignImageAtTheKernelTagIsNeverOverwritten(t *testing.T) {
	h := newHarness(t)
	h.builder.sync = false
	_ = h.builder.Build(context.Background(), build.Request{Kernel: k1.Kernel, KernelFull: "5.14.0-427.99.1.el9_4.x86_64", RHEL: "9.4",
		Image: h.target.Repository + ":" + k1.Kernel + ".x86_64"})
	h.builder.Finish()
	foreign, _ := h.srv.TagDigest("dtkbot/driver-toolkit", k1.Kernel+".x86_64")
	h.publish("stable-4.16", "4.16.15", k1)
	res, err := realEffects(h, h.builder)().RunOnce(context.Background(), h.now, Options{})
	if err == nil || !strings.Contains(err.Error(), "never overwrites a tag it did not promote") {
		t.Fatalf("the pass should report the foreign image: %v", err)
	}
	if count(res, "build") != 0 || count(res, "promote") != 0 {
		t.Errorf("actions %+v", res.Actions)
	}
	if d, _ := h.srv.TagDigest("dtkbot/driver-toolkit", k1.Kernel+".x86_64"); d != foreign {
		t.Errorf("the foreign kernel tag was overwritten")
	}
	if k := kernels(t, h.store)[k1.Kernel]; k.State != ledger.StateFailed || len(k.Rejections) != 1 {
		t.Errorf("kernel %+v", k)
	}
}

// TestNothingToVerifyWithIsOneWarningPerPass: without keys or policy,
// every payload is recorded unverified, with one warning for the pass.
func TestNothingToVerifyWithIsOneWarningPerPass(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 5; i++ {
		h.publish("stable-4.16", fmt.Sprintf("4.16.%d", 15+i), k1)
	}
	r := h.reconciler()
	r.Signatures, r.SignatureMode = &fakeSignatures{noTrust: true}, releasesig.ModeWarn
	res, err := r.RunOnce(context.Background(), h.now, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "no payload signature can be verified") ||
		res.Signatures == nil || res.Signatures.Trust != "" || len(res.Signatures.Unverified) != 5 {
		t.Errorf("warnings %q, signatures %+v", res.Warnings, res.Signatures)
	}
}
