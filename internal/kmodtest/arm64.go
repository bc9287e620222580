package kmodtest

import (
	"fmt"
	"strings"
)

// The aarch64 material: two small arm64 kernels kbuild cross-built from
// Debian's linux-source-6.1 by kmod/testdata/make-arm64-modules.sh, one
// with 4 KB pages and one with 64 KB pages (CONFIG_ARM64_64K_PAGES, what
// RHEL's kernel-64k is), and the test modules kbuild built against each:
// real aarch64 ELF files, unlike Modules' x86_64 modules marked aarch64.
// The 64k kernel is named as RHEL names kernel-64k, the 4k one's release
// with "+64k"; its own Module.symvers differs from the 4k one's in the
// CRCs of the symbols whose types depend on the page size, and its
// vermagic in the release only (arm64 puts no page size in vermagic).
const (
	// Arm64 is the 4 KB-page kernel (RHEL's aarch64 kernel).
	Arm64 = "6.1.192-dtkbot-arm64"
	// Arm64K is the 64 KB-page kernel (RHEL's aarch64 kernel-64k).
	Arm64K = Arm64 + "+64k"
)

// Page sizes of the arm64 kernels, as the variant names them.
const (
	Pages4K  = "4k"
	Pages64K = "64k"
)

// ArmPages says whether a world kernel's uname -r is aarch64's, and its
// page size: Pages64K for the 64k-page variant (...aarch64+64k).
func ArmPages(kernelFull string) (string, bool) {
	switch {
	case strings.HasSuffix(kernelFull, ".aarch64"):
		return Pages4K, true
	case strings.HasSuffix(kernelFull, ".aarch64+64k"):
		return Pages64K, true
	}
	return "", false
}

// arm64Kernel is the kernel of pages.
func arm64Kernel(pages string) string {
	switch pages {
	case Pages4K:
		return Arm64
	case Pages64K:
		return Arm64K
	}
	panic(fmt.Sprintf("kmodtest: no arm64 kernel with %q pages (want %s or %s)", pages, Pages4K, Pages64K))
}

// ModulesArm64 returns the module set kbuild built against the arm64
// kernel with pages (Pages4K, Pages64K), its vermagic naming release
// (e.g. 5.14.0-427.37.1.el9_4.aarch64+64k), by file name.
func ModulesArm64(pages, release string) map[string][]byte {
	arm64Kernel(pages)
	out := map[string][]byte{}
	for _, m := range ModuleNames {
		data, err := Patch(read("template-arm64-"+pages+"/"+m+".ko"), release)
		if err != nil {
			panic(err)
		}
		out[m+".ko"] = data
	}
	return out
}

// KernelFilesArm64 are the files dtkbot's DTK recipe copies to
// etc/driver-toolkit/<kernelFull>/, from the arm64 kernel with pages, the
// vermagic's release made kernelFull's. Module.symvers is whole (a few
// thousand symbols: the kernels are small).
func KernelFilesArm64(kernelFull, pages string) []File {
	return KernelFiles(kernelFull, arm64Kernel(pages), true)
}
