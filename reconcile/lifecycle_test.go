package reconcile

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/state"
)

// The lifecycle every kind of image shares, where it meets content it
// cannot trust: each test fails when its rule is broken.

// TestUnreadableImageIsRejected: a DTK whose top layer is not a tar is a
// verdict on content that cannot change behind its digest: the image is
// rejected, the attempt spent, and it is built again after the backoff;
// never left built, failing every pass.
func TestUnreadableImageIsRejected(t *testing.T) {
	h := newHarness(t)
	h.builder.set(func(b *fakeBuilder) { b.notTar = map[string]bool{k1.Kernel: true} })
	h.publish("stable-4.16", "4.16.15", k1)
	res, err := h.verifying().RunOnce(context.Background(), h.now, Options{})
	if err != nil {
		t.Errorf("a rejection with attempts left failed the pass: %v", err)
	}
	k := kernels(t, h.store)[k1.Kernel]
	if res.Rejected != 1 || len(k.Rejections) != 1 || k.State != ledger.StateNew || k.Attempts != 1 || !k.NextAttemptAt.After(h.now) ||
		!strings.Contains(k.Rejections[0].Reason, "rejected") {
		t.Fatalf("rejected %d; the image: %s, attempts %d, next %s, rejections %+v, reason %q", res.Rejected, k.State, k.Attempts, k.NextAttemptAt, k.Rejections, k.Reason)
	}
	if _, ok := h.srv.TagDigest("dtkbot/driver-toolkit", k1.Kernel+".x86_64"); ok {
		t.Error("the unreadable image reached its kernel tag")
	}
	// The next build is a good one: after the backoff it is built,
	// verified and promoted.
	h.builder.set(func(b *fakeBuilder) { b.notTar = nil })
	h.now = h.now.Add(time.Hour)
	if _, err := h.verifying().RunOnce(context.Background(), h.now, Options{}); err != nil {
		t.Fatal(err)
	}
	if k := kernels(t, h.store)[k1.Kernel]; k.State != ledger.StatePromoted || k.Attempts != 2 {
		t.Errorf("after the backoff: %s, attempts %d, %q", k.State, k.Attempts, k.Reason)
	}
}

// TestRejectedStagingTagGoesAlone (rule 4): a rejected build's staging tag
// is removed through the same guarded path as every other tag: against a
// registry whose tag DELETE takes the manifest, a tag of someone else's
// naming the same image is put back.
func TestRejectedStagingTagGoesAlone(t *testing.T) {
	h := newHarness(t)
	h.builder.set(func(b *fakeBuilder) { b.notTar = map[string]bool{k1.Kernel: true} })
	// The very image the build will push, tagged by someone else first.
	theirs := h.world.PushImage("dtkbot/driver-toolkit", "theirs", payloadtest.Image{
		Labels: map[string]string{"kernel-version": k1.Kernel},
		Layers: [][]byte{payloadtest.NoiseLayer("dtk-"+k1.Kernel, 4096), []byte("a build log pushed as a layer: neither gzip, zstd nor a tar, for kernel " + k1.Kernel)},
	})
	h.srv.SetTagDelete(registrytest.TagDeleteTakesManifest)
	h.publish("stable-4.16", "4.16.15", k1)
	if _, err := h.verifying().RunOnce(context.Background(), h.now, Options{}); err != nil {
		t.Fatal(err)
	}
	k := kernels(t, h.store)[k1.Kernel]
	if len(k.Rejections) != 1 || k.Rejections[0].Digest != theirs.Digest.String() || !k.Rejections[0].Untagged {
		t.Fatalf("the rejection: %+v (their image %s)", k.Rejections, theirs.Digest)
	}
	if _, ok := h.srv.TagDigest("dtkbot/driver-toolkit", "staging-"+k1.Kernel+".x86_64"); ok {
		t.Error("the rejected image's staging tag is still there")
	}
	if d, _ := h.srv.TagDigest("dtkbot/driver-toolkit", "theirs"); d != theirs.Digest {
		t.Errorf("their tag, which named the rejected image too, is at %q", d)
	}
}

