package notify

import (
	"context"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/ledger"
)

// TestBodiesSayTheABIVerdict: the kernel's issue and pull request say,
// per consumer, whether its modules of an earlier kernel would load, or
// which symbols changed; without verdicts, nothing.
func TestBodiesSayTheABIVerdict(t *testing.T) {
	k := ledger.Image{Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-427.40.1.el9_4", KernelFull: "5.14.0-427.40.1.el9_4.x86_64", State: ledger.StatePromoted,
		Releases: []string{"4.16.17"}}
	if strings.Contains(Body(k, nil, nil, false)+prBody(k, "kernels.yaml", nil), "### ABI") {
		t.Error("an ABI section without verdicts")
	}
	k.ABI = []ledger.ABIVerdict{
		{Consumer: "acme-nic", From: "5.14.0-427.37.1.el9_4.x86_64", Changed: []string{"mutex_lock", "mutex_unlock"}},
		{Consumer: "beta", From: "5.14.0-427.37.1.el9_4.x86_64", Loads: true},
	}
	for name, body := range map[string]string{"issue": Body(k, nil, nil, false), "pull request": prBody(k, "kernels.yaml", nil)} {
		for _, want := range []string{"### ABI",
			"- acme-nic: the modules for 5.14.0-427.37.1.el9_4.x86_64 would not load: 2 symbol versions changed (mutex_lock, mutex_unlock)\n",
			"- beta: the modules for 5.14.0-427.37.1.el9_4.x86_64 would load (every symbol version matches)\n"} {
			if !strings.Contains(body, want) {
				t.Errorf("the %s body lacks %q:\n%s", name, want, body)
			}
		}
	}
	if k.NoticeHash() == (ledger.Image{Stream: k.Stream, Arch: k.Arch, Kernel: k.Kernel, KernelFull: k.KernelFull, State: k.State, Releases: k.Releases}).NoticeHash() {
		t.Error("a verdict does not change the notice's hash: the issue would not be updated")
	}
}

// TestIssueSaysTheABIWasNotChecked: a consumer's image accepted with
// verify.abi: false on a DTK without the kernel's files says so.
func TestIssueSaysTheABIWasNotChecked(t *testing.T) {
	k := ledger.Image{Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-427.40.1.el9_4", KernelFull: "5.14.0-427.40.1.el9_4.x86_64", State: ledger.StatePromoted}
	c := ledger.Image{Consumer: "acme-nic", Stream: k.Stream, Arch: k.Arch, Kernel: k.Kernel, State: ledger.StatePromoted,
		Checked: "vermagic, dependencies; ABI not checked: the promoted DTK x@sha256:1 has no etc/driver-toolkit/k/Module.symvers"}
	if body := Body(k, nil, []ledger.Image{c}, false); !strings.Contains(body, "| acme-nic | default | **promoted** | - | ABI not checked: the promoted DTK") {
		t.Errorf("the issue does not say the ABI was not checked:\n%s", body)
	}
}

// TestPullRequestBodyGetsALaterVerdict: a pull request opened before the
// kernel's ABI verdict (at the DTK's verification) is updated with it
// while open, even when its files stay as they were; the issue too.
func TestPullRequestBodyGetsALaterVerdict(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	opts := Options{PullRequest: &PullRequestOptions{Path: "kernels.yaml", KMM: &KMMOptions{}}}
	k := built(ledger.StateVerified)
	if err := w.notifier(opts).Notify(ctx, k); err != nil {
		t.Fatal(err)
	}
	if p := w.gh.Pulls(); len(p) != 1 || strings.Contains(p[0].Body, "### ABI") {
		t.Fatalf("pull requests %+v", p)
	}
	k = built(ledger.StatePromoted)
	k.Published = true
	if err := w.notifier(opts).Notify(ctx, k); err != nil {
		t.Fatal(err)
	}
	// The verdict alone changes: the pull request's files do not.
	k.ABI = []ledger.ABIVerdict{{Consumer: "acme-nic", From: "5.14.0-427.22.1.el9_4.x86_64", Changed: []string{"mutex_lock"}}}
	if err := w.notifier(opts).Notify(ctx, k); err != nil {
		t.Fatal(err)
	}
	const want = "- acme-nic: the modules for 5.14.0-427.22.1.el9_4.x86_64 would not load: 1 symbol version changed (mutex_lock)"
	if p := w.gh.Pulls(); len(p) != 1 || !strings.Contains(p[0].Body, want) {
		t.Errorf("the pull request's body lacks the verdict: %+v", p)
	}
	if i := w.gh.Issues(); len(i) != 1 || !strings.Contains(i[0].Body, want) {
		t.Errorf("the issue's body lacks the verdict: %+v", i)
	}
}
