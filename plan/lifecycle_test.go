package plan

import (
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/ledger"
)

// The decisions Plan makes from what a round saw, each in a table: the
// image as recorded, what was seen, and what the plan makes of it (its
// record, and the actions it plans).

const (
	kA       = "5.14.0-427.37.1.el9_4"
	stagingA = "quay.io/acme/dtk:staging-" + kA + ".x86_64"
	kernelA  = "quay.io/acme/dtk:" + kA + ".x86_64"
)

var (
	d1 = "sha256:" + strings.Repeat("1", 64)
	d2 = "sha256:" + strings.Repeat("2", 64)
	d3 = "sha256:" + strings.Repeat("3", 64)
)

var retries = Retries{Timeout: time.Hour, MaxAttempts: 3, Backoff: 10 * time.Minute}

func dtkKind(verified bool) map[string]Kind {
	return map[string]Kind{ledger.KindDTK: {Target: target(), What: "DTK image", Verified: verified, Retries: retries}}
}

// requested is the DTK of kA, its attempt n requested at, acknowledged
// or not.
func requested(n int, at time.Time, acknowledged bool) ledger.Image {
	m := kernel(kA, ledger.StateNew, "4.16.15")
	m.Attempts = n - 1
	if err := m.Request(kernelA, stagingA, at); err != nil {
		panic(err)
	}
	if acknowledged {
		m.Asked = m.Attempts
	}
	return m
}

func built(staging, d string) ledger.Image {
	m := requested(1, now.Add(-time.Minute), true)
	if err := m.Found(kernelA, staging, d, now.Add(-time.Minute)); err != nil {
		panic(err)
	}
	return m
}

// lookAt plans one round in which seen was seen of image m.
func lookAt(m ledger.Image, seen Seen, kinds map[string]Kind) Changes {
	return Plan(Input{Now: now, Releases: []ledger.Release{release("4.16.15", ships("rhel-9", kA))}, Images: []ledger.Image{m},
		Kinds: kinds, Seen: map[string]Seen{m.Key(): seen}})
}

// after is m's record after the plan's changes (m itself when unchanged).
func after(c Changes, m ledger.Image) ledger.Image {
	for _, ch := range c.Images {
		if ch.Image.Key() == m.Key() {
			return ch.Image
		}
	}
	return m
}

func staging(d string) Ref { return Ref{Looked: true, Digest: d} }

