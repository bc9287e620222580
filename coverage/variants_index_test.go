package coverage

import (
	"slices"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/state"
)

// TestCoveredOnlyWhenEveryVariantIs: a consumer asking for the default and
// the RT kernel covers a release only once both images are promoted; the
// RT image not built yet is shown, pending, with its uname -r; a DTK known
// not to carry the RT kernel the release ships makes it missing; KMM maps
// each promoted variant's uname -r.
func TestCoveredOnlyWhenEveryVariantIs(t *testing.T) {
	snap := withConsumers()
	opts := Options{Variants: map[string][]string{"acme-nic": {ledger.VariantDefault, ledger.VariantRT}}}
	const vr = "5.14.0-427.37.1.el9_4"
	var dtk ledger.Image
	for i, k := range snap.Kernels {
		if k.Kernel == vr {
			snap.Kernels[i].KernelFilesRead(ledger.KernelFilesCheck{Variants: []ledger.VariantKernel{{Variant: ledger.VariantRT, KernelFull: vr + ".x86_64+rt"}}}, now)
			dtk = snap.Kernels[i]
		}
	}
	if dtk.RTKernel == "" {
		t.Fatal("the world's kernel ships no RT kernel")
	}
	s := streamOfRelease(t, Build(snap, now, opts), "4.16.15")
	variants := map[string]VariantKernel{}
	for _, v := range s.Variants {
		variants[v.Variant] = v
	}
	if s.Covered || len(s.Consumers) != 2 || s.Consumers[1].Variant != "rt" || s.Consumers[1].State != StatePending ||
		s.Consumers[1].KernelFull != vr+".x86_64+rt" || variants["rt"].Wanted != 1 || variants["rt"].Promoted != 0 || variants["default"].Promoted != 1 {
		t.Fatalf("the RT image not built yet: covered %v, consumers %+v, variants %+v", s.Covered, s.Consumers, s.Variants)
	}
	if !streamOfRelease(t, Build(snap, now, Options{}), "4.16.15").Covered {
		t.Error("the default kernel's image promoted, and no variant asked for: not covered")
	}

	rt := ledger.Image{Consumer: "acme-nic", Variant: ledger.VariantRT, Stream: dtk.Stream, Arch: dtk.Arch, Kernel: vr, KernelFull: vr + ".x86_64+rt",
		Image: "quay.io/acme/acme-nic:" + vr + ".x86_64_rt", DTKImage: dtk.PinnedImage(), State: ledger.StatePromoted,
		ImageDigest: "sha256:" + strings.Repeat("e", 64), Published: true}
	snap.Consumers = append(snap.Consumers, rt)
	ix := Build(snap, now, opts)
	if s := streamOfRelease(t, ix, "4.16.15"); !s.Covered || len(s.Consumers) != 2 {
		t.Errorf("every variant promoted: covered %v, %+v", s.Covered, s.Consumers)
	}
	literals := map[string]bool{}
	for _, m := range ix.KernelMappings("acme-nic") {
		literals[m.Literal] = true
	}
	if !literals[vr+".x86_64"] || !literals[vr+".x86_64+rt"] {
		t.Errorf("KMM mappings %v", literals)
	}
	rtPreflights := 0
	for _, p := range ix.Preflights("4.16.15", "amd64", "") {
		if p.Spec.KernelVersion == vr+".x86_64+rt" {
			rtPreflights++
		}
	}
	if rtPreflights != 1 {
		t.Errorf("%d preflights of 4.16.15 for the RT kernel", rtPreflights)
	}

	// A DTK read and found without the RT kernel the release ships.
	snap = withConsumers()
	for i, k := range snap.Kernels {
		if k.Kernel == vr {
			snap.Kernels[i].KernelFilesRead(ledger.KernelFilesCheck{}, now)
		}
	}
	ix = Build(snap, now, opts)
	s = streamOfRelease(t, ix, "4.16.15")
	if !(Filter{State: StateMissing}).Match(ix.Releases[slices.IndexFunc(ix.Releases, func(r Release) bool { return r.Release == "4.16.15" })]) {
		t.Error("?state=missing does not find the release whose RT image is missing")
	}
	if s.Covered || len(s.Consumers) != 2 || s.Consumers[1].State != StateMissing || !strings.Contains(s.Consumers[1].Reason, "does not carry it") {
		t.Errorf("an RT kernel its DTK does not carry: covered %v, %+v", s.Covered, s.Consumers)
	}
}

// TestA64kKernelItsDTKLacksIsMissing: a consumer asking for the 64k kernel
// of an aarch64 kernel of RHEL 9.2 or later (which has kernel-64k) whose DTK
// was read and does not carry it is shown missing, not covered; for RHEL
// 9.0 (no kernel-64k) the variant does not exist, and nothing is missing.
func TestA64kKernelItsDTKLacksIsMissing(t *testing.T) {
	for _, tc := range []struct {
		rhel    string
		covered bool
	}{{"9.4", false}, {"9.0", true}} {
		const vr = "5.14.0-427.37.1.el9_4"
		dtk := ledger.Image{Stream: "rhel-9", Arch: "arm64", Kernel: vr, KernelFull: vr + ".aarch64", RHEL: tc.rhel, Releases: []string{"4.16.15"},
			State: ledger.StatePromoted, Image: "quay.io/acme/dtk:" + vr + ".aarch64", ImageDigest: "sha256:" + strings.Repeat("a", 64), Published: true}
		dtk.KernelFilesRead(ledger.KernelFilesCheck{}, now)
		nic := ledger.Image{Consumer: "acme-nic", Stream: dtk.Stream, Arch: dtk.Arch, Kernel: vr, KernelFull: dtk.KernelFull, State: ledger.StatePromoted,
			Image: "quay.io/acme/nic:" + dtk.KernelFull, ImageDigest: "sha256:" + strings.Repeat("c", 64), Published: true, DTKImage: dtk.PinnedImage()}
		snap := &state.Snapshot{Kernels: []ledger.Image{dtk}, Consumers: []ledger.Image{nic}, Tags: map[string]ledger.Promotion{}, Notices: map[string]ledger.Notice{},
			Releases: []ledger.Release{{Version: "4.16.15", Arch: "arm64", Digest: "sha256:" + strings.Repeat("f", 64), Kind: "ga",
				Streams: []ledger.ReleaseShips{{Stream: "rhel-9", Kernel: vr, KernelFull: dtk.KernelFull, RHEL: tc.rhel}}}}}
		s := streamOfRelease(t, Build(snap, now, Options{Variants: map[string][]string{"acme-nic": {ledger.VariantDefault, ledger.Variant64K}}}), "4.16.15")
		if s.Covered != tc.covered {
			t.Errorf("RHEL %s: covered %v, want %v (%+v)", tc.rhel, s.Covered, tc.covered, s.Consumers)
		}
		if !tc.covered && (len(s.Consumers) != 2 || s.Consumers[1].State != StateMissing || s.Consumers[1].Variant != "64k") {
			t.Errorf("RHEL %s: %+v", tc.rhel, s.Consumers)
		}
	}
}
