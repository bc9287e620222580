package reconcile

import (
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/internal/citest"
	"github.com/dtkbot/dtkbot/internal/kmodtest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/kmm"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/state"
)

// variantWorld is a consumer world of amd64 and arm64 payloads of 4.16.15
// (kernel k1, whose payload ships an RT kernel), whose consumer acme-nic
// is built for variants, its tags naming the variant.
func variantWorld(t *testing.T, variants ...string) *consumerWorld {
	w := newConsumerWorld(t)
	w.builder.sync = true
	w.arches = []string{"amd64", "arm64"}
	w.variants = variants
	for _, arch := range w.arches {
		p := w.world.Release(payloadtest.ReleaseSpec{Version: "4.16.15", Arches: []string{arch}, Stream: k1})
		w.graph.Publish("stable-4.16", arch, "4.16.15", p.Pullspec)
	}
	return w
}

// passes runs passes until one changes nothing (at most 6).
func (w *consumerWorld) passes() {
	w.t.Helper()
	for range 6 {
		if res := w.pass(); len(res.Actions) == 0 {
			return
		}
	}
}

// byIdentity is every image of the state by its identity's key.
func byIdentity(t *testing.T, s *state.Store) map[string]ledger.Image {
	t.Helper()
	exp, err := s.Export()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]ledger.Image{}
	for _, m := range append(exp.Kernels, exp.Consumers...) {
		out[m.Key()] = m
	}
	return out
}

// TestEveryKernelANodeCanBoot: with RT kernels on amd64 and 64k-page ones on
// arm64, a consumer that asks for every variant ends with one verified,
// promoted image per (consumer, stream, arch, variant, kernel), built for
// that variant's uname -r, each checked against its own variant's kernel
// files of the DTK, and a KMM mapping for every kernel a node can boot.
func TestEveryKernelANodeCanBoot(t *testing.T) {
	w := variantWorld(t, ledger.VariantDefault, ledger.VariantRT, ledger.Variant64K)
	w.passes()
	images := byIdentity(t, w.store)
	want := map[ledger.ImageID]string{ // -> uname -r
		{Consumer: "acme-nic", Stream: "rhel-9", Arch: "amd64", Kernel: k1.Kernel}:                             k1.Kernel + ".x86_64",
		{Consumer: "acme-nic", Stream: "rhel-9", Arch: "amd64", Kernel: k1.Kernel, Variant: ledger.VariantRT}:  k1.Kernel + ".x86_64+rt",
		{Consumer: "acme-nic", Stream: "rhel-9", Arch: "arm64", Kernel: k1.Kernel}:                             k1.Kernel + ".aarch64",
		{Consumer: "acme-nic", Stream: "rhel-9", Arch: "arm64", Kernel: k1.Kernel, Variant: ledger.Variant64K}: k1.Kernel + ".aarch64+64k",
	}
	consumers := 0
	for _, m := range images {
		if !m.IsDTK() {
			consumers++
		}
	}
	if consumers != len(want) {
		t.Errorf("%d consumer images, want %d (no RT on arm64, no 64k on amd64): %v", consumers, len(want), keys(images))
	}
	for id, full := range want {
		m, ok := images[id.Key()]
		if !ok || m.State != ledger.StatePromoted || m.KernelFull != full || m.Variant != id.Variant {
			t.Errorf("%s: %+v", id.Key(), m)
			continue
		}
		if tag := strings.ReplaceAll(full, "+", "_"); !strings.HasSuffix(m.Image, ":"+tag) {
			t.Errorf("%s is promoted to %s, want the tag %s", id.Key(), m.Image, tag)
		}
		if d, _ := w.srv.TagDigest(kmodRepo, strings.ReplaceAll(full, "+", "_")); d.String() != m.ImageDigest {
			t.Errorf("%s: the kernel tag holds %s, want %s", id.Key(), d, m.ImageDigest)
		}
	}
	// Each build was asked for its variant's uname -r, FROM the kernel's one DTK.
	asked := map[string]string{}
	for _, in := range w.ci.Requests() {
		asked[in.KernelFullVersion] = in.KernelVariant
	}
	for full, v := range map[string]string{k1.Kernel + ".x86_64": "", k1.Kernel + ".x86_64+rt": "rt",
		k1.Kernel + ".aarch64": "", k1.Kernel + ".aarch64+64k": "64k"} {
		if asked[full] != v {
			t.Errorf("the build for %s asked KERNEL_VARIANT %q, want %q (requests: %v)", full, asked[full], v, asked)
		}
	}
	// KMM maps every kernel a node can boot, each to its own image.
	for _, arch := range w.arches {
		dtk := images[ledger.ImageID{Stream: "rhel-9", Arch: arch, Kernel: k1.Kernel}.Key()]
		var builds []ledger.Image
		for _, m := range images {
			builds = append(builds, m)
		}
		literals := map[string]string{}
		for _, c := range kmm.ForKernel(dtk, builds, nil).Mappings {
			literals[c.Mapping.Literal] = c.Mapping.ContainerImage
		}
		for id, full := range want {
			if id.Arch == arch && literals[full] != images[id.Key()].Image {
				t.Errorf("%s: KMM maps %s to %q, want %s (%v)", arch, full, literals[full], images[id.Key()].Image, literals)
			}
		}
		if len(literals) != 2 {
			t.Errorf("%s: %d mappings, want 2: %v", arch, len(literals), literals)
		}
	}
}

