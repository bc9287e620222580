package reconcile

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/version"
	"github.com/dtkbot/dtkbot/watcher"
)

var (
	kEC      = payloadtest.Stream{Kernel: "5.14.0-570.10.1.el9_6"}
	kRC      = payloadtest.Stream{Kernel: "5.14.0-570.12.1.el9_6"}
	kNightly = payloadtest.Stream{Kernel: "5.14.0-570.13.1.el9_6"}
)

// candidate builds a pre-release and lists it in a release-controller
// stream, by tag, as the release-controller does.
func (h *harness) candidate(stream, version, phase string, s payloadtest.Stream) *payloadtest.Payload {
	p := h.world.Release(payloadtest.ReleaseSpec{Version: version, Stream: s})
	h.rc.Publish(stream, version, phase, p.TagPullspec)
	return p
}

func releaseOf(t *testing.T, h *harness, version string) ledger.Release {
	t.Helper()
	exp, err := h.store.Export()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range exp.Releases {
		if r.Version == version {
			return r
		}
	}
	t.Fatalf("no release %s recorded", version)
	return ledger.Release{}
}

// TestPrereleasesAreReadyBeforeGA follows a minor from its engineering
// candidate to GA: the ec's and the rc's kernels are built as soon as a
// release-controller accepts them; pre-releases get their own release tag
// and never a floating one; the GA release, whose kernel the rc built, costs
// no build and no new issue, only its tags; and the lead time is recorded.
func TestPrereleasesAreReadyBeforeGA(t *testing.T) {
	h := newHarness(t)
	h.rcStreams = []string{"4-dev-preview", "4-stable"}
	h.channels = []string{"stable-4.17"}
	h.target.FloatingTags = []string{"{{.Minor}}"}
	repo := "dtkbot/driver-toolkit"

	// An engineering candidate, accepted.
	h.candidate("4-dev-preview", "4.17.0-ec.1", watcher.PhaseAccepted, kEC)
	res := h.pass(Options{})
	if count(res, "build") != 1 || count(res, "promote:release") != 1 {
		t.Fatalf("the ec: %+v", res.Actions)
	}
	ec := releaseOf(t, h, "4.17.0-ec.1")
	if ec.Kind != version.KindEC || len(ec.Sources) != 1 || ec.Sources[0].Type != watcher.SourceReleaseController ||
		ec.Sources[0].Name != "4-dev-preview" || ec.Sources[0].Phase != watcher.PhaseAccepted || ec.TaggedAt.IsZero() {
		t.Errorf("the ec's record: %+v", ec)
	}
	if _, ok := h.srv.TagDigest(repo, "4.17.0-ec.1"); !ok {
		t.Error("the ec has no release tag")
	}
	if _, ok := h.srv.TagDigest(repo, "4.17"); ok {
		t.Error("a floating tag moved onto a pre-release")
	}
	if k := kernels(t, h.store)[kEC.Kernel]; !strings.Contains(k.FirstSource, "4.17.0-ec.1 from release-controller") || k.PromotedAt.IsZero() {
		t.Errorf("the ec kernel's lead time: %+v", k)
	}

	// A release candidate, pending first: not a release yet.
	h.candidate("4-stable", "4.17.0-rc.1", watcher.PhasePending, kRC)
	if res := h.pass(Options{}); count(res, "build") != 0 || res.Inspected != 0 {
		t.Fatalf("a pending rc: %+v", res.Actions)
	}
	h.rc.SetPhase("4-stable", "4.17.0-rc.1", watcher.PhaseAccepted)
	if res := h.pass(Options{}); count(res, "build") != 1 {
		t.Fatalf("the accepted rc: %+v", res.Actions)
	}
	rcPromoted := kernels(t, h.store)[kRC.Kernel].PromotedAt

	// GA: a new payload shipping the rc's kernel, in a graph channel.
	h.now = h.now.Add(72 * time.Hour)
	builds, notices := h.builder.total(), len(h.notifier.notices)
	h.publish("stable-4.17", "4.17.0", kRC)
	res = h.pass(Options{})
	if count(res, "build") != 0 || h.builder.total() != builds || count(res, "promote:release") != 1 || count(res, "promote:floating") != 1 {
		t.Fatalf("GA: %+v", res.Actions)
	}
	if len(h.notifier.notices) != notices+1 || !strings.HasPrefix(h.notifier.notices[len(h.notifier.notices)-1], kRC.Kernel+"=") {
		t.Errorf("GA should update the kernel's one issue, not open another: %q", h.notifier.notices[notices:])
	}
	ga, _ := h.srv.TagDigest(repo, "4.17.0")
	if d, _ := h.srv.TagDigest(repo, "4.17"); d != ga {
		t.Errorf("the floating tag is not on GA")
	}
	k := kernels(t, h.store)[kRC.Kernel]
	if strings.Join(k.Releases, ",") != "4.17.0-rc.1,4.17.0" || !k.PromotedAt.Equal(rcPromoted) {
		t.Errorf("the rc kernel after GA: %+v", k)
	}
	if g := releaseOf(t, h, "4.17.0"); g.Kind != version.KindGA || !g.FirstSeen.After(k.PromotedAt) {
		t.Errorf("GA %+v: its kernel was promoted at %s", g, k.PromotedAt)
	}
}