func TestWhatARoundSees(t *testing.T) {
	rejectedBefore := func() ledger.Image {
		m := built(stagingA, d1)
		if _, _, err := m.Reject("rejected: wrong kernel", ledger.Retry{At: now.Add(-30 * time.Second)}, now.Add(-time.Minute)); err != nil {
			panic(err)
		}
		m.Untagged(now.Add(-time.Minute))
		return m
	}
	tests := []struct {
		name     string
		m        ledger.Image
		seen     Seen
		verified bool
		// state, attempts and next are the record after; actions what is
		// planned; check looks closer.
		state   string
		actions string
		check   func(t *testing.T, m ledger.Image, c Changes)
	}{
		{
			name: "nothing at either reference: a new image is built",
			m:    kernel(kA, ledger.StateNew, "4.16.15"), seen: Seen{KernelTag: staging(""), Staging: staging("")},
			state: ledger.StateNew, actions: "build",
		},
		{
			name: "found at its staging reference: built, then verified",
			m:    requested(1, now.Add(-time.Minute), true), seen: Seen{Staging: staging(d1), Instance: &Instance{Digest: d1}},
			verified: true, state: ledger.StateBuilt, actions: "verify",
			check: func(t *testing.T, m ledger.Image, c Changes) {
				a := c.Actions[0]
				if m.ImageDigest != d1 || m.Staging != stagingA || a.Image != "quay.io/acme/dtk@"+d1 || a.Verification.Digest != d1 ||
					!a.Verification.Since.Equal(now) || a.Verification.Interrupted != 0 || a.Tag != "" {
					t.Errorf("%+v\n%+v", m, a)
				}
			},
		},
		{
			name: "found built where nothing verifies its kind: promoted in the same plan",
			m:    requested(1, now.Add(-time.Minute), true), seen: Seen{Staging: staging(d1), Instance: &Instance{Digest: d1}},
			state: ledger.StateBuilt, actions: "promote " + kernelA + "; promote quay.io/acme/dtk:4.16.15",
		},
		{
			name: "a manifest list is pinned to its instance for the arch, which is verified",
			m:    requested(1, now.Add(-time.Minute), true), seen: Seen{Staging: staging(d1), Instance: &Instance{Digest: d2, List: true}},
			verified: true, state: ledger.StateBuilt, actions: "verify",
			check: func(t *testing.T, m ledger.Image, c Changes) {
				if m.ListDigest != d1 || m.ImageDigest != d2 || c.Actions[0].Image != "quay.io/acme/dtk@"+d2 {
					t.Errorf("%+v", m)
				}
			},
		},
		{
			name: "a list without the arch is rejected, unread",
			m:    requested(1, now.Add(-time.Minute), true), seen: Seen{Staging: staging(d1), Instance: &Instance{Unreadable: "no amd64 image"}},
			verified: true, state: ledger.StateBuilt, actions: "verify",
			check: func(t *testing.T, m ledger.Image, c Changes) {
				if v := c.Actions[0].Verdict; v != "verifying quay.io/acme/dtk@"+d1+": no amd64 image" || c.Actions[0].IfFailed != (ledger.Retry{At: now.Add(10 * time.Minute)}) {
					t.Errorf("%+v", c.Actions[0])
				}
			},
		},
		{
			name: "found at its kernel tag: verified there before it is adopted",
			m:    kernel(kA, ledger.StateNew, "4.16.15"), seen: Seen{KernelTag: staging(d1), Instance: &Instance{Digest: d1}},
			verified: true, state: ledger.StateBuilt, actions: "verify " + kernelA,
			check: func(t *testing.T, m ledger.Image, c Changes) {
				if m.Staging != "" || m.Image != kernelA || c.Actions[0].Tag != kernelA || c.Actions[0].Kind != ledger.TagKernel {
					t.Errorf("%+v\n%+v", m, c.Actions[0])
				}
			},
		},
		{
			name: "a manifest list at its kernel tag is rejected: dtkbot cannot vouch for its other platforms",
			m:    kernel(kA, ledger.StateNew, "4.16.15"), seen: Seen{KernelTag: staging(d1), Instance: &Instance{Digest: d2, List: true}},
			verified: true, state: ledger.StateBuilt, actions: "verify",
			check: func(t *testing.T, m ledger.Image, c Changes) {
				if !strings.Contains(c.Actions[0].Verdict, "is a manifest list") {
					t.Errorf("%+v", c.Actions[0])
				}
			},
		},
		{
			name: "found at its kernel tag while nothing verifies its kind: failed, and the pass fails saying why",
			m:    kernel(kA, ledger.StateNew, "4.16.15"), seen: Seen{KernelTag: staging(d1)},
			state: ledger.StateFailed, actions: "hold",
			check: func(t *testing.T, m ledger.Image, c Changes) {
				if !strings.Contains(c.Images[0].Fails, "which dtkbot did not put there, and DTK images are not verified") || m.Image != kernelA {
					t.Errorf("%+v", c.Images[0])
				}
			},
		},
		{
			name: "an image rejected before, found again, is not taken for the image",
			m: func() ledger.Image {
				m := rejectedBefore()
				m.NextAttemptAt = now.Add(time.Hour)
				return m
			}(),
			seen: Seen{KernelTag: staging(""), Staging: staging(d1)}, verified: true,
			state: ledger.StateNew, actions: "",
		},
		{
			name: "a later build that pushed the rejected image again: that attempt is rejected too",
			m: func() ledger.Image {
				m := rejectedBefore()
				if err := m.Request(kernelA, stagingA, now.Add(-10*time.Second)); err != nil {
					panic(err)
				}
				return m
			}(),
			seen: Seen{Staging: staging(d1)}, verified: true, state: ledger.StateBuilt, actions: "verify",
			check: func(t *testing.T, m ledger.Image, c Changes) {
				if !strings.Contains(c.Actions[0].Verdict, "the build pushed "+d1+" again, which failed verification before") {
					t.Errorf("%+v", c.Actions[0])
				}
			},
		},
		{
			name: "a build not appeared within the timeout: retried after the backoff",
			m:    requested(1, now.Add(-2*time.Hour), true), seen: Seen{Staging: staging("")},
			state: ledger.StateNew, actions: "",
			check: func(t *testing.T, m ledger.Image, c Changes) {
				if !m.NextAttemptAt.Equal(now.Add(10*time.Minute)) || !strings.Contains(m.Reason, "did not appear within 1h0m0s") || strings.Contains(m.Reason, "attempts") {
					t.Errorf("%+v", m)
				}
			},
		},
		{
			name: "the second attempt's backoff is twice the first's",
			m:    requested(2, now.Add(-2*time.Hour), true), seen: Seen{Staging: staging("")},
			state: ledger.StateNew,
			check: func(t *testing.T, m ledger.Image, c Changes) {
				if !m.NextAttemptAt.Equal(now.Add(20 * time.Minute)) {
					t.Errorf("next attempt at %s", m.NextAttemptAt)
				}
			},
		},
		{
			name: "the last attempt not appeared: the image fails, saying after how many",
			m:    requested(3, now.Add(-2*time.Hour), true), seen: Seen{Staging: staging("")},
			state: ledger.StateFailed, actions: "hold",
			check: func(t *testing.T, m ledger.Image, c Changes) {
				if !strings.HasSuffix(m.Reason, "(3 attempts)") {
					t.Errorf("%q", m.Reason)
				}
			},
		},
		{
			name: "a build in its time: waited for",
			m:    requested(1, now.Add(-time.Minute), true), seen: Seen{Staging: staging("")},
			state: ledger.StateBuildRequested,
		},
		{
			name: "the backend says the build ended without pushing: the attempt is spent now",
			m:    requested(1, now.Add(-time.Minute), true), seen: Seen{Staging: staging(""), Report: &Report{Over: true, Reason: "the Job failed", Detail: "exit 1"}},
			state: ledger.StateNew,
			check: func(t *testing.T, m ledger.Image, c Changes) {
				if m.Reason != "the Job failed" || m.Detail != "exit 1" {
					t.Errorf("%+v", m)
				}
			},
		},
		{
			name: "an attempt recorded and never acknowledged, of which the backend has no trace: asked again, not spent",
			m:    requested(2, now.Add(-2*time.Hour), false), seen: Seen{Staging: staging(""), Report: &Report{Over: true, Gone: true}},
			state: ledger.StateBuildRequested, actions: "build",
			check: func(t *testing.T, m ledger.Image, c Changes) {
				a := c.Actions[0]
				if !a.Again || a.Image != stagingA || a.Reason != "attempt 2 was recorded and never asked for" || a.IfFailed != (ledger.Retry{At: now.Add(20 * time.Minute)}) {
					t.Errorf("%+v", a)
				}
			},
		},
		{
			name: "an acknowledged attempt the backend has no trace of any more: spent, not asked again",
			m:    requested(1, now.Add(-time.Minute), true), seen: Seen{Staging: staging(""), Report: &Report{Over: true, Gone: true, Reason: "the Job is gone"}},
			state: ledger.StateNew,
			check: func(t *testing.T, m ledger.Image, c Changes) {
				if m.Reason != "the Job is gone" {
					t.Errorf("%+v", m)
				}
			},
		},
		{
			name: "an attempt recorded and never acknowledged that the backend has: acknowledged",
			m:    requested(1, now.Add(-time.Minute), false), seen: Seen{Staging: staging(""), Report: &Report{}},
			state: ledger.StateBuildRequested,
			check: func(t *testing.T, m ledger.Image, c Changes) {
				if m.Asked != 1 {
					t.Errorf("%+v", m)
				}
			},
		},
		{
			name: "a backend that cannot say: nothing is decided",
			m:    requested(1, now.Add(-2*time.Hour), false), seen: Seen{Staging: staging(""), Report: &Report{Unanswered: true}},
			state: ledger.StateBuildRequested,
		},
		{
			name: "a registry that cannot say: nothing is decided",
			m:    requested(1, now.Add(-2*time.Hour), true), seen: Seen{},
			state: ledger.StateBuildRequested,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := lookAt(tt.m, tt.seen, dtkKind(tt.verified))
			m := after(c, tt.m)
			if m.State != tt.state || summary(c.Actions) != tt.actions {
				t.Fatalf("state %s, actions %q; want %s, %q\n%+v\n%+v", m.State, summary(c.Actions), tt.state, tt.actions, m, c)
			}
			if tt.check != nil {
				tt.check(t, m, c)
			}
		})
	}
}

