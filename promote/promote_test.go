package promote

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/registry"
)

// world is an in-process registry, images to push to it, and one pass's
// Tags writing to it through containers/image, with what dtkbot promoted.
type world struct {
	srv   *registrytest.Server
	w     *payloadtest.World
	tags  *Tags
	owned map[string]ledger.Promotion
}

func newWorld(t *testing.T) *world {
	t.Helper()
	srv := registrytest.New().Server()
	t.Cleanup(srv.Close)
	f := false
	reg := registry.New(registry.Options{TLSVerify: &f, RegistriesConf: "/dev/null", Attempts: 1, Timeout: 10 * time.Second})
	w := &world{srv: srv, w: payloadtest.New(srv.Registry, srv.Host()), owned: map[string]ledger.Promotion{}}
	w.tags = &Tags{Registry: NewRemote(reg), Owned: func(ref string) (ledger.Promotion, bool) { p, ok := w.owned[ref]; return p, ok }}
	return w
}

func (w *world) ref(repoTag string) string { return w.srv.Host() + "/" + repoTag }

func (w *world) push(repo, tag, seed string) payloadtest.Pushed {
	return w.w.PushImage(repo, tag, payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer(seed, 4096)}})
}

func TestPromoteWithinARepositoryMovesNoLayer(t *testing.T) {
	w := newWorld(t)
	img := w.w.PushImage("acme/dtk", "5.14.0-427.37.1.el9_4.x86_64", payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("base", 1<<20), payloadtest.NoiseLayer("kernel", 1<<20)}})
	before := w.srv.Stats()
	d, err := w.tags.Promote(context.Background(), img.Pullspec, w.ref("acme/dtk:4.16.15"), "")
	if err != nil || d != img.Digest {
		t.Fatalf("promote: %s %v", d, err)
	}
	after := w.srv.Stats()
	cost := after.Sub(before)
	t.Logf("same-repository promotion: %d requests (+%d pings), %d blob GETs, %d bytes served, %d bytes uploaded", cost.Requests, cost.Pings, cost.BlobGETs, cost.BytesServed, cost.BytesUploaded)
	for _, l := range img.Layers {
		if n := after.BlobBytesByDig[l.String()] - before.BlobBytesByDig[l.String()]; n != 0 {
			t.Errorf("layer %s: %d bytes moved", l, n)
		}
	}
	if cost.BytesUploaded != 0 || cost.BlobUploads != 0 {
		t.Errorf("uploaded: %+v", cost)
	}
	if got, _ := w.srv.TagDigest("acme/dtk", "4.16.15"); got != img.Digest {
		t.Errorf("tag at %s", got)
	}
	// Again: one HEAD, no upload.
	before = w.srv.Stats()
	if _, err := w.tags.Promote(context.Background(), img.Pullspec, w.ref("acme/dtk:4.16.15"), ""); err != nil {
		t.Fatal(err)
	}
	if cost := w.srv.Stats().Sub(before); cost.Requests != 1 || cost.ManifestHEADs != 1 {
		t.Errorf("an up-to-date tag cost %+v", cost)
	}
}

func TestPromoteToAMirrorMovesAnImagesLayersOnce(t *testing.T) {
	w := newWorld(t)
	img := w.w.PushImage("acme/dtk", "k", payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("base", 1<<20), payloadtest.NoiseLayer("kernel", 1<<20)}})
	var uploaded []int64
	for _, tag := range []string{"4.16.15", "4.16.16", "4.16"} {
		before := w.srv.Stats()
		if _, err := w.tags.Promote(context.Background(), img.Pullspec, w.ref("mirror/dtk:"+tag), ""); err != nil {
			t.Fatal(err)
		}
		cost := w.srv.Stats().Sub(before)
		uploaded = append(uploaded, cost.BytesUploaded)
		t.Logf("mirror promotion %s: %d requests, %d bytes uploaded", tag, cost.Requests, cost.BytesUploaded)
		if got, _ := w.srv.TagDigest("mirror/dtk", tag); got != img.Digest {
			t.Errorf("mirror tag %s at %s", tag, got)
		}
	}
	if uploaded[0] < 2<<20 || uploaded[1] != 0 || uploaded[2] != 0 {
		t.Errorf("bytes uploaded per promotion %v: the layers should move once", uploaded)
	}
}

