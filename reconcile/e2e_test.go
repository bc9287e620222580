package reconcile

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/internal/citest"
	"github.com/dtkbot/dtkbot/internal/githubtest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/notify"
	"github.com/dtkbot/dtkbot/promote"
	"github.com/dtkbot/dtkbot/verify"
)

func realEffects(h *harness, b builder.Builder) func() *Reconciler {
	return func() *Reconciler {
		r := h.reconciler()
		r.Builder = b
		r.Promoter = promote.NewRemote(r.Registry)
		r.Verifier = &verify.DTK{Registry: r.Registry, Limits: imageread.DefaultLimits()}
		return r
	}
}

func TestEndToEndWithRemoteBuilders(t *testing.T) {
	for _, backend := range []string{"webhook", "github-actions"} {
		t.Run(backend, func(t *testing.T) {
			h := newHarness(t)
			ci := &citest.CI{Secret: []byte("hook-secret"), Token: "ghs_test"}
			ci.SetWorld(h.world)
			ci.Change(func(b *citest.Builds) { b.Wrong = map[string]string{k3.Kernel: "5.14.0-427.99.1.el9_4"} })
			var b builder.Builder
			switch backend {
			case "webhook":
				srv := httptest.NewServer(http.HandlerFunc(ci.Webhook))
				defer srv.Close()
				b = &builder.WebhookBuilder{URL: srv.URL, Secret: ci.Secret}
			default:
				mux := http.NewServeMux()
				mux.HandleFunc("POST /repos/acme/dtk-builds/actions/workflows/build-dtk.yml/dispatches", ci.Dispatch)
				srv := httptest.NewServer(mux)
				defer srv.Close()
				b = &builder.ActionsBuilder{APIURL: srv.URL, Repository: "acme/dtk-builds", Workflow: "build-dtk.yml", Ref: "main",
					Token: func() (string, error) { return "ghs_test", nil }}
			}
			newReconciler := realEffects(h, b)
			pass := func() *Result {
				res, _ := newReconciler().RunOnce(context.Background(), h.now, Options{})
				return res
			}
			h.publish("stable-4.16", "4.16.15", k1)
			h.publish("stable-4.16", "4.16.16", k1)
			h.publish("stable-4.16", "4.16.17", k2)
			h.publish("stable-4.16", "4.16.18", k3) // its builds come out with the wrong kernel
			wrongKernelTag := k3.Kernel + ".x86_64"
			// Passes over two hours (past every backoff), restarting between them.
			for i := 0; i < 6; i++ {
				res := pass()
				if _, ok := h.srv.TagDigest("dtkbot/driver-toolkit", wrongKernelTag); ok {
					t.Fatalf("pass %d: the wrong-kernel build is at the kernel tag %s", i+1, wrongKernelTag)
				}
				if i == 0 && (res.Rejected != 1 || count(res, "verify") != 3) {
					t.Errorf("first pass: %d rejected, %d verifications: %+v", res.Rejected, count(res, "verify"), res.Actions)
				}
				h.now = h.now.Add(25 * time.Minute)
				h.restart()
			}
			builds := ci.Builds()
			staging := func(k payloadtest.Stream) string { return h.target.Repository + ":staging-" + k.Kernel + ".x86_64" }
			for _, k := range []payloadtest.Stream{k1, k2} {
				if n := builds[staging(k)]; n != 1 {
					t.Errorf("%s built %d times", k.Kernel, n)
				}
			}
			// The wrong kernel: built max_attempts times, rejected each time,
			// then failed; never promoted anywhere.
			if n := builds[staging(k3)]; n != h.policy.MaxAttempts {
				t.Errorf("the wrong-kernel build was requested %d times, want %d", n, h.policy.MaxAttempts)
			}
			ks := kernels(t, h.store)
			if k := ks[k3.Kernel]; k.State != ledger.StateFailed || !strings.Contains(k.Reason, "carries 5.14.0-427.99.1.el9_4") ||
				len(k.Rejections) != h.policy.MaxAttempts || k.Published {
				t.Errorf("the wrong-kernel build: %+v", k)
			}
			for _, tag := range []string{"4.16.18", wrongKernelTag} {
				if _, ok := h.srv.TagDigest("dtkbot/driver-toolkit", tag); ok {
					t.Errorf("a wrong-kernel image was promoted to %s", tag)
				}
			}
			for v, k := range map[string]payloadtest.Stream{"4.16.15": k1, "4.16.16": k1, "4.16.17": k2} {
				got, ok := h.srv.TagDigest("dtkbot/driver-toolkit", v)
				want, _ := h.srv.TagDigest("dtkbot/driver-toolkit", k.Kernel+".x86_64")
				if !ok || got != want || ks[k.Kernel].State != ledger.StatePromoted || ks[k.Kernel].ImageDigest != want.String() {
					t.Errorf("%s at %s, want %s (%+v)", v, got, want, ks[k.Kernel])
				}
				// The staging tag is gone once the image is promoted (this
				// registry deletes tags).
				if _, ok := h.srv.TagDigest("dtkbot/driver-toolkit", "staging-"+k.Kernel+".x86_64"); ok || ks[k.Kernel].StagingRemoved != "removed" {
					t.Errorf("the staging tag of %s is still there (%q)", k.Kernel, ks[k.Kernel].StagingRemoved)
				}
			}
			before := h.srv.Stats()
			res := pass()
			cost := h.srv.Stats().Sub(before)
			if count(res, "build") != 0 || count(res, "promote") != 0 || count(res, "hold") != 1 || cost.Requests != 0 {
				t.Errorf("a later pass: %+v, registry %+v", res.Actions, cost)
			}
		})
	}
}

