package ledger

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	t0   = time.Date(2024, 9, 1, 12, 0, 0, 0, time.UTC)
	dgst = "sha256:" + strings.Repeat("a", 64)
	list = "sha256:" + strings.Repeat("b", 64)
)

// image is an image in state, as far along as that state goes.
func image(state string) Image {
	m := Image{Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-427.37.1.el9_4", KernelFull: "5.14.0-427.37.1.el9_4.x86_64",
		Releases: []string{"4.16.15"}, State: state}
	if state != StateNew {
		m.Image, m.Staging, m.Attempts, m.Asked = "quay.io/acme/dtk:k", "quay.io/acme/dtk:staging-k", 1, 1
	}
	switch state {
	case StateBuilt, StateVerified, StatePromoted:
		m.ImageDigest = dgst
	}
	if state == StatePromoted {
		m.Published = true
	}
	return m
}

var states = []string{StateNew, StateBuildRequested, StateBuilt, StateVerified, StatePromoted, StateFailed}

// TestTransitionsRefuseWhatTheLifecycleHasNot: every transition, from every
// state: those the lifecycle has move the image, every other is refused
// with a *TransitionError and leaves the image as it was.
func TestTransitionsRefuseWhatTheLifecycleHasNot(t *testing.T) {
	never := Retry{Never: true}
	transitions := []struct {
		name string
		do   func(m *Image) error
		// to: the state it leads to from each state it is allowed from.
		to map[string]string
	}{
		{"request", func(m *Image) error { return m.Request("quay.io/acme/dtk:k", "quay.io/acme/dtk:staging-k", t0) },
			map[string]string{StateNew: StateBuildRequested}},
		{"acknowledge", func(m *Image) error { return m.Acknowledge(t0) },
			map[string]string{StateBuildRequested: StateBuildRequested}},
		{"found at staging", func(m *Image) error { return m.Found("quay.io/acme/dtk:k", "quay.io/acme/dtk:staging-k", dgst, t0) },
			map[string]string{StateNew: StateBuilt, StateBuildRequested: StateBuilt}},
		{"found at the kernel tag", func(m *Image) error { return m.Found("quay.io/acme/dtk:k", "", dgst, t0) },
			map[string]string{StateNew: StateBuilt}},
		{"pin", func(m *Image) error { return m.Pin(list, t0) },
			map[string]string{StateBuilt: StateBuilt}},
		{"begin verifying", func(m *Image) error { return m.BeginVerifying(Verification{Digest: dgst, Since: t0}, t0) },
			map[string]string{StateBuilt: StateBuilt}},
		{"inconclusive", func(m *Image) error { return m.Inconclusive(t0) },
			map[string]string{StateBuilt: StateBuilt}},
		{"verified", func(m *Image) error { return m.Verified(Verdict{}, t0) },
			map[string]string{StateBuilt: StateVerified}},
		{"reject", func(m *Image) error {
			_, _, err := m.Reject("wrong kernel", Retry{At: t0.Add(time.Hour)}, t0)
			return err
		},
			map[string]string{StateBuilt: StateNew}},
		{"reject, the last attempt", func(m *Image) error { _, _, err := m.Reject("wrong kernel", never, t0); return err },
			map[string]string{StateBuilt: StateFailed}},
		{"attempt failed", func(m *Image) error { return m.AttemptFailed("503", "", Retry{At: t0.Add(time.Hour)}, t0) },
			map[string]string{StateBuildRequested: StateNew}},
		{"attempt failed, the last", func(m *Image) error { return m.AttemptFailed("503", "", never, t0) },
			map[string]string{StateBuildRequested: StateFailed}},
		{"fail", func(m *Image) error { return m.Fail("quay.io/acme/dtk:k", "someone else's", t0) },
			map[string]string{StateNew: StateFailed}},
		{"promote (verified kind)", func(m *Image) error { m.Published = true; return m.Promote(true, t0) },
			map[string]string{StateVerified: StatePromoted}},
		{"promote (unverified kind)", func(m *Image) error { m.Published = true; return m.Promote(false, t0) },
			map[string]string{StateBuilt: StatePromoted, StateVerified: StatePromoted}},
		{"new round", func(m *Image) error { return m.NewRound(t0) },
			map[string]string{StateFailed: StateNew}},
	}
	for _, tr := range transitions {
		for _, from := range states {
			t.Run(tr.name+" from "+from, func(t *testing.T) {
				m := image(from)
				before := m.State
				err := tr.do(&m)
				want, allowed := tr.to[from]
				var te *TransitionError
				switch {
				case allowed && err != nil:
					t.Fatalf("refused: %v", err)
				case allowed && m.State != want:
					t.Fatalf("state %s, want %s", m.State, want)
				case !allowed && (!errors.As(err, &te) || !errors.Is(err, ErrTransition) || te.From != from || te.Image != m.Key()):
					t.Fatalf("allowed, or not with a TransitionError: %v", err)
				case !allowed && m.State != before:
					t.Fatalf("a refused transition changed the state to %s", m.State)
				}
			})
		}
	}
}