// TestOnlyTheVerifiedPlatformIsPromoted: a build that pushes a manifest
// list (a correct amd64 DTK, and an arm64 image of anything) has its amd64
// instance verified and promoted, alone: no tag consumers read, arch-less
// (4.16.15), floating (4.16) or in a mirror, ever names the list or its
// arm64 image. A list without the arch's instance is rejected.
func TestOnlyTheVerifiedPlatformIsPromoted(t *testing.T) {
	h := newHarness(t)
	h.target.FloatingTags = []string{"{{.Minor}}"}
	h.target.Mirrors = []string{h.srv.Host() + "/mirror/driver-toolkit"}
	h.builder.set(func(b *fakeBuilder) {
		b.asList = map[string]string{k1.Kernel: "amd64 and arm64", k2.Kernel: "arm64 only"}
	})
	h.publish("stable-4.16", "4.16.15", k1)
	h.publish("stable-4.16", "4.16.17", k2)
	if _, err := h.verifying().RunOnce(context.Background(), h.now, Options{}); err != nil {
		t.Fatal(err)
	}
	k := kernels(t, h.store)[k1.Kernel]
	var list payloadtest.Pushed
	h.builder.set(func(b *fakeBuilder) { list = b.lists[k1.Kernel] })
	amd, arm := list.ForArch("amd64").Digest.String(), list.ForArch("arm64").Digest.String()
	if len(list.Instances) != 2 || amd == arm {
		t.Fatalf("the list pushed: %+v", list)
	}
	if k.State != ledger.StatePromoted || k.ImageDigest != amd {
		t.Errorf("the DTK: %s at %s, want promoted at the amd64 instance %s", k.State, k.ImageDigest, amd)
	}
	for _, repo := range []string{"dtkbot/driver-toolkit", "mirror/driver-toolkit"} {
		tags := h.srv.Tags(repo)
		if len(tags) < 3 {
			t.Errorf("%s: tags %v", repo, tags)
		}
		for _, tag := range tags {
			if d, _ := h.srv.TagDigest(repo, tag); d.String() != amd {
				t.Errorf("%s:%s holds %s, not the verified amd64 image %s (the list %s, its arm64 image %s)", repo, tag, d, amd, list.Digest, arm)
			}
		}
	}
	if _, _, ok := h.srv.Manifest("mirror/driver-toolkit", arm); ok {
		t.Error("the arm64 image reached the mirror")
	}
	if k2 := kernels(t, h.store)[k2.Kernel]; len(k2.Rejections) != 1 || !strings.Contains(k2.Rejections[0].Reason, "no linux/amd64 image") {
		t.Errorf("a list without an amd64 image: %s, %+v", k2.State, k2.Rejections)
	}
}

// pushDTK pushes a DTK for s's kernel (of anyone's build: seed makes it
// differ) at repo:tag.
func pushDTK(h *harness, repo, tag string, s payloadtest.Stream, seed string) payloadtest.Pushed {
	release := []byte(`{"KERNEL_VERSION":"` + s.Kernel + `.x86_64","RT_KERNEL_VERSION":"","RHEL_VERSION":"9.4"}`)
	return h.world.PushImage(repo, tag, payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer(seed, 4096),
		payloadtest.TarGz(payloadtest.File("etc/driver-toolkit-release.json", release))}})
}