func TestNotificationsOnGitHub(t *testing.T) {
	h := newHarness(t)
	gh := githubtest.New("acme", "driver-ci")
	defer gh.Close()
	gh.AddToken("ghp_e2e", "dtkbot-user")
	gh.SetFile("main", "kernels.yaml", "")
	t.Setenv("GITHUB_TOKEN", "ghp_e2e")
	client, _ := notify.NewClient(gh.URL(), notify.TokenAuth{})
	newReconciler := func() *Reconciler {
		r := realEffects(h, h.builder)()
		n, err := notify.New(client, notify.TokenAuth{}, notify.Options{Repository: "acme/driver-ci", CloseWhenPromoted: true,
			MutationInterval: time.Millisecond, PullRequest: &notify.PullRequestOptions{Path: "kernels.yaml"}}, h.store, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		r.Notifier = n
		return r
	}
	h.builder.sync = false
	h.publish("stable-4.16", "4.16.15", k1)
	h.publish("stable-4.16", "4.16.16", k1)
	h.publish("stable-4.16", "4.16.17", k2)
	// A dry run previews without writing.
	res, _ := newReconciler().RunOnce(context.Background(), h.now, Options{DryRun: true})
	previews := 0
	for _, a := range res.Actions {
		if a.Type == "notify" && strings.HasPrefix(a.Result, "would open issue") {
			previews++
		}
	}
	if previews != 2 || len(gh.Mutations()) != 0 {
		t.Fatalf("dry run: %d previews, %d GitHub writes: %+v", previews, len(gh.Mutations()), res.Actions)
	}
	// GitHub is down for the first pass: the pass still builds, and does not fail.
	gh.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "unicorn", http.StatusBadGateway)
		return true
	})
	res, err := newReconciler().RunOnce(context.Background(), h.now, Options{})
	if err != nil || count(res, "build") != 2 || len(res.Errors) == 0 {
		t.Fatalf("with GitHub down: %v, %+v", err, res)
	}
	gh.SetFault(nil)
	for i := 0; i < 3; i++ {
		if i == 1 {
			h.builder.Finish()
		}
		if _, err := newReconciler().RunOnce(context.Background(), h.now, Options{}); err != nil {
			t.Fatal(err)
		}
		h.restart()
	}
	issues, pulls := gh.Issues(), gh.Pulls()
	if len(issues) != 2 || len(pulls) != 2 {
		t.Fatalf("%d issues and %d pull requests for 2 kernels", len(issues), len(pulls))
	}
	for _, i := range issues {
		if i.State != "closed" || !strings.Contains(i.Body, "**promoted**") {
			t.Errorf("issue %d: %s\n%s", i.Number, i.State, i.Body)
		}
	}
	// A z-stream of a promoted kernel: its (closed) issue lists the release.
	h.publish("stable-4.16", "4.16.18", k2)
	if _, err := newReconciler().RunOnce(context.Background(), h.now, Options{}); err != nil {
		t.Fatal(err)
	}
	updated := false
	for _, i := range gh.Issues() {
		updated = updated || (strings.Contains(i.Title, k2.Kernel) && strings.Contains(i.Body, "- 4.16.18") && i.State == "closed")
	}
	if !updated {
		t.Errorf("the issue of %s does not list 4.16.18: %+v", k2.Kernel, gh.Issues())
	}
	res, _ = newReconciler().RunOnce(context.Background(), h.now, Options{DryRun: true})
	if n := len(gh.Mutations()); count(res, "notify") != 0 {
		t.Errorf("nothing left to notify, yet %d notify actions (%d writes)", count(res, "notify"), n)
	}
}