// TestTransitionsKeepTheirConditions: the conditions a transition has
// besides the state it starts from.
func TestTransitionsKeepTheirConditions(t *testing.T) {
	cases := []struct {
		name string
		m    func() Image
		do   func(m *Image) error
	}{
		{"an acknowledged attempt is not asked again", func() Image { return image(StateBuildRequested) },
			func(m *Image) error { return m.AskedAgain(t0) }},
		{"an image is pinned once", func() Image { m := image(StateBuilt); m.ListDigest = list; return m },
			func(m *Image) error { return m.Pin(dgst, t0) }},
		{"one found at its staging reference is not adopted", func() Image { return image(StateBuilt) },
			func(m *Image) error { return m.Adopt(Verdict{}, t0) }},
		{"one found at its kernel tag is adopted, not verified for promotion", func() Image { m := image(StateBuilt); m.Staging = ""; return m },
			func(m *Image) error { return m.Verified(Verdict{}, t0) }},
		{"no promotion before the kernel tag holds the image", func() Image { return image(StateVerified) },
			func(m *Image) error { return m.Promote(true, t0) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.m()
			if err := c.do(&m); !errors.Is(err, ErrTransition) {
				t.Fatalf("allowed: %v (%+v)", err, m)
			}
		})
	}
}

// TestOneAttemptThroughTheLifecycle: what each transition records on the
// way from new to promoted, and back after a rejection.
func TestOneAttemptThroughTheLifecycle(t *testing.T) {
	m := image(StateNew)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(m.Request("quay.io/acme/dtk:k", "quay.io/acme/dtk:staging-k", t0))
	if m.Attempts != 1 || m.Asked != 0 || !m.BuildRequestedAt.Equal(t0) {
		t.Fatalf("requested: %+v", m)
	}
	if err := m.AskedAgain(t0.Add(time.Minute)); err != nil || m.Asked != 1 || !m.BuildRequestedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("asked again: %v %+v", err, m)
	}
	must(m.Found("quay.io/acme/dtk:k", "quay.io/acme/dtk:staging-k", list, t0))
	must(m.Pin(dgst, t0))
	if m.ListDigest != list || m.ImageDigest != dgst || m.FoundDigest() != list || m.PinnedImage() != "quay.io/acme/dtk@"+dgst {
		t.Fatalf("pinned: %+v", m)
	}
	must(m.BeginVerifying(Verification{Digest: dgst, Since: t0}, t0))
	r, found, err := m.Reject("wrong kernel", Retry{At: t0.Add(time.Hour)}, t0)
	must(err)
	if found != list || r.Digest != dgst || r.List != list || m.State != StateNew || !m.NextAttemptAt.Equal(t0.Add(time.Hour)) ||
		m.ImageDigest != "" || m.Verifying != nil || !strings.Contains(m.Reason, "attempt 1 failed verification, retrying: wrong kernel") {
		t.Fatalf("rejected: %+v %+v", r, m)
	}
	if _, ok := m.Rejected(list); !ok {
		t.Fatal("the rejected list is not known as rejected")
	}
	must(m.Request("quay.io/acme/dtk:k", "quay.io/acme/dtk:staging-k", t0))
	must(m.Acknowledge(t0))
	must(m.Found("quay.io/acme/dtk:k", "quay.io/acme/dtk:staging-k", dgst, t0))
	must(m.Verified(Verdict{Checked: "vermagic"}, t0))
	if !m.KernelTagHolds(dgst, t0) || m.KernelTagHolds(dgst, t0) {
		t.Fatal("the kernel tag holding the image publishes it, once")
	}
	must(m.Promote(true, t0.Add(time.Hour)))
	if m.State != StatePromoted || !m.PromotedAt.Equal(t0.Add(time.Hour)) || m.Attempts != 2 || m.Checked != "vermagic" {
		t.Fatalf("promoted: %+v", m)
	}
}

// TestAnImageAtItsKernelTag: found there and verified, it is adopted;
// failing verification there, it fails (dtkbot never overwrites a tag it
// did not promote), whatever attempts remain.
func TestAnImageAtItsKernelTag(t *testing.T) {
	m := image(StateNew)
	if err := m.Found("quay.io/acme/dtk:k", "", dgst, t0); err != nil {
		t.Fatal(err)
	}
	adopted := m
	if err := adopted.Adopt(Verdict{}, t0); err != nil || !adopted.Adopted || !adopted.Published || adopted.State != StateVerified {
		t.Fatalf("adopted: %v %+v", err, adopted)
	}
	if _, _, err := m.Reject("wrong kernel", Retry{At: t0}, t0); err != nil || m.State != StateFailed ||
		!strings.Contains(m.Reason, "dtkbot never overwrites a tag it did not promote") {
		t.Fatalf("rejected at its kernel tag: %v %+v", err, m)
	}
}