// TestAnImageIsCheckedAgainstItsOwnVariant: an RT image whose modules were
// built against the default kernel's headers is rejected (vermagic
// preempt_rt, symbol versions), and gets no KMM mapping; the default
// kernel's image is promoted. A DTK that declares its RT kernel without
// that kernel's files is rejected: no image of any variant is built FROM it.
func TestAnImageIsCheckedAgainstItsOwnVariant(t *testing.T) {
	t.Run("an RT image built for the default kernel", func(t *testing.T) {
		w := variantWorld(t, ledger.VariantDefault, ledger.VariantRT)
		w.ci.Change(func(b *citest.Builds) { b.Flavour = map[string]string{k1.Kernel + "+rt": kmodtest.FlavourCloud} })
		w.passes()
		images := byIdentity(t, w.store)
		def := images[ledger.ImageID{Consumer: "acme-nic", Stream: "rhel-9", Arch: "amd64", Kernel: k1.Kernel}.Key()]
		rt := images[ledger.ImageID{Consumer: "acme-nic", Stream: "rhel-9", Arch: "amd64", Kernel: k1.Kernel, Variant: ledger.VariantRT}.Key()]
		if def.State != ledger.StatePromoted {
			t.Errorf("the default kernel's image: %s %s", def.State, def.Reason)
		}
		if rt.State == ledger.StatePromoted || len(rt.Rejections) == 0 {
			t.Fatalf("an RT image of modules built for the default kernel: %s, rejections %+v", rt.State, rt.Rejections)
		}
		if why := rt.Rejections[0].Reason; !strings.Contains(why, "preempt_rt") && !strings.Contains(why, "symbol version") {
			t.Errorf("the rejection says neither vermagic nor symbol versions: %s", why)
		}
		dtk := images[ledger.ImageID{Stream: "rhel-9", Arch: "amd64", Kernel: k1.Kernel}.Key()]
		for _, c := range kmm.ForKernel(dtk, []ledger.Image{def, rt}, nil).Mappings {
			if c.Mapping.Literal != def.KernelFull {
				t.Errorf("a KMM mapping for an image never verified: %+v", c)
			}
		}
	})
	t.Run("a DTK without its RT kernel's files", func(t *testing.T) {
		w := variantWorld(t, ledger.VariantDefault, ledger.VariantRT)
		w.builder.set(func(b *fakeBuilder) { b.noVariantFiles = map[string]bool{k1.Kernel: true} })
		w.passes()
		images := byIdentity(t, w.store)
		dtk := images[ledger.ImageID{Stream: "rhel-9", Arch: "amd64", Kernel: k1.Kernel}.Key()]
		if dtk.State == ledger.StatePromoted || len(dtk.Rejections) == 0 || !strings.Contains(dtk.Rejections[0].Reason, "etc/driver-toolkit/"+k1.Kernel+".x86_64+rt/") {
			t.Errorf("a DTK declaring an RT kernel it does not carry: %s %+v", dtk.State, dtk.Rejections)
		}
		for key, m := range images {
			if !m.IsDTK() && m.Arch == "amd64" && m.State == ledger.StatePromoted {
				t.Errorf("%s promoted FROM a rejected DTK", key)
			}
		}
	})
}

