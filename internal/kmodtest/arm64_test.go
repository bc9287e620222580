package kmodtest

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/kmod"
)

// kernelOfFiles is the kernel of DTK files as a DTK carries them.
func kernelOfFiles(t *testing.T, full string, files []File) *kmod.Kernel {
	t.Helper()
	byName := map[string][]byte{}
	for _, f := range files {
		name, ok := strings.CutPrefix(f.Name, "etc/driver-toolkit/"+full+"/")
		if !ok {
			t.Fatalf("%s: not under etc/driver-toolkit/%s/", f.Name, full)
		}
		byName[name] = f.Data
	}
	k, err := kmod.NewKernel(full, byName["Module.symvers"], byName["modules.dep"], byName["modules.builtin"], byName["vermagic"])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestArm64Modules: the arm64 templates patched for a world kernel are
// the aarch64 modules kbuild built (the same symbol versions as those
// built for the arm64 kernels of kmod/testdata), with the world kernel's
// vermagic; each page size's modules load on the world kernel whose DTK
// carries that page size's files, and not on the other's, even named
// alike (the CRCs differ).
func TestArm64Modules(t *testing.T) {
	const world4k, world64k = "5.14.0-427.37.1.el9_4.aarch64", "5.14.0-427.37.1.el9_4.aarch64+64k"
	for _, tc := range []struct {
		pages, release, debian string
	}{
		{Pages4K, world4k, Arm64},
		{Pages64K, world64k, Arm64K},
	} {
		t.Run(tc.pages, func(t *testing.T) {
			img := image(t, ModulesArm64(tc.pages, tc.release))
			for _, m := range img.Modules {
				if m.Machine != "EM_AARCH64" || m.Info.Vermagic != tc.release+" SMP preempt mod_unload modversions aarch64" {
					t.Errorf("%s: machine %s, vermagic %q", m.Name(), m.Machine, m.Info.Vermagic)
				}
				data, err := os.ReadFile("../../kmod/testdata/modules/" + tc.debian + "/" + m.Name() + ".ko")
				if err != nil {
					t.Fatal(err)
				}
				d, err := kmod.ParseModule(m.Name()+".ko", data)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(m.Versions, d.Versions) {
					t.Errorf("%s: the template's symbol versions differ from the build for %s:\n%v\n%v", m.Name(), tc.debian, m.Versions, d.Versions)
				}
			}
			own := kernelOfFiles(t, tc.release, KernelFilesArm64(tc.release, tc.pages))
			if r := kmod.Check(img, own, kmod.CheckOptions{}); !r.Accepted {
				t.Errorf("on %s with its own page size's files: %s", tc.release, r.Reason)
			}
			other := map[string]string{Pages4K: Pages64K, Pages64K: Pages4K}[tc.pages]
			if r := kmod.Check(img, kernelOfFiles(t, tc.release, KernelFilesArm64(tc.release, other)), kmod.CheckOptions{}); r.Accepted || !strings.Contains(r.Reason, "disagrees about version of symbol kmalloc_caches") {
				t.Errorf("on %s with %s pages' files: accepted %v: %s", tc.release, other, r.Accepted, r.Reason)
			}
		})
	}
	// A 4k module for the +64k kernel's release (a build against the
	// wrong kernel-devel) is refused by its CRCs, its vermagic alike.
	img := image(t, ModulesArm64(Pages4K, world64k))
	if r := kmod.Check(img, kernelOfFiles(t, world64k, KernelFilesArm64(world64k, Pages64K)), kmod.CheckOptions{}); r.Accepted || !strings.Contains(r.Reason, "symbol versions differ") {
		t.Errorf("a 4k module named for the +64k kernel: accepted %v: %s", r.Accepted, r.Reason)
	}
	defer func() {
		if recover() == nil {
			t.Error("ModulesArm64 with 16k pages: no panic")
		}
	}()
	ModulesArm64("16k", world4k)
}
