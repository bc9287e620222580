package reconcile

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/build"
	"github.com/dtkbot/dtkbot/internal/githubtest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/notify"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/watcher"
)

// The trust rules of package promote, seen from a whole pass: each test
// fails when its rule is broken (the notes say which code each guards).

// TestReleaseTagsWaitForTheKernelTag (rule 1, promote.Tags.Promote's
// Confirm): when the kernel tag cannot be written, no release tag, mirror
// tag or consumer is ever pointed at the image in that pass.
func TestReleaseTagsWaitForTheKernelTag(t *testing.T) {
	h := newHarness(t)
	h.target.Mirrors = []string{h.srv.Host() + "/mirror/driver-toolkit"}
	kernelTag := k1.Kernel + ".x86_64"
	h.srv.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && r.URL.Path == "/v2/dtkbot/driver-toolkit/manifests/"+kernelTag {
			http.Error(w, "storage full", http.StatusInternalServerError)
			return true
		}
		return false
	})
	h.publish("stable-4.16", "4.16.15", k1)
	res, err := h.reconciler().RunOnce(context.Background(), h.now, Options{})
	if err == nil {
		t.Fatal("a kernel tag that cannot be written does not fail the pass")
	}
	for _, repo := range []string{"dtkbot/driver-toolkit", "mirror/driver-toolkit"} {
		for _, tag := range h.srv.Tags(repo) {
			if !strings.HasPrefix(tag, "staging-") {
				t.Errorf("%s:%s was written while the kernel tag failed", repo, tag)
			}
		}
	}
	skipped := 0
	for _, a := range res.Actions {
		if a.Type == plan.ActionPromote && a.After != "" && strings.HasPrefix(a.Result, "skipped") {
			skipped++
		}
	}
	if skipped != 3 { // the release tag, the mirror's kernel and release tags
		t.Errorf("%d promotions skipped, want 3: %+v", skipped, res.Actions)
	}
	if k := kernels(t, h.store)[k1.Kernel]; k.State == ledger.StatePromoted {
		t.Errorf("promoted without its kernel tag: %+v", k)
	}
	// The registry recovers: the next pass writes everything.
	h.srv.SetIntercept(nil)
	h.pass(Options{})
	if d, ok := h.srv.TagDigest("mirror/driver-toolkit", "4.16.15"); !ok || d == "" {
		t.Errorf("after recovery the mirror's release tag is missing")
	}
}

// TestTagsOfOthersAreNeverOverwritten (rule 2, promote.Tags.mayOverwrite):
// a release tag someone else holds, for a DTK and for a consumer, is left
// alone and reported: in the result, the image's record, the issue.
func TestTagsOfOthersAreNeverOverwritten(t *testing.T) {
	w := newConsumerWorld(t)
	w.builder.sync = true
	theirs := w.world.PushImage("dtkbot/driver-toolkit", "4.16.15", payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("theirs", 512)}})
	theirKmod := w.world.PushImage(kmodRepo, "4.16.15", payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("their kmod", 512)}})
	w.publish("stable-4.16", "4.16.15", k1)
	res := w.pass()
	if got, _ := w.srv.TagDigest("dtkbot/driver-toolkit", "4.16.15"); got != theirs.Digest {
		t.Errorf("someone else's DTK tag was overwritten: %s", got)
	}
	if got, _ := w.srv.TagDigest(kmodRepo, "4.16.15"); got != theirKmod.Digest {
		t.Errorf("someone else's consumer tag was overwritten: %s", got)
	}
	if len(res.Conflicts) != 2 {
		t.Fatalf("conflicts reported: %q", res.Conflicts)
	}
	k := kernels(t, w.store)[k1.Kernel]
	c := consumerBuilds(t, w.store)[k1.Kernel]
	if k.State != ledger.StatePromoted || len(k.Conflicts) != 1 || k.Conflicts[0].Digest != theirs.Digest.String() {
		t.Errorf("the DTK: %s, conflicts %+v", k.State, k.Conflicts)
	}
	if c.State != ledger.StatePromoted || len(c.Conflicts) != 1 || c.Conflicts[0].Digest != theirKmod.Digest.String() {
		t.Errorf("the consumer image: %s, conflicts %+v", c.State, c.Conflicts)
	}
	if body := notify.Body(k, nil, []ledger.Image{c}, false); !strings.Contains(body, "Tags left alone") || !strings.Contains(body, theirKmod.Digest.String()) {
		t.Errorf("the issue does not say so:\n%s", body)
	}
	// The owner removes their tag: the next pass promotes, and the
	// conflict is gone.
	w.srv.DeleteTag("dtkbot/driver-toolkit", "4.16.15")
	w.pass()
	if k := kernels(t, w.store)[k1.Kernel]; len(k.Conflicts) != 0 {
		t.Errorf("conflicts after the tag was freed: %+v", k.Conflicts)
	}
	if got, _ := w.srv.TagDigest("dtkbot/driver-toolkit", "4.16.15"); got.String() != kernels(t, w.store)[k1.Kernel].ImageDigest {
		t.Errorf("the freed tag was not promoted: %s", got)
	}
}