func keys(m map[string]ledger.Image) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestDTKBuildsAskFor64kOnlyWhenAConsumerDoes: an aarch64 DTK's build asks
// for kernel-64k (kernel_variants: 64k) only when a consumer is built for
// it; an x86_64 DTK's never names rt (the recipe installs the payload's RT
// kernel as it always did): a config without 64k sends no kernel_variants,
// which a workflow written before variants does not declare.
func TestDTKBuildsAskFor64kOnlyWhenAConsumerDoes(t *testing.T) {
	arm := ledger.Image{Stream: "rhel-9", Arch: "arm64", Kernel: k1.Kernel, KernelFull: k1.Kernel + ".aarch64"}
	amd := ledger.Image{Stream: "rhel-9", Arch: "amd64", Kernel: k1.Kernel, KernelFull: k1.Kernel + ".x86_64", RTKernel: k1.Kernel}
	rtOnly := map[string]*kind{"acme-nic": {variants: []string{ledger.VariantDefault, ledger.VariantRT}}}
	with64k := map[string]*kind{"acme-nic": {variants: []string{ledger.VariantDefault}}, "beta": {variants: []string{ledger.Variant64K}}}
	for _, tc := range []struct {
		m     ledger.Image
		kinds map[string]*kind
		want  string
	}{{arm, rtOnly, ""}, {arm, with64k, "64k"}, {amd, with64k, ""}, {amd, rtOnly, ""}} {
		req := requestOf(tc.m, tc.kinds)
		if got := strings.Join(req.Variants, " "); got != tc.want || req.Inputs().KernelVariants != tc.want {
			t.Errorf("%s DTK: kernel_variants %q, want %q", tc.m.Arch, got, tc.want)
		}
	}
}

// TestVariantsWithoutTheABICheckRejectNoDTK: a consumer built for the RT
// kernel with verify.abi: false, FROM DTKs of a recipe of the user's own
// (no kernel files), has its DTKs read for their variants, not rejected
// for lacking the files only an ABI check needs: its default kernel's
// image is promoted.
func TestVariantsWithoutTheABICheckRejectNoDTK(t *testing.T) {
	w := variantWorld(t, ledger.VariantDefault, ledger.VariantRT)
	w.skipABI = true
	w.builder.set(func(b *fakeBuilder) { b.noKernelFiles = map[string]bool{k1.Kernel: true} })
	w.passes()
	images := byIdentity(t, w.store)
	dtk := images[ledger.ImageID{Stream: "rhel-9", Arch: "amd64", Kernel: k1.Kernel}.Key()]
	def := images[ledger.ImageID{Consumer: "acme-nic", Stream: "rhel-9", Arch: "amd64", Kernel: k1.Kernel}.Key()]
	if dtk.State != ledger.StatePromoted || def.State != ledger.StatePromoted {
		t.Errorf("the DTK %s (%+v), the default kernel's image %s (%s)", dtk.State, dtk.Rejections, def.State, def.Reason)
	}
	if !dtk.VariantsKnown() {
		t.Error("the DTK's variants were not read")
	}
}
