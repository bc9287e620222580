package reconcile

import (
	"context"
	"strings"
	"testing"
	"time"

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