// TestStagingRemovalConfirmsTheKernelTag (rule 3, RemoveStaging): a
// registry whose tag delete takes the manifest (and every tag naming it)
// leaves no consumer without the kernel and release tags.
func TestStagingRemovalConfirmsTheKernelTag(t *testing.T) {
	h := newHarness(t)
	h.srv.SetTagDelete(registrytest.TagDeleteTakesManifest)
	h.publish("stable-4.16", "4.16.15", k1)
	h.pass(Options{})
	k := kernels(t, h.store)[k1.Kernel]
	if k.State != ledger.StatePromoted || !strings.Contains(k.StagingRemoved, "put back") {
		t.Fatalf("the kernel: %s, staging %q", k.State, k.StagingRemoved)
	}
	for _, tag := range []string{k1.Kernel + ".x86_64", "4.16.15"} {
		if d, ok := h.srv.TagDigest("dtkbot/driver-toolkit", tag); !ok || d.String() != k.ImageDigest {
			t.Errorf("%s is gone after the staging tag was removed: %s %v", tag, d, ok)
		}
	}
	if _, ok := h.srv.TagDigest("dtkbot/driver-toolkit", "staging-"+k1.Kernel+".x86_64"); ok {
		t.Error("the staging tag is still there")
	}
}

// TestWithdrawalLeavesAMovedTag (rule 2, promote.Tags.Remove): a withdrawn
// pre-release's tag that someone moved since is not removed.
func TestWithdrawalLeavesAMovedTag(t *testing.T) {
	h := newHarness(t)
	h.rcStreams = []string{"4-dev-preview"}
	h.candidate("4-dev-preview", "4.17.0-ec.1", watcher.PhaseAccepted, kEC)
	h.pass(Options{})
	if _, ok := h.srv.TagDigest("dtkbot/driver-toolkit", "4.17.0-ec.1"); !ok {
		t.Fatal("the pre-release has no tag")
	}
	moved := h.world.PushImage("dtkbot/driver-toolkit", "4.17.0-ec.1", payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("moved", 512)}})
	h.rc.SetPhase("4-dev-preview", "4.17.0-ec.1", watcher.PhaseRejected)
	res := h.pass(Options{})
	if got, _ := h.srv.TagDigest("dtkbot/driver-toolkit", "4.17.0-ec.1"); got != moved.Digest {
		t.Errorf("a moved tag was withdrawn: %s", got)
	}
	found := false
	for _, a := range res.Actions {
		found = found || (a.Type == plan.ActionWithdraw && strings.HasPrefix(a.Result, "kept:"))
	}
	if !found {
		t.Errorf("the withdrawal does not say it kept the tag: %+v", res.Actions)
	}
}