// TestAPoisonImageIsRejectedUnread: a verification found begun is one the
// process died in; the next one counts it, and at the limit the image is
// rejected without being read again.
func TestAPoisonImageIsRejectedUnread(t *testing.T) {
	begun := func(interrupted int) ledger.Image {
		m := built(stagingA, d1)
		m.ListDigest = d3 // pinned: verified whether or not the round looked at it
		if err := m.BeginVerifying(ledger.Verification{Digest: d1, Since: now.Add(-time.Hour), Interrupted: interrupted}, now.Add(-time.Hour)); err != nil {
			panic(err)
		}
		return m
	}
	for _, tt := range []struct {
		name        string
		m           ledger.Image
		limit       int
		interrupted int
		verdict     string
	}{
		{"never begun", built(stagingA, d1), 0, 0, ""},
		{"died once: verified again, counted", begun(0), 0, 1, ""},
		{"died twice: rejected unread", begun(1), 0, 2, "rejected: verifying it stopped the process 2 times (out of memory, or killed, while reading it; first at 2026-11-25T11:00:00Z): it is not read again"},
		{"died twice, three allowed", begun(1), 3, 2, ""},
		{"a record of another image does not count", func() ledger.Image { m := begun(1); m.Verifying.Digest = d2; return m }(), 0, 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{Now: now, Images: []ledger.Image{tt.m}, Kinds: dtkKind(true), VerifyInterruptions: tt.limit,
				Seen: map[string]Seen{tt.m.Key(): {Instance: &Instance{Digest: d1}}}}
			c := Plan(in)
			if len(c.Actions) != 1 || c.Actions[0].Type != ActionVerify {
				t.Fatalf("%+v", c.Actions)
			}
			a := c.Actions[0]
			if a.Verdict != tt.verdict || (tt.verdict == "" && a.Verification.Interrupted != tt.interrupted) {
				t.Errorf("verdict %q, interrupted %d", a.Verdict, a.Verification.Interrupted)
			}
			if tt.interrupted > 0 && tt.verdict == "" && !a.Verification.Since.Equal(now.Add(-time.Hour)) {
				t.Errorf("the first interrupted verification's time is lost: %+v", a.Verification)
			}
		})
	}
}

