package plan

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/watcher"
)

var (
	graph = watcher.Source{Type: "graph", Name: "stable-4.16"}
	rc    = watcher.Source{Type: watcher.SourceReleaseController, Name: "4-dev-preview"}
)

func listed(v, digest string, sources ...watcher.Source) watcher.Release {
	return watcher.Release{Version: v, Pullspec: "quay.io/openshift-release-dev/ocp-release@" + digest, Digest: digest, Arch: "amd64", Sources: sources}
}

func recorded(v, digest string, sources ...watcher.Source) ledger.Release {
	return ledger.Release{Version: v, Digest: digest, Arch: "amd64", Kind: kindOf(v), Sources: sources,
		Streams: []ledger.ReleaseShips{ships("rhel-9", kA)}}
}

func kindOf(v string) string {
	if strings.Contains(v, "-ec.") {
		return "ec"
	}
	return "ga"
}

// TestWhichPayloadsAreRead: a payload digest is read once in its life; one
// held for its content never again (unless asked); one held for its
// signature once its recheck is due; a recorded release's signature that
// did not verify is checked again once due, and its record follows the
// feeds.
func TestWhichPayloadsAreRead(t *testing.T) {
	held := func(kind string, checked time.Time) map[string]ledger.HeldRelease {
		return map[string]ledger.HeldRelease{ledger.ReleaseKey(d1, "amd64"): {Digest: d1, Arch: "amd64", Kind: kind, SignatureCheckedAt: checked}}
	}
	unverified := recorded("4.16.15", d1, graph)
	unverified.Signature, unverified.SignatureCheckedAt = "unverified: no signature", now.Add(-2*time.Hour)
	withdrawn := recorded("4.17.0-ec.1", d1, rc)
	withdrawn.Withdrawn = "vanished from " + rc.String()
	for _, tt := range []struct {
		name                 string
		l                    Listing
		read, recheck, moved int
	}{
		{"never read: read", Listing{}, 1, 0, 0},
		{"a multi-arch payload: each arch", Listing{Listed: []watcher.Release{{Version: "4.16.15", Digest: d1, Arch: "multi"}}}, 2, 0, 0},
		{"recorded: not read again", Listing{Releases: map[string]ledger.Release{ledger.ReleaseKey(d1, "amd64"): recorded("4.16.15", d1, graph)}}, 0, 0, 0},
		{"recorded, now listed by another feed too", Listing{Listed: []watcher.Release{listed("4.16.15", d1, graph, rc)},
			Releases: map[string]ledger.Release{ledger.ReleaseKey(d1, "amd64"): recorded("4.16.15", d1, graph)}}, 0, 0, 1},
		{"withdrawn, listed again: counts again", Listing{Listed: []watcher.Release{listed("4.17.0-ec.1", d1, rc)},
			Releases: map[string]ledger.Release{ledger.ReleaseKey(d1, "amd64"): withdrawn}}, 0, 0, 1},
		{"held for its content: never read again", Listing{Held: held(HeldContent, time.Time{})}, 0, 0, 0},
		{"held for its content, asked to retry", Listing{Held: held(HeldContent, time.Time{}), RetryHeld: true}, 1, 0, 0},
		{"held for its signature, checked an hour ago", Listing{Held: held(HeldSignature, now.Add(-time.Hour)), Signatures: true, Recheck: 6 * time.Hour}, 0, 0, 0},
		{"held for its signature, due again", Listing{Held: held(HeldSignature, now.Add(-7*time.Hour)), Signatures: true, Recheck: 6 * time.Hour}, 1, 0, 0},
		{"recorded unverified, due again", Listing{Releases: map[string]ledger.Release{ledger.ReleaseKey(d1, "amd64"): unverified}, Signatures: true, Recheck: time.Hour}, 0, 1, 0},
		{"recorded unverified, not due", Listing{Releases: map[string]ledger.Release{ledger.ReleaseKey(d1, "amd64"): unverified}, Signatures: true, Recheck: 6 * time.Hour}, 0, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := tt.l
			l.Now = now
			if l.Listed == nil {
				l.Listed = []watcher.Release{listed("4.16.15", d1, graph)}
			}
			r := Payloads(l)
			if len(r.Read) != tt.read || len(r.Recheck) != tt.recheck || len(r.Releases) != tt.moved {
				t.Errorf("read %d, rechecked %d, records changed %d; want %d, %d, %d", len(r.Read), len(r.Recheck), len(r.Releases), tt.read, tt.recheck, tt.moved)
			}
			for _, c := range r.Releases {
				if c.Release.Withdrawn != "" || len(c.Release.Sources) < len(l.Listed[0].Sources) {
					t.Errorf("%+v", c.Release)
				}
			}
		})
	}
}

func TestWhatASignatureAdmits(t *testing.T) {
	down := errors.New("the store did not answer")
	for _, tt := range []struct {
		name              string
		c                 SignatureCheck
		signature, reason string
	}{
		{"verified", SignatureCheck{Verified: true, By: "Red Hat", Strict: true, New: true}, "verified by Red Hat", ""},
		{"unverified, warn mode", SignatureCheck{Reason: "no signature", New: true}, "unverified: no signature", ""},
		{"unverified, strict: held", SignatureCheck{Reason: "no signature", Strict: true, New: true}, "", "signature does not verify (verify.mode strict): no signature"},
		{"not checked, warn mode", SignatureCheck{Err: down, New: true}, "unchecked: the store did not answer", ""},
		{"not checked, strict: held", SignatureCheck{Err: down, Strict: true, New: true}, "", "signature not checked yet: the store did not answer"},
		{"a recorded release, strict: its record says so", SignatureCheck{Reason: "no signature", Strict: true}, "unverified: no signature", ""},
		{"a recorded release not checked, strict: its record says so", SignatureCheck{Err: down, Strict: true}, "unchecked: the store did not answer", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if s, h := Admit(tt.c); s != tt.signature || h != tt.reason {
				t.Errorf("%q, %q; want %q, %q", s, h, tt.signature, tt.reason)
			}
		})
	}
}

