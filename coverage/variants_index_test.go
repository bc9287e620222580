package coverage

import (
	"slices"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/ledger"
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