func TestRetriesBackOffThenGiveUp(t *testing.T) {
	r := Retries{MaxAttempts: 20, Backoff: time.Hour}
	for attempts, want := range map[int]time.Duration{1: time.Hour, 2: 2 * time.Hour, 3: 4 * time.Hour, 6: 32 * time.Hour, 19: 32 * time.Hour} {
		if got := r.after(attempts, now); got.Never || !got.At.Equal(now.Add(want)) {
			t.Errorf("after attempt %d: %+v, want a retry in %s", attempts, got, want)
		}
	}
	if got := r.after(20, now); !got.Never {
		t.Errorf("after the last attempt: %+v", got)
	}
	// A build's failure is its attempt's: the first build fails into a
	// retry after the backoff, the last into none.
	in := Input{Now: now, Images: []ledger.Image{kernel(kA, ledger.StateNew, "4.16.15")}, Kinds: dtkKind(true)}
	if a := Plan(in).Actions[0]; a.Type != ActionBuild || a.IfFailed != (ledger.Retry{At: now.Add(10 * time.Minute)}) || a.KernelTag != kernelA {
		t.Errorf("the first build: %+v", a)
	}
	in.Images[0].Attempts = 2
	if a := Plan(in).Actions[0]; a.IfFailed != (ledger.Retry{Never: true}) || a.Reason != "retry 3: " {
		t.Errorf("the last build: %+v", a)
	}
}

// TestSettling: an image whose kernel tag holds it is promoted, unless a
// promotion of it failed in this pass, and its staging tag removed.
func TestSettling(t *testing.T) {
	published := func(state string) ledger.Image {
		m := kernel(kA, state, "4.16.15")
		m.Published = true
		return m
	}
	for _, tt := range []struct {
		name     string
		m        ledger.Image
		verified bool
		failed   bool
		state    string
		unstage  bool
	}{
		{"verified, at its kernel tag: promoted, its staging tag removed", published(ledger.StateVerified), true, false, ledger.StatePromoted, true},
		{"a promotion failed in this pass: not before the next", published(ledger.StateVerified), true, true, ledger.StateVerified, false},
		{"built, its kind verified: not promoted", published(ledger.StateBuilt), true, false, ledger.StateBuilt, false},
		{"built, its kind not verified: promoted", published(ledger.StateBuilt), false, false, ledger.StatePromoted, true},
		{"verified, not yet at its kernel tag", kernel(kA, ledger.StateVerified, "4.16.15"), true, false, ledger.StateVerified, false},
		{"promoted, its staging tag gone already", func() ledger.Image { m := published(ledger.StatePromoted); m.StagingRemoved = "removed"; return m }(),
			true, false, ledger.StatePromoted, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{Now: now, Images: []ledger.Image{tt.m}, Kinds: dtkKind(tt.verified),
				Done: Done{PromoteFailed: map[string]bool{tt.m.Key(): tt.failed}}}
			c := Plan(in)
			m := after(c, tt.m)
			unstage := false
			for _, a := range c.Actions {
				unstage = unstage || (a.Type == ActionUnstage && a.Tag == tt.m.Staging)
			}
			if m.State != tt.state || unstage != tt.unstage {
				t.Errorf("state %s, staging removed %v; want %s, %v", m.State, unstage, tt.state, tt.unstage)
			}
			if tt.state == ledger.StatePromoted && tt.m.State != ledger.StatePromoted && !m.PromotedAt.Equal(now) {
				t.Errorf("promoted at %s", m.PromotedAt)
			}
		})
	}
}

