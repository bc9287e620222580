package kmodtest

import (
	"os"
	"slices"
	"testing"

	"github.com/dtkbot/dtkbot/kmod"
	"github.com/dtkbot/dtkbot/releaseinfo"
)

const worldKernel = "5.14.0-427.37.1.el9_4.x86_64"

func kernelOf(t *testing.T, full, abi string) *kmod.Kernel {
	t.Helper()
	f := releaseinfo.KernelFiles{Kernel: full}
	for _, e := range KernelFiles(full, abi, false) {
		switch e.Name[len("etc/driver-toolkit/"+full+"/"):] {
		case "Module.symvers":
			f.Symvers = e.Data
		case "modules.dep":
			f.ModulesDep = e.Data
		case "modules.builtin":
			f.ModulesBuiltin = e.Data
		case "vermagic":
			f.Vermagic = e.Data
		}
	}
	k, err := kmod.NewKernel(f.Kernel, f.Symvers, f.ModulesDep, f.ModulesBuiltin, f.Vermagic)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func image(t *testing.T, mods map[string][]byte) *kmod.Image {
	t.Helper()
	img := &kmod.Image{ModulePath: "opt/lib/modules/x/"}
	for _, n := range ModuleNames {
		m, err := kmod.ParseModule(n+".ko", mods[n+".ko"])
		if err != nil {
			t.Fatal(err)
		}
		img.Modules = append(img.Modules, m)
	}
	return img
}

// TestWorldModules: a template patched for a world kernel is the module
// kbuild built, with the world kernel's vermagic: the same symbol versions
// as the one built for Debian's kernel, accepted on the world kernel whose
// DTK carries that kernel's files, refused on one carrying RT's; a module
// for kernel-rt is refused on the standard kernel; the signed modules
// verify with the trusted certificate only.
func TestWorldModules(t *testing.T) {
	mods := Modules(FlavourCloud, worldKernel)
	img := image(t, mods)
	hello := img.Modules[0]
	if hello.Info.Vermagic != worldKernel+" SMP preempt mod_unload modversions " {
		t.Fatalf("vermagic %q", hello.Info.Vermagic)
	}
	debian, err := os.ReadFile("../../kmod/testdata/modules/" + Cloud + "/dtkbot_hello.ko")
	if err != nil {
		t.Fatal(err)
	}
	d, err := kmod.ParseModule("dtkbot_hello.ko", debian)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hello.Versions, d.Versions) {
		t.Errorf("the template's symbol versions differ from the Debian build's:\n%v\n%v", hello.Versions, d.Versions)
	}
	if r := kmod.Check(img, kernelOf(t, worldKernel, Cloud), kmod.CheckOptions{}); !r.Accepted {
		t.Errorf("on the world kernel: %s", r.Reason)
	}
	if r := kmod.Check(img, kernelOf(t, worldKernel, Older), kmod.CheckOptions{}); !r.Accepted {
		t.Errorf("on a world kernel with Older's files: %s", r.Reason)
	}
	if r := kmod.Check(img, kernelOf(t, worldKernel, RT), kmod.CheckOptions{}); r.Accepted {
		t.Error("accepted on a kernel with RT's symbol versions")
	}
	if r := kmod.Check(image(t, Modules(FlavourRT, worldKernel)), kernelOf(t, worldKernel, Cloud), kmod.CheckOptions{}); r.Accepted {
		t.Error("a module for kernel-rt accepted on the standard kernel")
	}
	arm := image(t, Modules(FlavourCloud, "5.14.0-427.37.1.el9_4.aarch64"))
	if arm.Modules[0].Machine != "EM_AARCH64" {
		t.Errorf("an aarch64 world kernel's module is %s", arm.Modules[0].Machine)
	}
	trusted, err := kmod.ParseCertificates("trusted", Cert("trusted"))
	if err != nil {
		t.Fatal(err)
	}
	k := kernelOf(t, SignedRelease, Cloud)
	if r := kmod.Check(image(t, Signed("trusted")), k, kmod.CheckOptions{Certs: trusted}); !r.Accepted {
		t.Errorf("signed by the trusted key: %s", r.Reason)
	}
	if r := kmod.Check(image(t, Signed("other")), k, kmod.CheckOptions{Certs: trusted}); r.Accepted {
		t.Error("signed by the other key: accepted")
	}
	if _, err := Patch(mods["dtkbot_hello.ko"], worldKernel); err == nil {
		t.Error("a patched module patched again")
	}
}
