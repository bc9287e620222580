package reconcile

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/ledger"
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