// TestPromoteRefusesAManifestList: a list's platforms other than the one
// verified would reach the tag unverified; its verified instance is what
// is promoted, digest kept.
func TestPromoteRefusesAManifestList(t *testing.T) {
	w := newWorld(t)
	amd := w.w.PushImage("acme/dtk", "", payloadtest.Image{Arch: "amd64", Layers: [][]byte{payloadtest.NoiseLayer("amd", 4096)}})
	arm := w.w.PushImage("acme/dtk", "", payloadtest.Image{Arch: "arm64", Layers: [][]byte{payloadtest.NoiseLayer("arm", 4096)}})
	list := w.w.PushList("acme/dtk", "staging-k", true, amd, arm)
	for _, dst := range []string{w.ref("acme/dtk:4.18.14"), w.ref("mirror/dtk:4.18.14")} {
		if _, err := w.tags.Promote(context.Background(), list.Pullspec, dst, ""); !errors.Is(err, ErrManifestList) {
			t.Errorf("%s: a list promoted: %v", dst, err)
		}
		d, err := w.tags.Promote(context.Background(), amd.Pullspec, dst, "")
		if err != nil || d != amd.Digest {
			t.Fatalf("%s: the instance: %s %v", dst, d, err)
		}
	}
	if _, _, ok := w.srv.Manifest("mirror/dtk", arm.Digest.String()); ok {
		t.Error("the other platform reached the mirror")
	}
}

func TestPromoteRefusesAnUnpinnedSource(t *testing.T) {
	w := newWorld(t)
	w.push("acme/dtk", "latest", "x")
	if _, err := w.tags.Promote(context.Background(), w.ref("acme/dtk:latest"), w.ref("acme/dtk:x"), ""); err == nil {
		t.Error("a source by tag was promoted")
	}
}

// Rule 1: no tag but the kernel tag before the kernel tag holds the image
// in this pass.
func TestATagWaitsForItsKernelTag(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	img := w.push("acme/dtk", "staging-k", "mine")
	kernel, release := w.ref("acme/dtk:k"), w.ref("acme/dtk:4.16.15")

	// The kernel tag does not exist: the release tag is not written.
	if _, err := w.tags.Promote(ctx, img.Pullspec, release, kernel); !errors.Is(err, ErrUnconfirmed) {
		t.Fatalf("a release tag before its kernel tag: %v", err)
	}
	if _, ok := w.srv.TagDigest("acme/dtk", "4.16.15"); ok {
		t.Fatal("the release tag was written before the kernel tag")
	}

	// A kernel tag whose promotion failed in this pass (another image is
	// there, not dtkbot's) keeps the release tag out, without another HEAD.
	other := w.push("acme/dtk", "k", "someone else's")
	w.tags = &Tags{Registry: w.tags.Registry, Owned: w.tags.Owned}
	if _, err := w.tags.Promote(ctx, img.Pullspec, kernel, ""); !errors.Is(err, ErrConflict) {
		t.Fatalf("the kernel tag over someone else's image: %v", err)
	}
	before := w.srv.Stats()
	if _, err := w.tags.Promote(ctx, img.Pullspec, release, kernel); !errors.Is(err, ErrUnconfirmed) {
		t.Fatalf("a release tag after its kernel tag failed: %v", err)
	}
	if c := w.srv.Stats().Sub(before); c.Requests != 0 {
		t.Errorf("a refused kernel tag was asked again: %d requests", c.Requests)
	}
	if got, _ := w.srv.TagDigest("acme/dtk", "k"); got != other.Digest {
		t.Errorf("the kernel tag was overwritten: %s", got)
	}

	// In a later pass the kernel tag holds the image: one HEAD confirms
	// it, and the release tag follows.
	w.srv.Registry.DeleteTag("acme/dtk", "k")
	w.tags = &Tags{Registry: w.tags.Registry, Owned: w.tags.Owned}
	if _, err := w.tags.Promote(ctx, img.Pullspec, kernel, ""); err != nil {
		t.Fatal(err)
	}
	next := &Tags{Registry: w.tags.Registry, Owned: w.tags.Owned}
	before = w.srv.Stats()
	if _, err := next.Promote(ctx, img.Pullspec, release, kernel); err != nil {
		t.Fatalf("a release tag after its kernel tag: %v", err)
	}
	if got, _ := w.srv.TagDigest("acme/dtk", "4.16.15"); got != img.Digest {
		t.Errorf("release tag at %s", got)
	}
	if _, err := next.Promote(ctx, img.Pullspec, w.ref("acme/dtk:4.16.16"), kernel); err != nil {
		t.Fatal(err)
	}
	after := w.srv.Stats()
	c := after.Sub(before)
	t.Logf("two release tags of an image whose kernel tag an earlier pass promoted: %d requests, %d HEADs", c.Requests, c.ManifestHEADs)
	if got := after.ByPath["HEAD /v2/acme/dtk/manifests/k"] - before.ByPath["HEAD /v2/acme/dtk/manifests/k"]; got != 1 {
		t.Errorf("the kernel tag was confirmed %d times in one pass, want once", got)
	}
}