// TestShipped: a release recorded adds itself to its kernels' DTK images,
// each created the first time, and none for a held stream.
func TestShipped(t *testing.T) {
	rel := ledger.Release{Version: "4.22.0", Arch: "amd64", Sources: []watcher.Source{graph},
		Streams: []ledger.ReleaseShips{ships("rhel-9", kA), {Stream: "rhel-10", Held: "kernel unknown"}}}
	none := func(string) (ledger.Image, bool) { return ledger.Image{}, false }
	c := Shipped(rel, []string{"quay.io/openshift/dtk@" + d1, ""}, none, now)
	if len(c) != 1 || c[0].Image.State != ledger.StateNew || c[0].Image.DTKImage != "quay.io/openshift/dtk@"+d1 ||
		c[0].Image.FirstSource != "4.22.0 from "+graph.String() || strings.Join(c[0].Image.Releases, ",") != "4.22.0" {
		t.Fatalf("%+v", c)
	}
	known := c[0].Image
	have := func(string) (ledger.Image, bool) { return known, true }
	if again := Shipped(rel, nil, have, now); len(again) != 0 {
		t.Errorf("recorded twice: %+v", again)
	}
	rel.Version = "4.16.15"
	if older := Shipped(rel, nil, have, now); len(older) != 1 || strings.Join(older[0].Image.Releases, ",") != "4.16.15,4.22.0" {
		t.Errorf("another release of the kernel: %+v", older)
	}
}

// TestWithdrawals: a pre-release a feed now rejects, or that vanished from
// every feed that listed it (each read this pass), is withdrawn; its
// release tags are removed or reported, its kernel tags stay.
func TestWithdrawals(t *testing.T) {
	ec := recorded("4.17.0-ec.1", d1, rc)
	key := ledger.ReleaseKey(d1, "amd64")
	promoted := map[string]ledger.Promotion{
		"quay.io/acme/dtk:4.17.0-ec.1":       {Release: "4.17.0-ec.1", Kind: ledger.TagRelease, KernelKey: "rhel-9/amd64/" + kA},
		"quay.io/acme/dtk:" + kA:             {Release: "4.17.0-ec.1", Kind: ledger.TagKernel, KernelKey: "rhel-9/amd64/" + kA},
		"quay.io/acme/dtk:4.17.0-ec.1-arm64": {Release: "4.17.0-ec.1", Kind: ledger.TagRelease, KernelKey: "rhel-9/arm64/" + kA},
	}
	for _, tt := range []struct {
		name    string
		w       Withdrawing
		why     string
		actions string
	}{
		{"listed: stays", Withdrawing{Listing: Listing{Listed: []watcher.Release{listed("4.17.0-ec.1", d1, rc)}, Read: map[string]bool{rc.Key(): true}}}, "", ""},
		{"rejected by its feed", Withdrawing{Listing: Listing{Withdrawn: []watcher.Release{{Version: "4.17.0-ec.1", Arch: "amd64", Sources: []watcher.Source{rc}}}}, Remove: true},
			"rejected: " + rc.String(), "withdraw quay.io/acme/dtk:4.17.0-ec.1"},
		{"vanished from every feed read", Withdrawing{Listing: Listing{Read: map[string]bool{rc.Key(): true}}},
			"vanished from " + rc.String(), "withdraw quay.io/acme/dtk:4.17.0-ec.1"},
		{"its feed did not answer: it says nothing", Withdrawing{Listing: Listing{Read: map[string]bool{}}}, "", ""},
		{"another release only", Withdrawing{Listing: Listing{Read: map[string]bool{rc.Key(): true}}, Only: "4.17.0-ec.2"}, "vanished from " + rc.String(), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := tt.w
			w.Now, w.Releases, w.Promoted = now, map[string]ledger.Release{key: ec}, promoted
			c := Withdrawals(w)
			why := ""
			if len(c.Releases) == 1 {
				why = c.Releases[0].Release.Withdrawn
				if !c.Releases[0].Release.WithdrawnAt.Equal(now) || c.Releases[0].Warns == "" {
					t.Errorf("%+v", c.Releases[0])
				}
			}
			if why != tt.why || summary(c.Actions) != tt.actions {
				t.Fatalf("withdrawn %q, actions %q; want %q, %q", why, summary(c.Actions), tt.why, tt.actions)
			}
			for _, a := range c.Actions {
				if a.Remove != w.Remove || a.Reason != tt.why {
					t.Errorf("%+v", a)
				}
			}
		})
	}
	// A GA release never is.
	ga := recorded("4.16.15", d1, rc)
	if c := Withdrawals(Withdrawing{Listing: Listing{Now: now, Read: map[string]bool{rc.Key(): true}, Releases: map[string]ledger.Release{key: ga}}}); len(c.Releases) != 0 {
		t.Errorf("a GA release withdrawn: %+v", c)
	}
}