// TestAdoptedKernelTagIsNeverMoved (trust rule 3): an image someone else
// put at a kernel tag is verified and adopted, recorded as adopted and
// never as a promotion of dtkbot's; its release tag is dtkbot's; when the
// owner pushes another image to their tag, the drift audit leaves it there.
func TestAdoptedKernelTagIsNeverMoved(t *testing.T) {
	h := newHarness(t)
	kernelTag := k1.Kernel + ".x86_64"
	theirs := pushDTK(h, "dtkbot/driver-toolkit", kernelTag, k1, "their build")
	h.publish("stable-4.16", "4.16.15", k1)
	pass := func() *Result {
		r := h.verifying()
		r.Audit = AuditPolicy{Interval: time.Hour, Repair: true}
		res, err := r.RunOnce(context.Background(), h.now, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	pass()
	k := kernels(t, h.store)[k1.Kernel]
	exp, _ := h.store.Export()
	kernelRef := h.target.Repository + ":" + kernelTag
	if k.State != ledger.StatePromoted || !k.Adopted || k.ImageDigest != theirs.Digest.String() || h.builder.total() != 0 {
		t.Fatalf("the DTK: %s, adopted %v, at %s (theirs %s), %d builds", k.State, k.Adopted, k.ImageDigest, theirs.Digest, h.builder.total())
	}
	if pr, ok := exp.Tags[kernelRef]; ok {
		t.Errorf("the adopted kernel tag is recorded as a promotion of dtkbot's: %+v", pr)
	}
	if pr, ok := exp.Tags[h.target.Repository+":4.16.15"]; !ok || pr.Digest != theirs.Digest.String() {
		t.Errorf("the release tag: %+v %v", pr, ok)
	}
	// The owner pushes a new build to their tag; the audit, due, does not
	// move it back.
	again := pushDTK(h, "dtkbot/driver-toolkit", kernelTag, k1, "their next build")
	h.now = h.now.Add(2 * time.Hour)
	res := pass()
	if d, _ := h.srv.TagDigest("dtkbot/driver-toolkit", kernelTag); d != again.Digest {
		t.Errorf("the adopted kernel tag was moved back to %s (its owner put %s there): %+v", d, again.Digest, res.Actions)
	}
	if res.Audited == 0 {
		t.Error("the audit did not run")
	}
}

// TestUnverifiedKindAdoptsNothing: with build.verify: false nothing checks
// an image someone else put at a kernel tag: it is not adopted, and no
// release or floating tag is ever pointed at it.
func TestUnverifiedKindAdoptsNothing(t *testing.T) {
	h := newHarness(t)
	h.target.FloatingTags = []string{"{{.Minor}}"}
	kernelTag := k1.Kernel + ".x86_64"
	theirs := h.world.PushImage("dtkbot/driver-toolkit", kernelTag, payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("anything at all", 4096)}})
	h.publish("stable-4.16", "4.16.15", k1)
	_, err := h.reconciler().RunOnce(context.Background(), h.now, Options{}) // no DTK verifier: build.verify: false
	if err == nil || !strings.Contains(err.Error(), "not adopted") {
		t.Errorf("the pass does not say so: %v", err)
	}
	if tags := h.srv.Tags("dtkbot/driver-toolkit"); len(tags) != 1 || tags[0] != kernelTag {
		t.Errorf("tags %v: the unchecked image was spread", tags)
	}
	if d, _ := h.srv.TagDigest("dtkbot/driver-toolkit", kernelTag); d != theirs.Digest {
		t.Errorf("their kernel tag at %s", d)
	}
	if k := kernels(t, h.store)[k1.Kernel]; k.State != ledger.StateFailed || !strings.Contains(k.Reason, "build.verify: false") {
		t.Errorf("the DTK: %s, %q", k.State, k.Reason)
	}
	// Later passes hold it, failing nothing, tagging nothing.
	h.now = h.now.Add(time.Hour)
	if res := h.pass(Options{}); count(res, "promote") != 0 {
		t.Errorf("later: %+v", res.Actions)
	}
}

// TestAdoptionsOfEarlierStateFiles: a state file that recorded an adopted
// image's kernel tag as a promotion (before Image.Adopted) is read as
// adopted, and the tag forgotten: the audit never moves it.
func TestAdoptionsOfEarlierStateFiles(t *testing.T) {
	h := newHarness(t)
	kernelTag := k1.Kernel + ".x86_64"
	theirs := pushDTK(h, "dtkbot/driver-toolkit", kernelTag, k1, "their build")
	ref := h.target.Repository + ":" + kernelTag
	m := ledger.Image{Stream: "rhel-9", Arch: "amd64", Kernel: k1.Kernel, KernelFull: kernelTag, Releases: []string{"4.16.15"},
		State: ledger.StatePromoted, Image: ref, ImageDigest: theirs.Digest.String(), Published: true}
	if err := h.store.Update(func(tx *state.Tx) error {
		if err := tx.PutImage(m); err != nil {
			return err
		}
		return tx.PutPromotion(ledger.Promotion{Ref: ref, Digest: m.ImageDigest, Kernel: m.Kernel, KernelKey: m.KernelKey(), Kind: ledger.TagKernel})
	}); err != nil {
		t.Fatal(err)
	}
	h.pass(Options{})
	exp, _ := h.store.Export()
	if _, ok := exp.Tags[ref]; ok || !kernels(t, h.store)[k1.Kernel].Adopted {
		t.Errorf("tags %v, the DTK %+v", exp.Tags, kernels(t, h.store)[k1.Kernel])
	}
}