// Rule 2: never over a tag dtkbot did not promote.
func TestPromoteNeverOverwritesATagItDidNotPromote(t *testing.T) {
	ctx := context.Background()
	mine := func(w *world) payloadtest.Pushed { return w.push("acme/dtk", "staging-k", "mine") }
	for _, tc := range []struct {
		name      string
		setup     func(w *world, img payloadtest.Pushed) // what is at acme/dtk:4.16 first
		repair    bool
		overwrite bool
		moved     bool
	}{
		{name: "someone else's tag", setup: func(w *world, _ payloadtest.Pushed) { w.push("acme/dtk", "4.16", "theirs") }},
		{name: "dtkbot's tag, as dtkbot left it (a floating tag moving on)", overwrite: true, setup: func(w *world, _ payloadtest.Pushed) {
			old := w.push("acme/dtk", "4.16", "older release")
			w.owned[w.ref("acme/dtk:4.16")] = ledger.Promotion{Ref: w.ref("acme/dtk:4.16"), Digest: old.Digest.String()}
		}},
		{name: "dtkbot's tag, moved by someone (drift, report)", moved: true, setup: func(w *world, _ payloadtest.Pushed) {
			w.push("acme/dtk", "4.16", "theirs")
			w.owned[w.ref("acme/dtk:4.16")] = ledger.Promotion{Ref: w.ref("acme/dtk:4.16"), Digest: digest.FromString("ours").String()}
		}},
		{name: "dtkbot's tag, moved by someone (drift, repoint)", repair: true, overwrite: true, setup: func(w *world, _ payloadtest.Pushed) {
			w.push("acme/dtk", "4.16", "theirs")
			w.owned[w.ref("acme/dtk:4.16")] = ledger.Promotion{Ref: w.ref("acme/dtk:4.16"), Digest: digest.FromString("ours").String()}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.tags.Repair = tc.repair
			img := mine(w)
			tc.setup(w, img)
			before, _ := w.srv.TagDigest("acme/dtk", "4.16")
			_, err := w.tags.Promote(ctx, img.Pullspec, w.ref("acme/dtk:4.16"), "")
			after, _ := w.srv.TagDigest("acme/dtk", "4.16")
			if tc.overwrite {
				if err != nil || after != img.Digest {
					t.Fatalf("want the tag at %s: %v, at %s", img.Digest, err, after)
				}
				return
			}
			var conflict *ConflictError
			if !errors.As(err, &conflict) || conflict.Has != before || conflict.Want != img.Digest || conflict.Moved != tc.moved {
				t.Fatalf("want a conflict (has %s, moved %v): %#v %v", before, tc.moved, conflict, err)
			}
			if after != before {
				t.Errorf("the tag was overwritten: %s, was %s", after, before)
			}
		})
	}
}

