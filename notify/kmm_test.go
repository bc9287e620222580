package notify

import (
	"context"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/dtkbot/dtkbot/kmm"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/state"
)

func consumerBuild(k ledger.Image, st string) ledger.Image {
	c := ledger.Image{Consumer: "acme-nic", Stream: k.Stream, Arch: k.Arch, Kernel: k.Kernel, KernelFull: k.KernelFull,
		State: st, Image: "quay.io/acme/acme-nic:" + k.KernelFull}
	if st == ledger.StatePromoted {
		c.ImageDigest, c.Published = "sha256:"+strings.Repeat("c", 64), true
	}
	return c
}

func (w *world) putConsumer(c ledger.Image) {
	w.t.Helper()
	if err := w.store.Update(func(tx *state.Tx) error { return tx.PutImage(c) }); err != nil {
		w.t.Fatal(err)
	}
}

// A kernel's pull request carries its KMM manifests, and keeps them up to
// date while it is open: the preflights once the DTK is promoted, a
// consumer's kernel mapping once its image is. The issue shows each
// consumer's state.
func TestPullRequestCarriesKMMManifests(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	opts := Options{PullRequest: &PullRequestOptions{Path: "kernels.yaml", KMM: &KMMOptions{}}}
	k := built(ledger.StateVerified)
	if err := w.notifier(opts).Notify(ctx, k); err != nil {
		t.Fatal(err)
	}
	branch := Branch(k)
	dir := "kmm/rhel-9-amd64/5.14.0-427.37.1.el9_4.x86_64/"
	if _, ok := w.gh.File(branch, dir+"preflightvalidationocp.yaml"); ok {
		t.Fatal("a preflight naming a DTK not promoted yet")
	}
	if len(w.gh.Pulls()) != 1 {
		t.Fatalf("%d pull requests", len(w.gh.Pulls()))
	}

	// Promoted, with a consumer still building: the preflights arrive.
	k = built(ledger.StatePromoted)
	k.Published = true
	w.putConsumer(consumerBuild(k, ledger.StateBuildRequested))
	if err := w.notifier(opts).Notify(ctx, k); err != nil {
		t.Fatal(err)
	}
	pre, ok := w.gh.File(branch, dir+"preflightvalidationocp.yaml")
	if !ok || strings.Count(pre, "kind: PreflightValidationOCP") != 2 || !strings.Contains(pre, "kernelVersion: 5.14.0-427.37.1.el9_4.x86_64") ||
		!strings.Contains(pre, "dtkImage: quay.io/acme/dtk@sha256:bbbb") || !strings.Contains(pre, "name: preflight-4.16.16-rhel-9-amd64") {
		t.Fatalf("preflights on the branch:\n%s", pre)
	}
	if _, ok := w.gh.File(branch, dir+"kernel-mappings.yaml"); ok {
		t.Fatal("a kernel mapping for an image not promoted")
	}
	body := w.gh.Issues()[0].Body
	if !strings.Contains(body, "### Consumers") || !strings.Contains(body, "| acme-nic | default (`5.14.0-427.37.1.el9_4.x86_64`) | **build_requested** |") {
		t.Fatalf("issue body:\n%s", body)
	}

	// The consumer's image is promoted: its mapping arrives.
	w.putConsumer(consumerBuild(k, ledger.StatePromoted))
	if err := w.notifier(opts).Notify(ctx, k); err != nil {
		t.Fatal(err)
	}
	maps, ok := w.gh.File(branch, dir+"kernel-mappings.yaml")
	if !ok || !strings.Contains(maps, "acme-nic:\n  - literal: 5.14.0-427.37.1.el9_4.x86_64\n    containerImage: quay.io/acme/acme-nic:5.14.0-427.37.1.el9_4.x86_64") {
		t.Fatalf("mappings on the branch:\n%s", maps)
	}
	if body := w.gh.Issues()[0].Body; !strings.Contains(body, "| acme-nic | default (`5.14.0-427.37.1.el9_4.x86_64`) | **promoted** | `quay.io/acme/acme-nic:5.14.0-427.37.1.el9_4.x86_64` (`sha256:cccc") {
		t.Fatalf("issue body:\n%s", body)
	}
	if len(w.gh.Pulls()) != 1 {
		t.Fatalf("%d pull requests", len(w.gh.Pulls()))
	}

	// Nothing changed: nothing written.
	before := len(w.gh.Mutations())
	if err := w.notifier(opts).Notify(ctx, k); err != nil {
		t.Fatal(err)
	}
	if after := len(w.gh.Mutations()); after != before {
		t.Fatalf("%d writes with nothing new", after-before)
	}

	// Merged: a second consumer's mapping is not pushed onto the branch.
	w.gh.SetPullState(w.gh.Pulls()[0].Number, "closed")
	other := consumerBuild(k, ledger.StatePromoted)
	other.Consumer = "acme-fpga"
	w.putConsumer(other)
	if err := w.notifier(opts).Notify(ctx, k); err != nil {
		t.Fatal(err)
	}
	if maps2, _ := w.gh.File(branch, dir+"kernel-mappings.yaml"); maps2 != maps {
		t.Fatalf("a closed pull request's branch written:\n%s", maps2)
	}
	if len(w.gh.Pulls()) != 1 {
		t.Fatalf("%d pull requests", len(w.gh.Pulls()))
	}
}

