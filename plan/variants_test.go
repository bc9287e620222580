package plan

import (
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/ledger"
)

const rtFull = "5.14.0-427.37.1.el9_4.x86_64+rt"

// carrying is a promoted DTK of kA whose files were read: it carries the
// variants' kernels vks.
func carrying(vks ...ledger.VariantKernel) ledger.Image {
	dtk := kernel(kA, ledger.StatePromoted, "4.16.15")
	dtk.KernelFilesRead(ledger.KernelFilesCheck{Variants: vks}, now)
	return dtk
}

func variantKinds(variants ...string) map[string]Kind {
	kinds := dtkKind(true)
	kinds["acme-nic"] = Kind{Target: Target{Repository: "quay.io/acme/nic", KernelTag: "{{.KernelFull}}"}, Verified: true, Retries: retries,
		Variants: variants}
	return kinds
}

// TestAVariantsImageIsMadeOnlyForAKernelTheDTKCarries: a consumer asking
// for the default and RT kernels gets an image of each once the DTK's files
// say it carries the RT kernel (its uname -r, read from the DTK), a build
// of each, and none for a variant the DTK does not carry (64k on amd64).
func TestAVariantsImageIsMadeOnlyForAKernelTheDTKCarries(t *testing.T) {
	kinds := variantKinds(ledger.VariantDefault, ledger.VariantRT, ledger.Variant64K)
	unread := kernel(kA, ledger.StatePromoted, "4.16.15")
	if due := KernelFilesDue([]ledger.Image{unread}, kinds); len(due) != 1 {
		t.Fatalf("a consumer asks for variants and the DTK's were not read: due %+v", due)
	}
	in := Input{Now: now, Images: []ledger.Image{unread}, Kinds: kinds, Promoted: tagsOf(unread, "4.16.15")}
	c := Plan(in)
	var made []string
	for _, m := range c.Images {
		if !m.Image.IsDTK() {
			made = append(made, ledger.VariantName(m.Image.Variant))
		}
	}
	if strings.Join(made, ",") != "default" {
		t.Fatalf("before the DTK's files were read, images of %v (want the default kernel's only)", made)
	}
	dtk := carrying(ledger.VariantKernel{Variant: ledger.VariantRT, KernelFull: rtFull})
	in = Input{Now: now, Images: []ledger.Image{dtk}, Kinds: kinds, Promoted: tagsOf(dtk, "4.16.15")}
	c = Plan(in)
	got := map[string]ledger.Image{}
	for _, m := range c.Images {
		if !m.Image.IsDTK() {
			got[ledger.VariantName(m.Image.Variant)] = m.Image
		}
	}
	if len(got) != 2 || got["default"].KernelFull != dtk.KernelFull || got["rt"].KernelFull != rtFull || got["rt"].DTKImage != dtk.PinnedImage() {
		t.Fatalf("images %+v", got)
	}
	if got["default"].Key() == got["rt"].Key() {
		t.Fatal("two variants' images share a key")
	}
	// The next round builds each, to its own staging tag.
	in.Images = []ledger.Image{dtk, got["default"], got["rt"]}
	c = Plan(in)
	staging := map[string]string{}
	for _, a := range c.Actions {
		if a.Type == "build" {
			staging[ledger.VariantName(a.Variant)] = a.Image
		}
	}
	if len(staging) != 2 || staging["default"] == staging["rt"] || !strings.Contains(staging["rt"], "_rt") {
		t.Errorf("builds %v (actions %s)", staging, summary(c.Actions))
	}
}

// TestAVariantNoLongerAskedForIsLeftAlone: an image of a variant the
// consumer no longer asks for is neither built nor withdrawn.
func TestAVariantNoLongerAskedForIsLeftAlone(t *testing.T) {
	dtk := carrying(ledger.VariantKernel{Variant: ledger.VariantRT, KernelFull: rtFull})
	rt := dtk.NewConsumerImage("acme-nic", ledger.VariantKernel{Variant: ledger.VariantRT, KernelFull: rtFull}, now)
	c := Plan(Input{Now: now, Images: []ledger.Image{dtk, rt}, Kinds: variantKinds(), Promoted: tagsOf(dtk, "4.16.15")})
	for _, a := range c.Actions {
		if a.Variant == ledger.VariantRT {
			t.Errorf("an action on an RT image no longer asked for: %+v", a)
		}
	}
}