// Rule 2, for removals: a withdrawn tag goes only while it holds what
// dtkbot put there.
func TestRemoveOnlyWhatDtkbotPutThere(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	img := w.push("acme/dtk", "4.17.0-rc.1", "mine")
	ref := w.ref("acme/dtk:4.17.0-rc.1")
	if _, err := w.tags.Remove(ctx, ref, nil); err == nil {
		t.Fatal("removed a tag dtkbot did not promote")
	}
	w.owned[ref] = ledger.Promotion{Ref: ref, Digest: img.Digest.String()}
	theirs := w.push("acme/dtk", "4.17.0-rc.1", "moved since")
	var conflict *ConflictError
	if _, err := w.tags.Remove(ctx, ref, nil); !errors.As(err, &conflict) || !conflict.Moved {
		t.Fatalf("a moved tag: %v", err)
	}
	if got, _ := w.srv.TagDigest("acme/dtk", "4.17.0-rc.1"); got != theirs.Digest {
		t.Fatalf("a moved tag was removed: %s", got)
	}
	w.push("acme/dtk", "4.17.0-rc.1", "mine") // back to dtkbot's image
	if outcome, err := w.tags.Remove(ctx, ref, nil); err != nil || outcome != "removed" {
		t.Fatal(outcome, err)
	}
	if _, ok := w.srv.TagDigest("acme/dtk", "4.17.0-rc.1"); ok {
		t.Error("the tag is still there")
	}
	if outcome, err := w.tags.Remove(ctx, ref, nil); err != nil || outcome != "already gone" {
		t.Errorf("a tag already gone: %q %v", outcome, err)
	}
}

// Rule 4: every removal goes through one guarded path. Against a registry
// whose tag DELETE takes the manifest, and every tag naming it, with the
// tag (older Harbor, early zot), withdrawing a pre-release's tag leaves the
// image's other tags where they were: its kernel tag, a GA release's tag,
// and a tag of someone else's on the same image.
func TestWithdrawingATagLeavesTheImagesOtherTags(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []registrytest.TagDelete{registrytest.TagDeleteRemovesTag, registrytest.TagDeleteTakesManifest} {
		takesManifest := mode == registrytest.TagDeleteTakesManifest
		w := newWorld(t)
		w.srv.SetTagDelete(mode)
		img := w.push("acme/dtk", "staging-k", "mine")
		kernel, ga, rc := w.ref("acme/dtk:k"), w.ref("acme/dtk:4.16.15"), w.ref("acme/dtk:4.17.0-rc.1")
		for _, ref := range []string{kernel, ga, rc} {
			if _, err := w.tags.Promote(ctx, img.Pullspec, ref, ""); err != nil {
				t.Fatal(err)
			}
			w.owned[ref] = ledger.Promotion{Ref: ref, Digest: img.Digest.String()}
		}
		body, mt, _ := w.srv.Manifest("acme/dtk", img.Digest.String())
		w.srv.PutManifest("acme/dtk", "prod", mt, body) // someone else's tag on dtkbot's image
		before := w.srv.Stats()
		outcome, err := w.tags.Remove(ctx, rc, []string{kernel, ga})
		if err != nil {
			t.Fatalf("takes manifest %v: %v", takesManifest, err)
		}
		c := w.srv.Stats().Sub(before)
		t.Logf("withdrawing a tag (the registry deletes the manifest too: %v): %q, %d requests, %d manifest PUTs", takesManifest, outcome, c.Requests, c.ManifestPUTs)
		if _, ok := w.srv.TagDigest("acme/dtk", "4.17.0-rc.1"); ok {
			t.Error("the withdrawn tag is still there")
		}
		for _, tag := range []string{"k", "4.16.15", "prod", "staging-k"} {
			if got, _ := w.srv.TagDigest("acme/dtk", tag); got != img.Digest {
				t.Errorf("takes manifest %v: %s at %q after the withdrawal", takesManifest, tag, got)
			}
		}
		if restored := c.ManifestPUTs == 4; restored != takesManifest || strings.Contains(outcome, "put back") != takesManifest {
			t.Errorf("takes manifest %v: %d manifest PUTs, outcome %q", takesManifest, c.ManifestPUTs, outcome)
		}
	}
}