// tagsOf are the DTK m's kernel tag and release tags, promoted.
func tagsOf(m ledger.Image, releases ...string) map[string]ledger.Promotion {
	out := map[string]ledger.Promotion{m.Image: {Digest: m.ImageDigest}}
	for _, v := range releases {
		out["quay.io/acme/dtk:"+v] = ledger.Promotion{Digest: m.ImageDigest}
	}
	return out
}

// TestConsumerImagesFollowTheirDTK: a consumer's image is added for each
// promoted DTK (never before), not built in the plan that adds it (the
// registry is looked at first), and follows its DTK's releases and image.
func TestConsumerImagesFollowTheirDTK(t *testing.T) {
	kinds := dtkKind(true)
	kinds["acme-nic"] = Kind{Target: Target{Repository: "quay.io/acme/nic", KernelTag: "{{.KernelFull}}"}, Verified: true, Retries: retries}
	dtk := kernel(kA, ledger.StatePromoted, "4.16.15")
	in := Input{Now: now, Images: []ledger.Image{kernel(kA, ledger.StateVerified, "4.16.15")}, Kinds: kinds, Promoted: tagsOf(dtk, "4.16.15", "4.16.16")}
	if c := Plan(in); len(c.Images) != 0 {
		t.Fatalf("a consumer's image before its DTK is promoted: %+v", c.Images)
	}
	in.Images = []ledger.Image{dtk}
	c := Plan(in)
	if len(c.Images) != 1 || c.Images[0].Image.Consumer != "acme-nic" || c.Images[0].Image.State != ledger.StateNew ||
		c.Images[0].Image.DTKImage != dtk.PinnedImage() || summary(c.Actions) != "" {
		t.Fatalf("%+v\n%s", c.Images, summary(c.Actions))
	}
	consumer := c.Images[0].Image
	in.Images = []ledger.Image{dtk, consumer}
	if c := Plan(in); summary(c.Actions) != "build" || c.Actions[0].Consumer != "acme-nic" || c.Actions[0].Reason != "DTK promoted: "+dtk.PinnedImage() {
		t.Fatalf("the next round: %+v", c.Actions)
	}
	dtk.Releases = []string{"4.16.15", "4.16.16"}
	in.Images = []ledger.Image{dtk, consumer}
	if c := Plan(in); len(c.Images) != 1 || strings.Join(c.Images[0].Image.Releases, ",") != "4.16.15,4.16.16" {
		t.Fatalf("a new release of the kernel: %+v", c.Images)
	}
}