// TestABIIsComparedVariantToVariant: an RT verdict is due on a DTK that
// carries the RT kernel, against the RT kernel's uname -r and the
// consumer's promoted RT module set of another kernel; never against its
// default kernel's modules.
func TestABIIsComparedVariantToVariant(t *testing.T) {
	const kB = "5.14.0-427.40.1.el9_4"
	dtk := kernel(kB, ledger.StatePromoted, "4.16.17")
	dtk.PromotedAt = now
	dtk.KernelFilesRead(ledger.KernelFilesCheck{Variants: []ledger.VariantKernel{{Variant: ledger.VariantRT, KernelFull: kB + ".x86_64+rt"}}}, now)
	base := kernel(kA, ledger.StatePromoted, "4.16.15")
	base.Consumer, base.PromotedAt = "acme-nic", now.Add(-time.Hour)
	base.Modules = []ledger.ModuleRecord{{Name: "nic.ko", Imports: map[string]uint32{"printk": 1}}}
	rtBase := base
	rtBase.Variant, rtBase.KernelFull = ledger.VariantRT, rtFull
	consumers := map[string][]string{"acme-nic": {ledger.VariantDefault, ledger.VariantRT}}
	due := ABIDue([]ledger.Image{dtk}, []ledger.Image{base, rtBase}, consumers)
	got := map[string]ABICheck{}
	for _, c := range due {
		got[c.Variant] = c
	}
	if len(due) != 2 || got[ledger.VariantRT].Base.KernelFull != rtFull || got[ledger.VariantRT].KernelFull != kB+".x86_64+rt" ||
		got[ledger.VariantDefault].Base.KernelFull != base.KernelFull || got[ledger.VariantDefault].KernelFull != dtk.KernelFull {
		t.Fatalf("due %+v", due)
	}
	if due := ABIDue([]ledger.Image{dtk}, []ledger.Image{base}, consumers); len(due) != 1 || due[0].Variant != ledger.VariantDefault {
		t.Errorf("an RT verdict from the default kernel's modules: %+v", due)
	}
	dtk.ABI = []ledger.ABIVerdict{{Consumer: "acme-nic"}}
	if due := ABIDue([]ledger.Image{dtk}, []ledger.Image{base, rtBase}, consumers); len(due) != 1 || due[0].Variant != ledger.VariantRT {
		t.Errorf("the default kernel's verdict stands for the RT one: %+v", due)
	}
}

// TestAnEarlierCheckIsReadAgainForVariants: a DTK whose files an earlier
// dtkbot checked (nothing said of its variants' kernels) is read again
// when a consumer asks for a variant, and only then.
func TestAnEarlierCheckIsReadAgainForVariants(t *testing.T) {
	dtk := kernel(kA, ledger.StatePromoted, "4.16.15")
	dtk.KernelFiles = &ledger.KernelFilesCheck{Digest: dtk.ImageDigest}
	abiOnly := dtkKind(true)
	abiOnly["acme-nic"] = Kind{Target: Target{Repository: "quay.io/acme/nic", KernelTag: "{{.KernelFull}}"}, Verified: true, NeedsKernelFiles: true, Retries: retries}
	if due := KernelFilesDue([]ledger.Image{dtk}, abiOnly); len(due) != 0 {
		t.Errorf("read again for a consumer of the default kernel only: %d", len(due))
	}
	if due := KernelFilesDue([]ledger.Image{dtk}, variantKinds(ledger.VariantDefault, ledger.VariantRT)); len(due) != 1 {
		t.Errorf("not read again for a consumer of the RT kernel: %d", len(due))
	}
	in := Input{Now: now, Images: []ledger.Image{dtk}, Kinds: variantKinds(ledger.VariantDefault, ledger.VariantRT), Promoted: tagsOf(dtk, "4.16.15")}
	for _, m := range Plan(in).Images {
		if m.Image.Variant == ledger.VariantRT {
			t.Errorf("an RT image made from a check that said nothing of the RT kernel: %+v", m.Image)
		}
	}
}

// TestAVariantsImageWaitsForItsKernel: an RT image whose DTK was rebuilt
// without the RT kernel is held, saying so, not built.
func TestAVariantsImageWaitsForItsKernel(t *testing.T) {
	dtk := carrying(ledger.VariantKernel{Variant: ledger.VariantRT, KernelFull: rtFull})
	rt := dtk.NewConsumerImage("acme-nic", ledger.VariantKernel{Variant: ledger.VariantRT, KernelFull: rtFull}, now)
	rebuilt := carrying()
	c := Plan(Input{Now: now, Images: []ledger.Image{rebuilt, rt}, Kinds: variantKinds(ledger.VariantDefault, ledger.VariantRT), Promoted: tagsOf(rebuilt, "4.16.15")})
	for _, a := range c.Actions {
		if a.Variant == ledger.VariantRT && (a.Type != "hold" || !strings.Contains(a.Reason, "does not carry the rt kernel")) {
			t.Errorf("%s %s", a.Type, a.Reason)
		}
	}
	if !strings.Contains(summary(c.Actions), "hold") {
		t.Errorf("actions %s", summary(c.Actions))
	}
}