// TestDTKWithoutKernelFilesAsksNoConsumerBuild: when a consumer checks its
// modules against the kernel's files (verify.abi: true), whether a DTK
// carries them is decided once per DTK image: one that lacks them is
// rejected with that one reason, and no consumer image is ever asked FROM
// it (each would be rejected for a reason that depends on the DTK alone).
// A DTK promoted before any consumer needed them is read once, and holds
// its consumers with that reason.
func TestDTKWithoutKernelFilesAsksNoConsumerBuild(t *testing.T) {
	w := newConsumerWorld(t)
	w.builder.sync = true
	w.builder.set(func(b *fakeBuilder) { b.noKernelFiles = map[string]bool{k1.Kernel: true, k2.Kernel: true} })
	w.publish("stable-4.16", "4.16.15", k1)
	for i := 0; i < 6; i++ {
		_, _ = w.reconciler().RunOnce(context.Background(), w.now, Options{})
		w.now = w.now.Add(24 * time.Hour)
	}
	if n := len(w.ci.Requests()); n != 0 {
		t.Errorf("%d kmod builds asked FROM a DTK without the kernel's files, want 0", n)
	}
	dtk := kernels(t, w.store)[k1.Kernel]
	if dtk.State != ledger.StateFailed || len(dtk.Rejections) != w.policy.MaxAttempts {
		t.Fatalf("the DTK: %s, %d rejections: %+v", dtk.State, len(dtk.Rejections), dtk.Rejections)
	}
	for _, r := range dtk.Rejections {
		if !strings.Contains(r.Reason, "has no etc/driver-toolkit/"+k1.Kernel+".x86_64/Module.symvers") || !strings.Contains(r.Reason, "acme-nic") {
			t.Errorf("the rejection does not say why: %q", r.Reason)
		}
	}

	// A DTK promoted while no consumer needed its kernel's files.
	w.publish("stable-4.16", "4.16.17", k2)
	noConsumer := w.reconciler()
	noConsumer.Consumers = nil
	if _, err := noConsumer.RunOnce(context.Background(), w.now, Options{Release: "4.16.17"}); err != nil {
		t.Fatal(err)
	}
	if k := kernels(t, w.store)[k2.Kernel]; k.State != ledger.StatePromoted || k.KernelFiles != nil {
		t.Fatalf("the second DTK: %s, kernel files %+v", k.State, k.KernelFiles)
	}
	for i := 0; i < 2; i++ {
		before := w.srv.Stats()
		res, _ := w.reconciler().RunOnce(context.Background(), w.now, Options{Release: "4.16.17"})
		held := false
		for _, a := range res.Actions {
			held = held || (a.Type == plan.ActionHold && a.Consumer == "acme-nic" && strings.Contains(a.Reason, "has no etc/driver-toolkit/"+k2.Kernel+".x86_64/Module.symvers"))
		}
		if !held {
			t.Errorf("pass %d: the consumer is not held with the reason: %+v", i+1, res.Actions)
		}
		if i == 1 && w.srv.Stats().Sub(before).BlobGETs != 0 {
			t.Errorf("the DTK was read again: %d blob GETs", w.srv.Stats().Sub(before).BlobGETs)
		}
	}
	if n := len(w.ci.Requests()); n != 0 {
		t.Errorf("%d kmod builds asked, want 0", n)
	}
	if k := kernels(t, w.store)[k2.Kernel]; k.KernelFiles == nil || len(k.KernelFiles.Missing) != 3 {
		t.Errorf("the second DTK's kernel files: %+v", k.KernelFiles)
	}
}