// TestWithdrawnPrereleases: a pre-release the release-controller rejects,
// and one that vanishes from its stream, lose the tags dtkbot gave them;
// their kernels (shipped by other releases, or not) keep their images; a
// failing release-controller withdraws nothing.
func TestWithdrawnPrereleases(t *testing.T) {
	h := newHarness(t)
	h.rcStreams = []string{"4-dev-preview"}
	repo := "dtkbot/driver-toolkit"
	h.candidate("4-dev-preview", "4.17.0-ec.1", watcher.PhaseAccepted, kEC)
	h.candidate("4-dev-preview", "4.17.0-ec.2", watcher.PhaseAccepted, kRC)
	h.pass(Options{})
	for _, tag := range []string{"4.17.0-ec.1", "4.17.0-ec.2"} {
		if _, ok := h.srv.TagDigest(repo, tag); !ok {
			t.Fatalf("%s was not tagged", tag)
		}
	}
	// The release-controller is down: nothing vanishes.
	h.rc.Fail.Store(503)
	if _, err := h.reconciler().RunOnce(context.Background(), h.now, Options{}); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("a failing release-controller: %v", err)
	}
	h.rc.Fail.Store(0)
	// Rejected, and removed from the stream.
	h.rc.SetPhase("4-dev-preview", "4.17.0-ec.1", watcher.PhaseRejected)
	h.rc.Remove("4-dev-preview", "4.17.0-ec.2")
	res := h.pass(Options{})
	if count(res, "withdraw") != 2 {
		t.Fatalf("withdrawals: %+v", res.Actions)
	}
	for _, tag := range []string{"4.17.0-ec.1", "4.17.0-ec.2"} {
		if _, ok := h.srv.TagDigest(repo, tag); ok {
			t.Errorf("%s is still tagged", tag)
		}
	}
	if r := releaseOf(t, h, "4.17.0-ec.1"); !strings.HasPrefix(r.Withdrawn, "rejected: release-controller") {
		t.Errorf("ec.1: %q", r.Withdrawn)
	}
	if r := releaseOf(t, h, "4.17.0-ec.2"); !strings.HasPrefix(r.Withdrawn, "vanished from release-controller") {
		t.Errorf("ec.2: %q", r.Withdrawn)
	}
	for _, k := range []payloadtest.Stream{kEC, kRC} {
		if _, ok := h.srv.TagDigest(repo, k.Kernel+".x86_64"); !ok || kernels(t, h.store)[k.Kernel].State != ledger.StatePromoted {
			t.Errorf("the kernel %s was touched", k.Kernel)
		}
	}
	// Nothing more to do on the next pass.
	if res := h.pass(Options{}); count(res, "withdraw") != 0 || count(res, "promote") != 0 {
		t.Errorf("the pass after: %+v", res.Actions)
	}
	// report mode leaves the tag and says so.
	h2 := newHarness(t)
	h2.rcStreams = []string{"4-dev-preview"}
	h2.candidate("4-dev-preview", "4.17.0-ec.1", watcher.PhaseAccepted, kEC)
	h2.pass(Options{})
	h2.rc.SetPhase("4-dev-preview", "4.17.0-ec.1", watcher.PhaseRejected)
	r := h2.reconciler()
	r.Prerelease.OnWithdrawn = WithdrawReport
	res, _ = r.RunOnce(context.Background(), h2.now, Options{})
	if count(res, "withdraw") != 1 || res.Actions[0].Result != "reported" || len(res.Warnings) == 0 {
		t.Errorf("report mode: %+v", res.Actions)
	}
	if _, ok := h2.srv.TagDigest(repo, "4.17.0-ec.1"); !ok {
		t.Errorf("report mode removed the tag")
	}
}

