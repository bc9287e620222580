// Package kmodtest gives the test world (internal/citest, the pass's
// harness, the demo) real kernel modules and real kernel files, made by
// kmod/testdata/make-modules.sh with the kernel's own tools (see
// kmod/testdata/README.md): kbuild-built modules and the Module.symvers,
// modules.dep, modules.builtin and vermagic of Debian 12's kernels.
//
// The world's kernels are RHCOS-like (5.14.0-427.37.1.el9_4.x86_64), the
// modules were built against Debian's headers. So:
//
//   - a world kernel's DTK carries the files of one Debian kernel (ABI:
//     Cloud by default), its vermagic's release changed to the world
//     kernel's: the symbol versions (CRCs) are the Debian kernel's own;
//   - a consumer image's modules are "templates" kbuild built with a
//     placeholder release of 48 characters (a copy of the headers with
//     include/generated/utsrelease.h changed), whose vermagic Modules
//     overwrites in .modinfo with the world kernel's release, NUL-padded:
//     the kernel (kernel/module/main.c, get_next_modinfo) and libkmod skip
//     runs of NULs between .modinfo strings, so offsets stay and the module
//     still parses as one kbuild made. A patched module carries no
//     signature (it would no longer verify);
//   - the modules are x86_64's: for a world kernel of another arch
//     (5.14.0-427.37.1.el9_4.aarch64) Modules marks them built for it (the
//     ELF header's e_machine), a stand-in for a build this machine cannot
//     make, so that the pass's tests of several arches see a module set
//     for each; the checks of an arch's module are package kmod's tests;
//   - for Secure Boot, Signed gives modules kbuild built with the release
//     of SignedRelease exactly and sign-file signed: the pass tests of
//     signatures use that world kernel.
package kmodtest

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/ulikunitz/xz"
)

//go:embed world
var world embed.FS

// Placeholder is the release the templates were built with.
const Placeholder = "0.0.0-dtkbot.world.placeholder.release.48.chars_"

// SignedRelease is the release the signed modules were built for.
const SignedRelease = "5.14.0-427.37.1.el9_4.x86_64"

// The Debian kernels whose files a world DTK can carry.
const (
	// Cloud is the standard kernel; its Module.symvers is whole.
	Cloud = "6.1.0-57-cloud-amd64"
	// RT is the PREEMPT_RT flavour of the same build: six of the CRCs the
	// modules use differ.
	RT = "6.1.0-57-rt-amd64"
	// Older is another ABI of the standard flavour with every CRC the
	// modules use unchanged.
	Older = "6.1.0-56-cloud-amd64"
)

// Module flavours: what the template was built against.
const (
	FlavourCloud = "cloud" // Cloud's headers
	FlavourRT    = "rt"    // RT's headers (a module for kernel-rt)
)

// ModuleNames are the modules of a set: dtkbot_user depends on
// dtkbot_hello (and the kernel's crc-itu-t).
var ModuleNames = []string{"dtkbot_hello", "dtkbot_user"}

func read(name string) []byte {
	data, err := world.ReadFile("world/" + name)
	if err != nil {
		panic(fmt.Sprintf("kmodtest: %v", err))
	}
	return data
}

// Modules returns the module set built against flavour's headers, its
// vermagic naming release, by file name (dtkbot_hello.ko, dtkbot_user.ko).
func Modules(flavour, release string) map[string][]byte {
	out := map[string][]byte{}
	for _, m := range ModuleNames {
		data, err := Patch(read("template-"+flavour+"/"+m+".ko"), release)
		if err != nil {
			panic(err)
		}
		if strings.HasSuffix(release, ".aarch64") || strings.HasSuffix(release, ".aarch64+64k") {
			data[18], data[19] = 183, 0 // e_machine: EM_AARCH64 (include/uapi/linux/elf-em.h)
		}
		out[m+".ko"] = data
	}
	return out
}

// Patch overwrites the placeholder release of a template's vermagic with
// release, keeping every offset.
func Patch(module []byte, release string) ([]byte, error) {
	needle := []byte("vermagic=" + Placeholder + " ")
	if bytes.Count(module, needle) != 1 {
		return nil, fmt.Errorf("kmodtest: not a template (no single vermagic=%s)", Placeholder)
	}
	if len(release) > len(Placeholder) || strings.ContainsAny(release, " \x00") {
		return nil, fmt.Errorf("kmodtest: release %q is longer than the placeholder's %d characters", release, len(Placeholder))
	}
	out := bytes.Clone(module)
	at := bytes.Index(out, needle) + len("vermagic=")
	end := at + bytes.IndexByte(out[at:], 0)
	rest := out[at+len(Placeholder) : end] // " SMP preempt mod_unload modversions "
	s := append([]byte(release), rest...)
	s = append(s, make([]byte, end-at-len(s))...)
	copy(out[at:end], s)
	return out, nil
}

// Signed returns the modules built for SignedRelease, signed by key:
// "trusted" (Cert's) or "other".
func Signed(key string) map[string][]byte {
	out := map[string][]byte{}
	for _, m := range ModuleNames {
		out[m+".ko"] = read(SignedRelease + "/signed" + map[string]string{"trusted": "", "other": "-other"}[key] + "/" + m + ".ko")
	}
	return out
}

// Cert is the PEM certificate of key ("trusted" or "other").
func Cert(key string) []byte { return read("certs/" + key + ".pem") }

// File is a file of an image: its path in the layer, its content.
type File struct {
	Name string
	Data []byte
}

// KernelFiles are the files dtkbot's DTK recipe copies to
// etc/driver-toolkit/<kernelFull>/, in the order a layer holds them, from
// Debian kernel abi (Cloud, RT, Older) with the vermagic's release made
// kernelFull's. whole keeps Cloud's Module.symvers whole (14,415 symbols,
// 907 KB: what a real check reads); else it is filtered, as RT's and
// Older's are, to the symbols the test modules use, so that a test world
// of many kernels stays small.
func KernelFiles(kernelFull, abi string, whole bool) []File {
	dir := "kernels/" + abi + "/"
	symvers := unxz(read(dir + "Module.symvers.xz"))
	if !whole && abi == Cloud {
		used := map[string]bool{}
		for _, line := range strings.Split(string(unxz(read("kernels/"+RT+"/Module.symvers.xz"))), "\n") {
			if f := strings.Split(line, "\t"); len(f) > 1 {
				used[f[1]] = true
			}
		}
		var keep []string
		for _, line := range strings.Split(string(symvers), "\n") {
			if f := strings.Split(line, "\t"); len(f) > 1 && used[f[1]] {
				keep = append(keep, line)
			}
		}
		symvers = []byte(strings.Join(keep, "\n") + "\n")
	}
	base := path.Join("etc/driver-toolkit", kernelFull) + "/"
	vermagic := string(read(dir + "vermagic"))
	return []File{
		{base + "Module.symvers", symvers},
		{base + "modules.builtin", unxz(read(dir + "modules.builtin.xz"))},
		{base + "modules.dep", unxz(read(dir + "modules.dep.xz"))},
		{base + "vermagic", []byte(kernelFull + strings.TrimPrefix(vermagic, abi))},
	}
}

func unxz(data []byte) []byte {
	r, err := xz.NewReader(bytes.NewReader(data))
	if err != nil {
		panic(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		panic(err)
	}
	return out
}