// TestWithdrawalLeavesTheImagesOtherTags (rule 4, promote.Tags.remove):
// against a registry whose tag DELETE takes the manifest and every tag
// naming it (older Harbor, early zot), withdrawing a pre-release's tag
// leaves the tags that share its image where they were: the kernel tag
// and a GA release's tag.
func TestWithdrawalLeavesTheImagesOtherTags(t *testing.T) {
	h := newHarness(t)
	h.rcStreams = []string{"4-stable"}
	h.publish("stable-4.16", "4.16.15", k1)
	h.candidate("4-stable", "4.17.0-rc.1", watcher.PhaseAccepted, k1) // the same kernel, so the same image
	h.pass(Options{})
	k := kernels(t, h.store)[k1.Kernel]
	for _, tag := range []string{k1.Kernel + ".x86_64", "4.16.15", "4.17.0-rc.1"} {
		if d, _ := h.srv.TagDigest("dtkbot/driver-toolkit", tag); d.String() != k.ImageDigest || d == "" {
			t.Fatalf("%s at %q before the withdrawal, want %s", tag, d, k.ImageDigest)
		}
	}
	h.srv.SetTagDelete(registrytest.TagDeleteTakesManifest)
	h.rc.SetPhase("4-stable", "4.17.0-rc.1", watcher.PhaseRejected)
	h.now = h.now.Add(time.Hour)
	res := h.pass(Options{})
	if _, ok := h.srv.TagDigest("dtkbot/driver-toolkit", "4.17.0-rc.1"); ok {
		t.Error("the withdrawn pre-release's tag is still there")
	}
	for _, tag := range []string{k1.Kernel + ".x86_64", "4.16.15"} {
		if d, _ := h.srv.TagDigest("dtkbot/driver-toolkit", tag); d.String() != k.ImageDigest {
			t.Errorf("%s at %q after the withdrawal, want %s", tag, d, k.ImageDigest)
		}
	}
	for _, a := range res.Actions {
		if a.Type == plan.ActionWithdraw && !strings.Contains(a.Result, "put back 4.16.15, "+k1.Kernel+".x86_64") {
			t.Errorf("the withdrawal does not say what it put back: %q", a.Result)
		}
	}
}

// TestConsumersShareTheLifecycle: a consumer's images get mirrors and
// floating tags and are audited like the DTK's, through the same code.
func TestConsumersShareTheLifecycle(t *testing.T) {
	w := newConsumerWorld(t)
	w.builder.sync = true
	mirror := "mirror/acme-nic-kmod"
	r := func() *Reconciler {
		r := w.reconciler()
		r.Consumers[0].Target.Mirrors = []string{w.srv.Host() + "/" + mirror}
		r.Consumers[0].Target.FloatingTags = []string{"{{.Minor}}"}
		r.Audit = AuditPolicy{Interval: time.Hour, Repair: true}
		return r
	}
	w.publish("stable-4.16", "4.16.15", k1)
	if _, err := r().RunOnce(context.Background(), w.now, Options{}); err != nil {
		t.Fatal(err)
	}
	c := consumerBuilds(t, w.store)[k1.Kernel]
	if c.State != ledger.StatePromoted {
		t.Fatalf("the consumer image: %+v", c)
	}
	for _, ref := range []string{kmodRepo + ":" + k1.Kernel + ".x86_64", kmodRepo + ":4.16.15", kmodRepo + ":4.16",
		mirror + ":" + k1.Kernel + ".x86_64", mirror + ":4.16.15", mirror + ":4.16"} {
		repo, tag, _ := strings.Cut(ref, ":")
		if d, ok := w.srv.TagDigest(repo, tag); !ok || d.String() != c.ImageDigest {
			t.Errorf("%s at %s %v, want %s", ref, d, ok, c.ImageDigest)
		}
	}
	// A newer z-stream moves the consumer's floating tag forward.
	w.publish("stable-4.16", "4.16.17", k2)
	w.now = w.now.Add(2 * time.Hour)
	if _, err := r().RunOnce(context.Background(), w.now, Options{}); err != nil {
		t.Fatal(err)
	}
	c2 := consumerBuilds(t, w.store)[k2.Kernel]
	if d, _ := w.srv.TagDigest(kmodRepo, "4.16"); d.String() != c2.ImageDigest || c2.ImageDigest == "" {
		t.Errorf("the consumer's floating tag at %s, want %s", d, c2.ImageDigest)
	}
	// Someone moves a consumer's mirror tag: the audit puts it back.
	other := w.world.PushImage(mirror, "4.16.15", payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("someone", 512)}})
	w.now = w.now.Add(2 * time.Hour)
	res, err := r().RunOnce(context.Background(), w.now, Options{})
	if err != nil || res.Drifted != 1 {
		t.Fatalf("audit: %v, drifted %d", err, res.Drifted)
	}
	if d, _ := w.srv.TagDigest(mirror, "4.16.15"); d == other.Digest || d.String() != c.ImageDigest {
		t.Errorf("the consumer's mirror tag was not put back: %s", d)
	}
}