// TestKernelFiles: a consumer that checks its modules against the kernel's
// files waits until it is known whether its DTK carries them, and is held
// FROM one that does not; what was read is recorded on the DTK, once.
func TestKernelFiles(t *testing.T) {
	kinds := dtkKind(true)
	kinds["acme-nic"] = Kind{Target: Target{Repository: "quay.io/acme/nic", KernelTag: "{{.KernelFull}}"}, Verified: true, NeedsKernelFiles: true, Retries: retries}
	dtk := kernel(kA, ledger.StatePromoted, "4.16.15")
	consumer := dtk.NewConsumerImage("acme-nic", ledger.VariantKernel{}, now)
	if due := KernelFilesDue([]ledger.Image{dtk}, kinds); len(due) != 1 {
		t.Fatalf("due: %+v", due)
	}
	in := Input{Now: now, Images: []ledger.Image{dtk, consumer}, Kinds: kinds, Promoted: tagsOf(dtk, "4.16.15")}
	if c := Plan(in); summary(c.Actions) != "" {
		t.Fatalf("built before the DTK's kernel files are known: %s", summary(c.Actions))
	}
	in.KernelFiles = map[string]ledger.KernelFilesCheck{dtk.Key(): {Missing: []string{"Module.symvers"}}}
	c := Plan(in)
	if m := after(c, dtk); m.KernelFiles == nil || m.KernelFiles.Digest != dtk.ImageDigest || summary(c.Actions) != "hold" ||
		!strings.Contains(c.Actions[0].Reason, "has no Module.symvers") || c.Images[0].Warns == "" {
		t.Fatalf("%+v\n%+v", c.Images, c.Actions)
	}
	if due := KernelFilesDue([]ledger.Image{after(c, dtk)}, kinds); len(due) != 0 {
		t.Errorf("read again: %+v", due)
	}
	in.KernelFiles = map[string]ledger.KernelFilesCheck{dtk.Key(): {}}
	if c := Plan(in); summary(c.Actions) != "build" {
		t.Errorf("a DTK with the kernel's files: %s", summary(c.Actions))
	}
}

// TestNothingTwiceInAPass: what the pass did already is not planned again.
func TestNothingTwiceInAPass(t *testing.T) {
	in := Input{Now: now, Images: []ledger.Image{kernel(kA, ledger.StateNew, "4.16.15"), kernel("5.14.0-427.40.1.el9_4", ledger.StateVerified, "4.16.16")},
		Kinds: dtkKind(true), Done: Done{Actions: map[string]bool{}}}
	first := Plan(in).Actions
	if summary(first) != "build; promote quay.io/acme/dtk:5.14.0-427.40.1.el9_4.x86_64; promote quay.io/acme/dtk:4.16.16" {
		t.Fatalf("%s", summary(first))
	}
	for _, a := range first[:2] {
		in.Done.Actions[a.Key()] = true
	}
	if got := summary(Plan(in).Actions); got != "promote quay.io/acme/dtk:4.16.16" {
		t.Errorf("after the build and the kernel tag: %s", got)
	}
}

// TestAdoptedBeforeAdoptionExisted: an image a state file recorded found
// at its kernel tag, from before Image.Adopted existed, is adopted, and the
// promotion recorded for that tag forgotten.
func TestAdoptedBeforeAdoptionExisted(t *testing.T) {
	m := kernel(kA, ledger.StatePromoted, "4.16.15")
	m.Staging = ""
	in := Input{Now: now, Images: []ledger.Image{m}, Kinds: dtkKind(true),
		Promoted: map[string]ledger.Promotion{kernelA: {Ref: kernelA, Digest: m.ImageDigest, Kind: ledger.TagKernel}}}
	c := Plan(in)
	var forget []Action
	for _, a := range c.Actions {
		if a.Type == ActionForget {
			forget = append(forget, a)
		}
	}
	if !after(c, m).Adopted || len(forget) != 1 || forget[0].Tag != kernelA || forget[0].Reported() {
		t.Errorf("%+v\n%+v", c.Images, c.Actions)
	}
}

func TestNewRounds(t *testing.T) {
	failed := kernel(kA, ledger.StateFailed, "4.16.15")
	failed.Attempts, failed.Reason = 3, "timeout"
	c := NewRounds([]ledger.Image{failed, kernel("5.14.0-427.40.1.el9_4", ledger.StatePromoted, "4.16.16")}, now)
	if len(c.Images) != 1 || c.Images[0].Image.State != ledger.StateNew || c.Images[0].Image.Round != 1 || c.Images[0].Image.Attempts != 0 {
		t.Errorf("%+v", c.Images)
	}
}

// TestReportDue: a backend that can say is asked how a build goes while
// the attempt is not acknowledged, else until the timeout decides.
func TestReportDue(t *testing.T) {
	k := dtkKind(true)[ledger.KindDTK]
	for _, tt := range []struct {
		name string
		m    ledger.Image
		due  bool
	}{
		{"acknowledged, in its time", requested(1, now.Add(-time.Minute), true), true},
		{"acknowledged, timed out", requested(1, now.Add(-2*time.Hour), true), false},
		{"never acknowledged, timed out", requested(1, now.Add(-2*time.Hour), false), true},
		{"not requested", kernel(kA, ledger.StateNew, "4.16.15"), false},
	} {
		if got := ReportDue(tt.m, k, now); got != tt.due {
			t.Errorf("%s: %v", tt.name, got)
		}
	}
}