// A pull request only ever names a verified image.
func TestNoPullRequestForAnUnverifiedImage(t *testing.T) {
	w := newWorld(t)
	if err := w.notifier(Options{PullRequest: prOpts}).Notify(context.Background(), built(ledger.StateBuilt)); err != nil {
		t.Fatal(err)
	}
	if n := len(w.gh.Pulls()); n != 0 {
		t.Fatalf("%d pull requests for a built, unverified image", n)
	}
}

func TestBadKMMPath(t *testing.T) {
	w := newWorld(t)
	gh, _ := NewClient(w.gh.URL(), TokenAuth{})
	_, err := New(gh, TokenAuth{}, Options{Repository: "acme/driver-ci", PullRequest: &PullRequestOptions{Path: "k.yaml",
		KMM: &KMMOptions{PreflightPath: "kmm/{{.Kernel"}}}, w.store, w.notifier(Options{}).log)
	if err == nil || !strings.Contains(err.Error(), "github.pull_request.kmm.preflight_path") {
		t.Fatalf("err %v", err)
	}
}

// TestAKernelsVariantsShareItsIssueAndPullRequest: a kernel whose DTK
// carries an RT kernel has one issue and one pull request, which name each
// variant's image, a KMM mapping per variant's uname -r and a preflight per
// release and variant.
func TestAKernelsVariantsShareItsIssueAndPullRequest(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	opts := Options{PullRequest: &PullRequestOptions{Path: "kernels.yaml", KMM: &KMMOptions{}}}
	const rt = "5.14.0-427.37.1.el9_4.x86_64+rt"
	k := built(ledger.StatePromoted)
	k.Published = true
	k.KernelFilesRead(ledger.KernelFilesCheck{Variants: []ledger.VariantKernel{{Variant: ledger.VariantRT, KernelFull: rt}}}, k.UpdatedAt)
	w.putConsumer(consumerBuild(k, ledger.StatePromoted))
	rtImage := consumerBuild(k, ledger.StatePromoted)
	rtImage.Variant, rtImage.KernelFull, rtImage.Image = ledger.VariantRT, rt, "quay.io/acme/acme-nic:5.14.0-427.37.1.el9_4.x86_64_rt"
	w.putConsumer(rtImage)
	if err := w.notifier(opts).Notify(ctx, k); err != nil {
		t.Fatal(err)
	}
	if n, p := len(w.gh.Issues()), len(w.gh.Pulls()); n != 1 || p != 1 {
		t.Fatalf("%d issues and %d pull requests for one kernel and its RT variant", n, p)
	}
	body := w.gh.Issues()[0].Body
	for _, want := range []string{
		"| Kernel variants the DTK carries | rt `" + rt + "` |",
		"| acme-nic | default (`5.14.0-427.37.1.el9_4.x86_64`) | **promoted** |",
		"| acme-nic | rt (`" + rt + "`) | **promoted** | `quay.io/acme/acme-nic:5.14.0-427.37.1.el9_4.x86_64_rt`",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the issue lacks %q:\n%s", want, body)
		}
	}
	dir := "kmm/rhel-9-amd64/5.14.0-427.37.1.el9_4.x86_64/"
	maps, _ := w.gh.File(Branch(k), dir+"kernel-mappings.yaml")
	for _, want := range []string{"- literal: 5.14.0-427.37.1.el9_4.x86_64\n", "- literal: " + rt + "\n    containerImage: quay.io/acme/acme-nic:5.14.0-427.37.1.el9_4.x86_64_rt"} {
		if !strings.Contains(maps, want) {
			t.Errorf("the mappings lack %q:\n%s", want, maps)
		}
	}
	var parsed map[string][]kmm.KernelMapping // yaml.v3 refuses a key written twice
	if err := yaml.Unmarshal([]byte(maps), &parsed); err != nil || len(parsed["acme-nic"]) != 2 {
		t.Errorf("the mappings file as YAML: %v, %+v", err, parsed)
	}
	pre, _ := w.gh.File(Branch(k), dir+"preflightvalidationocp.yaml")
	if n := strings.Count(pre, "kind: PreflightValidationOCP"); n != 4 || strings.Count(pre, "kernelVersion: "+rt) != 2 ||
		!strings.Contains(pre, "name: preflight-4.16.16-rhel-9-amd64-rt") {
		t.Errorf("%d preflights for 2 releases and 2 variants:\n%s", n, pre)
	}
}