// TestTwoArchesShareAKernelVersion: amd64 and arm64 payloads of one release
// ship kernels of one version-release: each arch's DTK and consumer image,
// issue, pull request (its own branch) and KMM files stay apart.
func TestTwoArchesShareAKernelVersion(t *testing.T) {
	w := newConsumerWorld(t)
	w.builder.sync = true
	w.arches = []string{"amd64", "arm64"}
	w.target.ReleaseTags = []string{"{{.Release}}-{{.Arch}}"}
	gh := githubtest.New("acme", "driver-ci")
	defer gh.Close()
	gh.AddToken("ghp_arch", "dtkbot-user")
	gh.SetFile("main", "kernels.yaml", "")
	t.Setenv("GITHUB_TOKEN", "ghp_arch")
	client, _ := notify.NewClient(gh.URL(), notify.TokenAuth{})
	for _, arch := range []string{"amd64", "arm64"} {
		p := w.world.Release(payloadtest.ReleaseSpec{Version: "4.16.15", Arches: []string{arch}, Stream: k1})
		w.graph.Publish("stable-4.16", arch, "4.16.15", p.Pullspec)
	}
	pass := func() {
		r := w.reconciler()
		r.Consumers[0].Target.ReleaseTags = []string{"{{.Release}}-{{.Arch}}"}
		n, err := notify.New(client, notify.TokenAuth{}, notify.Options{Repository: "acme/driver-ci", CloseWhenPromoted: true, MutationInterval: time.Millisecond,
			PullRequest: &notify.PullRequestOptions{Path: "kernels.yaml", KMM: &notify.KMMOptions{}}}, w.store, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		r.Notifier = n
		if _, err := r.RunOnce(context.Background(), w.now, Options{}); err != nil {
			t.Fatal(err)
		}
	}
	pass()
	pass() // the consumers' images join the issues and pull requests
	dtks := map[string]ledger.Image{}
	exp, _ := w.store.Export()
	for _, k := range exp.Kernels {
		dtks[k.Arch] = k
	}
	consumers := map[string]ledger.Image{}
	for _, c := range exp.Consumers {
		consumers[c.Arch] = c
	}
	full := map[string]string{"amd64": k1.Kernel + ".x86_64", "arm64": k1.Kernel + ".aarch64"}
	for arch, kf := range full {
		k, c := dtks[arch], consumers[arch]
		if k.State != ledger.StatePromoted || k.KernelFull != kf || c.State != ledger.StatePromoted || c.KernelFull != kf {
			t.Fatalf("%s: DTK %s %s, consumer %s %s", arch, k.State, k.KernelFull, c.State, c.KernelFull)
		}
		for repo, want := range map[string]string{"dtkbot/driver-toolkit": k.ImageDigest, kmodRepo: c.ImageDigest} {
			for _, tag := range []string{kf, "4.16.15-" + arch} {
				if d, _ := w.srv.TagDigest(repo, tag); d.String() != want {
					t.Errorf("%s:%s at %s, want %s (%s)", repo, tag, d, want, arch)
				}
			}
		}
	}
	if dtks["amd64"].ImageDigest == dtks["arm64"].ImageDigest {
		t.Error("one DTK image for two arches")
	}
	issues, pulls := gh.Issues(), gh.Pulls()
	if len(issues) != 2 || len(pulls) != 2 {
		t.Fatalf("%d issues, %d pull requests for two arches", len(issues), len(pulls))
	}
	for _, arch := range []string{"amd64", "arm64"} {
		k := dtks[arch]
		branch := notify.Branch(k)
		var pr *githubtest.Pull
		for i := range pulls {
			if pulls[i].Head == branch {
				pr = &pulls[i]
			}
		}
		if pr == nil || !strings.Contains(pr.Title, arch) {
			t.Fatalf("%s: no pull request from %s: %+v", arch, branch, pulls)
		}
		entry, _ := gh.File(branch, "kernels.yaml")
		other := dtks[map[string]string{"amd64": "arm64", "arm64": "amd64"}[arch]]
		if !strings.Contains(entry, k.KernelFull) || strings.Contains(entry, other.KernelFull) || !strings.Contains(entry, digest.Digest(k.ImageDigest).Encoded()) {
			t.Errorf("%s's branch %s carries:\n%s", arch, branch, entry)
		}
		mappings, ok := gh.File(branch, "kmm/rhel-9-"+arch+"/"+full[arch]+"/kernel-mappings.yaml")
		if !ok || !strings.Contains(mappings, consumers[arch].Image) {
			t.Errorf("%s's KMM mappings: %v\n%s", arch, ok, mappings)
		}
	}
}

// TestPublicTextHidesBuildOutputAndURLPaths: a failed build's words (a
// webhook's reply) stay in the log and the state file, its URL's path and
// query (where a webhook's token is) nowhere; what people see (the image's
// reason, the pass record /status and the page show) says what failed and
// where to look.
func TestPublicTextHidesBuildOutputAndURLPaths(t *testing.T) {
	h := newHarness(t)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "quota exceeded for project s3cr3t-project", http.StatusForbidden)
	}))
	defer hook.Close()
	h.publish("stable-4.16", "4.16.15", k1)
	r := h.reconciler()
	r.Builder = &build.WebhookBuilder{URL: hook.URL + "/hooks/tok-123abc?sig=xyz", Secret: []byte("s"), Attempts: 1}
	if _, err := r.RunOnce(context.Background(), h.now, Options{}); err == nil {
		t.Fatal("a refused build request does not fail the pass")
	}
	k := kernels(t, h.store)[k1.Kernel]
	last, err := h.store.LastPass()
	if err != nil || last == nil {
		t.Fatal(err)
	}
	public := k.Reason + "\n" + strings.Join(last.Errors, "\n")
	for _, secret := range []string{"tok-123abc", "sig=xyz", "s3cr3t-project"} {
		if strings.Contains(public, secret) {
			t.Errorf("%q is in public text:\n%s", secret, public)
		}
	}
	if !strings.Contains(k.Reason, "HTTP 403") || !strings.Contains(k.Reason, hook.URL) {
		t.Errorf("the reason does not say what failed and where: %q", k.Reason)
	}
	if !strings.Contains(k.Detail, "s3cr3t-project") {
		t.Errorf("the detail lost the reply: %q", k.Detail)
	}
	exp, err := h.store.Export()
	if err != nil {
		t.Fatal(err)
	}
	kept, _ := json.Marshal(exp)
	for _, token := range []string{"tok-123abc", "sig=xyz"} {
		if strings.Contains(string(kept), token) {
			i := strings.Index(string(kept), token)
			t.Errorf("the state file keeps the webhook URL's %q: ...%s...", token, kept[max(0, i-100):min(len(kept), i+20)])
		}
	}
	if strings.Contains(notify.Body(k, nil, nil, false), "s3cr3t-project") || !strings.Contains(notify.Body(k, nil, nil, true), "s3cr3t-project") {
		t.Error("the issue shows the build's output only with include_build_log")
	}
}