// TestNightliesAreNotBuiltByDefault: a kernel only nightlies ship is held
// with the reason until a kind that is built ships it.
func TestNightliesAreNotBuiltByDefault(t *testing.T) {
	h := newHarness(t)
	h.rcStreams = []string{"4.17.0-0.nightly"}
	h.candidate("4.17.0-0.nightly", "4.17.0-0.nightly-2026-11-20-101010", watcher.PhaseAccepted, kNightly)
	res := h.pass(Options{})
	if count(res, "build") != 0 || count(res, "hold") != 1 || !strings.Contains(res.Actions[0].Reason, "pre-releases that drive no build") {
		t.Fatalf("a nightly: %+v", res.Actions)
	}
	if r := releaseOf(t, h, "4.17.0-0.nightly-2026-11-20-101010"); r.Kind != version.KindNightly {
		t.Errorf("kind %q", r.Kind)
	}
	h.rcStreams = append(h.rcStreams, "4-dev-preview")
	h.candidate("4-dev-preview", "4.17.0-ec.3", watcher.PhaseAccepted, kNightly)
	if res := h.pass(Options{}); count(res, "build") != 1 {
		t.Errorf("an ec shipping the nightly's kernel: %+v", res.Actions)
	}
}

// TestTagPullspecsAreResolvedOnce: a release-controller names payloads by
// tag; each is resolved to its digest once, then remembered; garbage from
// the controller fails the pass softly.
func TestTagPullspecsAreResolvedOnce(t *testing.T) {
	h := newHarness(t)
	h.rcStreams = []string{"4-stable"}
	for i, v := range []string{"4.17.0-rc.1", "4.17.0-rc.2", "4.17.0-rc.3"} {
		_ = i
		h.candidate("4-stable", v, watcher.PhaseAccepted, kRC)
	}
	h.pass(Options{})
	before := h.srv.Stats()
	res := h.pass(Options{})
	if c := h.srv.Stats().Sub(before); c.Requests+c.Pings+c.Tokens != 0 || len(res.Actions) != 0 {
		t.Errorf("the steady state with a release-controller: %d round trips, %+v", c.Requests+c.Pings+c.Tokens, res.Actions)
	}
	if h.rc.NotMod.Load() == 0 {
		t.Errorf("the release-controller was not asked conditionally")
	}
	// Past registry.resolve_ttl, each tag is resolved again: one HEAD.
	h.now = h.now.Add(2 * time.Hour)
	before = h.srv.Stats()
	h.pass(Options{})
	if c := h.srv.Stats().Sub(before); c.ManifestHEADs != 3 || c.ManifestGETs+c.BlobGETs != 0 {
		t.Errorf("after the TTL: %+v", c)
	}
	h.rc.Garbage.Store(true)
	if _, err := h.reconciler().RunOnce(context.Background(), h.now, Options{}); err == nil || !strings.Contains(err.Error(), "parsing release stream tags") {
		t.Errorf("garbage: %v", err)
	}
	if exp, _ := h.store.Export(); len(exp.Releases) != 3 {
		t.Errorf("garbage lost releases: %d", len(exp.Releases))
	}
}