// Rule 4: after the staging tag goes, the image's tags still hold it; a
// registry that deleted them with it gets them back. A staging tag a later
// build pushed to is not removed.
func TestRemoveStagingConfirmsTheKernelTag(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []registrytest.TagDelete{registrytest.TagDeleteRemovesTag, registrytest.TagDeleteTakesManifest} {
		takesManifest := mode == registrytest.TagDeleteTakesManifest
		w := newWorld(t)
		w.srv.SetTagDelete(mode)
		img := w.push("acme/dtk", "staging-k", "mine")
		kernel, release := w.ref("acme/dtk:k"), w.ref("acme/dtk:4.16.15")
		for _, ref := range []string{kernel, release} {
			if _, err := w.tags.Promote(ctx, img.Pullspec, ref, ""); err != nil {
				t.Fatal(err)
			}
		}
		before := w.srv.Stats()
		outcome, err := w.tags.RemoveStaging(ctx, w.ref("acme/dtk:staging-k"), img.Digest, []string{kernel, release})
		if err != nil {
			t.Fatalf("takes manifest %v: %v", takesManifest, err)
		}
		c := w.srv.Stats().Sub(before)
		t.Logf("removing a staging tag (the registry deletes the manifest too: %v): %q, %d requests, %d manifest PUTs", takesManifest, outcome, c.Requests, c.ManifestPUTs)
		if _, ok := w.srv.TagDigest("acme/dtk", "staging-k"); ok {
			t.Error("the staging tag is still there")
		}
		for _, tag := range []string{"k", "4.16.15"} {
			if got, _ := w.srv.TagDigest("acme/dtk", tag); got != img.Digest {
				t.Errorf("takes manifest %v: %s at %q after the staging tag went", takesManifest, tag, got)
			}
		}
		if restored := c.ManifestPUTs > 0; restored != takesManifest || (outcome == "removed") == takesManifest {
			t.Errorf("takes manifest %v: %d manifest PUTs, outcome %q", takesManifest, c.ManifestPUTs, outcome)
		}
	}

	// The staging tag holds a later build's image: it stays.
	w := newWorld(t)
	img := w.push("acme/dtk", "staging-k", "mine")
	later := w.push("acme/dtk", "staging-k", "a later build")
	if outcome, err := w.tags.RemoveStaging(ctx, w.ref("acme/dtk:staging-k"), img.Digest, nil); err != nil || !strings.HasPrefix(outcome, "kept: it holds "+later.Digest.String()) {
		t.Errorf("a staging tag a later build pushed to: %q %v", outcome, err)
	}
	if got, _ := w.srv.TagDigest("acme/dtk", "staging-k"); got != later.Digest {
		t.Errorf("the later build's staging tag at %s", got)
	}

	// A registry that does not delete tags keeps the staging tag: not an error.
	w = newWorld(t)
	w.srv.Registry.SetTagDelete(registrytest.TagDeleteRefused)
	img = w.push("acme/dtk", "staging-k", "mine")
	if _, err := w.tags.Promote(ctx, img.Pullspec, w.ref("acme/dtk:k"), ""); err != nil {
		t.Fatal(err)
	}
	if outcome, err := w.tags.RemoveStaging(ctx, w.ref("acme/dtk:staging-k"), img.Digest, []string{w.ref("acme/dtk:k")}); err != nil || outcome == "removed" {
		t.Errorf("a registry that keeps tags: %q %v", outcome, err)
	}
}
