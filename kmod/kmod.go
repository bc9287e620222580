// Package kmod reads Linux kernel modules and decides, as the kernel's
// module loader would, whether they load on one exact kernel: before a node
// ever sees them.
//
// It gathers the modules (.ko, .ko.xz, .ko.zst, .ko.gz) under the module
// path of a kmod image (a driver container, as Kernel Module Management
// loads it) as the image's files stream by (Collector: package imageread
// walks the image, package verify joins the two), each within a memory
// budget shared by every read in flight (Budget); parses each module's ELF
// (.modinfo, __versions, its exports and the symbols it needs) and its
// appended signature; parses the kernel's side (Module.symvers,
// modules.dep, modules.builtin, its vermagic); and checks each module
// (Check): vermagic names that kernel with that kernel's flags, every
// symbol version (CRC) equals the kernel's, every symbol and dependency
// resolves in the kernel or the image, and, given certificates, the
// module's signature verifies against one of them.
//
// It is pure: it reads only what it is handed, never a registry, a disk or
// the network, and it never loads, runs or writes a module.
package kmod

import (
	"strings"
)

// Compressions of a module file, as its name ends.
const (
	CompressionNone = ""
	CompressionXZ   = "xz"
	CompressionZstd = "zstd"
	CompressionGzip = "gzip"
)

// moduleExts are the names a kernel module file ends with, and how it is
// compressed (kmod's libkmod reads the same four).
var moduleExts = []struct{ ext, compression string }{
	{".ko", CompressionNone},
	{".ko.xz", CompressionXZ},
	{".ko.zst", CompressionZstd},
	{".ko.gz", CompressionGzip},
}

// IsModuleFile says whether a file name is a kernel module's, and how it is
// compressed.
func IsModuleFile(name string) (compression string, ok bool) {
	for _, e := range moduleExts {
		if strings.HasSuffix(name, e.ext) && len(name) > len(e.ext) && !strings.HasSuffix(name, "/"+e.ext) {
			return e.compression, true
		}
	}
	return "", false
}

// ModuleName is the name the kernel knows a module file by: its base name
// without the extension, with "-" turned into "_" (the kernel and modprobe
// treat the two alike: scripts/Makefile.lib makes KBUILD_MODNAME so, and
// libkmod's modname_normalize does the same).
func ModuleName(file string) string {
	base := file[strings.LastIndex(file, "/")+1:]
	for _, e := range moduleExts {
		if b, ok := strings.CutSuffix(base, e.ext); ok {
			base = b
			break
		}
	}
	return NormalizeName(base)
}

// NormalizeName turns "-" into "_" in a module name.
func NormalizeName(name string) string { return strings.ReplaceAll(name, "-", "_") }
