package kmod

import (
	"crypto/x509"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
)

// Image is every module a kmod image holds under its module path, as
// a Collector gathered them.
type Image struct {
	Pullspec string `json:"image"`
	// Digest is the manifest digest read (the instance's, for a list).
	Digest     string `json:"digest,omitempty"`
	ModulePath string `json:"module_path"`
	Modules    []*Module
	// Unreadable are module files that could not be parsed: no node would
	// load them either.
	Unreadable []UnreadableModule `json:"unreadable,omitempty"`
	// Links are links under (or in place of) the module path, never
	// followed; Elsewhere module files outside it.
	Links     []string          `json:"links,omitempty"`
	Elsewhere []string          `json:"elsewhere,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Layers is how many layers the image has, Walked how many were read.
	Layers, Walked int
}

// UnreadableModule is a module file that is not a module a kernel would
// load.
type UnreadableModule struct {
	Path    string `json:"path"`
	Problem string `json:"problem"`
}

// CheckOptions say what a check requires beyond the kernel's own rules.
type CheckOptions struct {
	// Certs, when not empty, are the keys a Secure Boot node trusts: every
	// module must carry a signature that verifies with one of them.
	Certs []*x509.Certificate
	// RequireABI rejects the image when the kernel's Module.symvers is
	// unknown (a DTK without it), instead of checking what can be checked.
	RequireABI bool
	// IgnoreRelease compares vermagic as the kernel's same_magic() does
	// (for a module with symbol versions, without the release), for the
	// question "would modules built for one kernel load on another?".
	IgnoreRelease bool
	// Load, if set, is the module a node will load from the image
	// (modprobe's name: KMM's modprobe.moduleName): it must be one of the
	// image's modules, as modprobe finds it by name ("-" and "_" alike).
	// What it depends on is checked as every module's dependencies are.
	Load string
}

// Report is the verdict on an image's modules for one kernel.
type Report struct {
	Image      string `json:"image"`
	Digest     string `json:"digest,omitempty"`
	Kernel     string `json:"kernel"`
	ModulePath string `json:"module_path"`
	// Accepted is the verdict; Reason says why, in a line.
	Accepted bool   `json:"accepted"`
	Reason   string `json:"reason"`
	// ABIChecked says the symbol versions were compared (the kernel's
	// Module.symvers was known); SignaturesChecked that certificates were
	// given; DependenciesFrom what the dependencies were resolved against.
	ABIChecked        bool           `json:"abi_checked"`
	SignaturesChecked bool           `json:"signatures_checked"`
	DependenciesFrom  string         `json:"dependencies_from"`
	KernelSources     []string       `json:"kernel_sources,omitempty"`
	Modules           []ModuleReport `json:"modules"`
	Notes             []string       `json:"notes,omitempty"`
}

// ModuleReport is one module's verdict.
type ModuleReport struct {
	Path        string `json:"path"`
	Name        string `json:"name"`
	Layer       int    `json:"layer"`
	Compression string `json:"compression,omitempty"`
	// Loads says the module would load: no problem below.
	Loads             bool             `json:"loads"`
	Vermagic          VermagicReport   `json:"vermagic"`
	CRCMismatches     []CRCMismatch    `json:"crc_mismatches,omitempty"`
	UnresolvedSymbols []string         `json:"unresolved_symbols,omitempty"`
	UnresolvedDepends []string         `json:"unresolved_depends,omitempty"`
	UncheckedDepends  []string         `json:"unchecked_depends,omitempty"`
	Signature         *SignatureReport `json:"signature,omitempty"`
	// Problems are every reason the module would not load, one line each.
	Problems []string `json:"problems,omitempty"`
}

// VermagicReport compares the module's vermagic with the kernel's.
type VermagicReport struct {
	Module string `json:"module"`
	Kernel string `json:"kernel,omitempty"` // the kernel's, when known
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// CRCMismatch is a symbol whose version differs from the kernel's: the
// kernel refuses the module ("disagrees about version of symbol").
type CRCMismatch struct {
	Symbol string `json:"symbol"`
	Module string `json:"module_crc"` // 0x-hex, as the module has it
	Kernel string `json:"kernel_crc"` // as the kernel (or the exporting module) has it
	From   string `json:"exported_by"`
}

// SignatureReport is a module's signature, and whether it verified.
type SignatureReport struct {
	Signed    bool   `json:"signed"`
	Signer    string `json:"signer,omitempty"` // the certificate's subject, else the signer as the signature names it
	Issuer    string `json:"issuer,omitempty"`
	Serial    string `json:"serial,omitempty"`
	KeyID     string `json:"key_id,omitempty"`
	Hash      string `json:"hash,omitempty"`
	Algorithm string `json:"algorithm,omitempty"`
	Verified  bool   `json:"verified"`
	Problem   string `json:"problem,omitempty"`
}

// Check decides whether every module of img loads on kernel k, as the
// kernel's module loader (kernel/module/main.c, load_module) would decide:
//
//   - vermagic: the first word must be k's release (unless IgnoreRelease),
//     and the rest equal k's vermagic's as same_magic() in
//     kernel/module/version.c compares them (for a module without symbol
//     versions, the whole string). When k's vermagic is unknown, only
//     preempt_rt (RT kernels only) and modversions (present exactly when
//     the module has __versions) are checked.
//   - symbol versions: each __versions CRC must equal the one the kernel's
//     Module.symvers has, or the exporting module of the image carries
//     (check_version); each symbol the module needs must be exported by the
//     kernel or a module of the image; GPL-only symbols need a
//     GPL-compatible license (include/linux/license.h), namespaced ones a
//     MODULE_IMPORT_NS (verify_namespace_is_imported).
//   - dependencies: each depends= must be a module of the image, or one of
//     the kernel's (modules.dep, modules.builtin; without them, an exporting
//     module named in Module.symvers). Unknown without either: reported
//     unchecked.
//   - signature, given opts.Certs: the appended PKCS#7 signature must
//     verify with one of them over the module's bytes.
//
// Check does no I/O: img and k hold everything it reads.
func Check(img *Image, k *Kernel, opts CheckOptions) *Report {
	r := &Report{Image: img.Pullspec, Digest: img.Digest, Kernel: k.Release, ModulePath: img.ModulePath,
		ABIChecked: k.Symvers != nil, SignaturesChecked: len(opts.Certs) > 0, KernelSources: k.Sources}
	kernelModules, depsFrom := k.Modules, "modules.dep and modules.builtin"
	if kernelModules == nil && k.Symvers != nil {
		kernelModules, depsFrom = symversModules(k.Symvers), "Module.symvers (no modules.dep given)"
	}
	if kernelModules == nil {
		depsFrom = "the image only (the kernel's modules are unknown)"
	}
	r.DependenciesFrom = depsFrom

	names := map[string]*Module{}
	exports := map[string]exporter{}
	for _, m := range img.Modules {
		names[m.Name()] = m
		for _, e := range m.Exports {
			if _, dup := exports[e.Name]; !dup {
				exports[e.Name] = exporter{module: m, sym: e}
			}
		}
	}
	for _, m := range img.Modules {
		r.Modules = append(r.Modules, checkModule(m, k, opts, names, exports, kernelModules))
	}
	for _, u := range img.Unreadable {
		r.Modules = append(r.Modules, ModuleReport{Path: u.Path, Name: ModuleName(u.Path), Layer: -1, Problems: []string{"not a module the kernel can read: " + u.Problem}})
	}
	for _, l := range img.Links {
		name, _, _ := strings.Cut(l, " -> ")
		if _, ok := IsModuleFile(name); ok {
			r.Modules = append(r.Modules, ModuleReport{Path: name, Name: ModuleName(name), Layer: -1,
				Problems: []string{"is a link (" + l + "): dtkbot never follows links in an image, so it cannot tell what a node would load"}})
		} else {
			r.Notes = append(r.Notes, "link not followed: "+l)
		}
	}
	sort.SliceStable(r.Modules, func(i, j int) bool { return r.Modules[i].Path < r.Modules[j].Path })
	if !r.ABIChecked {
		r.Notes = append(r.Notes, "the kernel's Module.symvers is unknown: symbol versions (CRCs) were not compared")
	}
	r.Accepted, r.Reason = verdict(r, img, k, opts)
	return r
}

type exporter struct {
	module *Module
	sym    ExportedSymbol
}

func verdict(r *Report, img *Image, k *Kernel, opts CheckOptions) (bool, string) {
	if opts.RequireABI && k.Symvers == nil {
		return false, fmt.Sprintf("no Module.symvers of kernel %s: the modules' symbol versions cannot be checked", k.Release)
	}
	if len(r.Modules) == 0 {
		msg := fmt.Sprintf("no kernel module under /%s", img.ModulePath)
		if len(img.Elsewhere) > 0 {
			msg += fmt.Sprintf(" (its modules are elsewhere: %s)", strings.Join(img.Elsewhere[:min(3, len(img.Elsewhere))], ", "))
		}
		return false, msg
	}
	if opts.Load != "" && !slices.ContainsFunc(img.Modules, func(m *Module) bool { return m.Name() == NormalizeName(opts.Load) }) {
		var found []string
		for _, m := range r.Modules {
			found = append(found, path.Base(m.Path))
		}
		more := ""
		if len(found) > 5 {
			found, more = found[:5], fmt.Sprintf(" and %d more", len(found)-5)
		}
		return false, fmt.Sprintf("the module a node loads, %s (modprobe), is not under /%s: the image holds %s%s", opts.Load, img.ModulePath, strings.Join(found, ", "), more)
	}
	var bad []string
	for _, m := range r.Modules {
		if len(m.Problems) > 0 {
			bad = append(bad, m.Name+": "+m.Problems[0])
		}
	}
	if len(bad) > 0 {
		more := ""
		if len(bad) > 2 {
			more = fmt.Sprintf("; and %d more", len(bad)-2)
		}
		return false, fmt.Sprintf("%d of %d modules would not load on %s: %s%s", len(bad), len(r.Modules), k.Release, strings.Join(bad[:min(2, len(bad))], "; "), more)
	}
	what := []string{"vermagic"}
	if r.ABIChecked {
		what = append(what, "symbol versions")
	}
	what = append(what, "dependencies")
	if r.SignaturesChecked {
		what = append(what, "signatures")
	}
	return true, fmt.Sprintf("%d modules load on %s (%s checked)", len(r.Modules), k.Release, strings.Join(what, ", "))
}

func checkModule(m *Module, k *Kernel, opts CheckOptions, names map[string]*Module, exports map[string]exporter, kernelModules map[string]string) ModuleReport {
	mr := ModuleReport{Path: m.Path, Name: m.Name(), Layer: m.Layer, Compression: m.Compression}
	problem := func(format string, args ...any) { mr.Problems = append(mr.Problems, fmt.Sprintf(format, args...)) }

	mr.Vermagic = checkVermagic(m, k, opts.IgnoreRelease)
	if !mr.Vermagic.OK {
		problem("vermagic: %s", mr.Vermagic.Reason)
	}
	if want := machineOf(k.Release); want != "" && m.Machine != want {
		problem("built for %s, the kernel is %s", m.Machine, want)
	}

	// Symbols: versions first (what the kernel compares), then every
	// symbol the module needs.
	gpl := licenseIsGPLCompatible(m.Info.License)
	var gplOnly, namespaces []string
	// The kernel resolves a symbol against vmlinux first, then the modules
	// loaded: the image's, which a replacement of an in-tree module (an
	// out-of-tree build of the same driver) shadows, before the kernel's own.
	resolve := func(name string) (crc uint32, hasCRC bool, from string, found bool) {
		s, inKernel := k.Symvers[name]
		e, inImage := exports[name]
		inImage = inImage && e.module != m
		switch {
		case inKernel && (s.Module == "vmlinux" || !inImage):
			if s.GPLOnly && !gpl {
				gplOnly = append(gplOnly, name)
			}
			if s.Namespace != "" && !slices.Contains(m.Info.ImportNS, s.Namespace) {
				namespaces = append(namespaces, name+" ("+s.Namespace+")")
			}
			return s.CRC, true, s.Module, true
		case inImage:
			if e.sym.GPLOnly && !gpl {
				gplOnly = append(gplOnly, name)
			}
			return e.sym.CRC, e.sym.HasCRC, "image module " + e.module.Name(), true
		}
		return 0, false, "", false
	}
	unresolved := map[string]bool{}
	versioned := map[string]bool{}
	if k.Symvers != nil {
		for _, v := range m.Versions {
			versioned[v.Name] = true
			crc, hasCRC, from, found := resolve(v.Name)
			switch {
			case !found:
				unresolved[v.Name] = true
			case hasCRC && uint64(crc) != v.CRC:
				mr.CRCMismatches = append(mr.CRCMismatches, CRCMismatch{Symbol: v.Name, Module: fmt.Sprintf("0x%08x", v.CRC), Kernel: fmt.Sprintf("0x%08x", crc), From: from})
			}
		}
		for _, name := range m.Undefined {
			if versioned[name] || ignoredUndefined(name, m.Machine) {
				continue
			}
			if _, _, _, found := resolve(name); !found {
				unresolved[name] = true
			}
		}
	}
	if len(mr.CRCMismatches) > 0 {
		var syms []string
		for _, c := range mr.CRCMismatches {
			syms = append(syms, c.Symbol)
		}
		what := "symbol versions differ"
		if len(syms) == 1 {
			what = "symbol version differs"
		}
		problem("%d %s from kernel %s's (disagrees about version of symbol %s)", len(syms), what, k.Release, strings.Join(syms, ", "))
	}
	for s := range unresolved {
		mr.UnresolvedSymbols = append(mr.UnresolvedSymbols, s)
	}
	slices.Sort(mr.UnresolvedSymbols)
	if len(mr.UnresolvedSymbols) > 0 {
		problem("needs symbols that neither kernel %s nor another module of the image exports: %s", k.Release, strings.Join(mr.UnresolvedSymbols, ", "))
	}
	if len(gplOnly) > 0 {
		problem("uses GPL-only symbols (%s) but its license %q is not GPL-compatible", strings.Join(dedupe(gplOnly), ", "), m.Info.License)
	}
	if len(namespaces) > 0 {
		problem("uses namespaced symbols without importing their namespace (MODULE_IMPORT_NS): %s", strings.Join(dedupe(namespaces), ", "))
	}
	// A symbol vmlinux exports cannot be exported again
	// (kernel/module/main.c, verify_exported_symbols).
	var duplicates []string
	for _, e := range m.Exports {
		if s, ok := k.Symvers[e.Name]; ok && s.Module == "vmlinux" {
			duplicates = append(duplicates, e.Name)
		}
	}
	if len(duplicates) > 0 {
		problem("exports symbols the kernel itself exports (exports duplicate symbol): %s", strings.Join(duplicates, ", "))
	}

	for _, d := range m.Info.Depends {
		n := NormalizeName(d)
		if other, ok := names[n]; ok && other != m {
			continue
		}
		if kernelModules == nil {
			mr.UncheckedDepends = append(mr.UncheckedDepends, d)
			continue
		}
		if _, ok := kernelModules[n]; !ok {
			mr.UnresolvedDepends = append(mr.UnresolvedDepends, d)
		}
	}
	if len(mr.UnresolvedDepends) > 0 {
		problem("depends on modules that are neither kernel %s's nor in the image: %s", k.Release, strings.Join(mr.UnresolvedDepends, ", "))
	}

	mr.Signature = checkSignature(m.Signature, opts.Certs)
	if len(opts.Certs) > 0 && !mr.Signature.Verified {
		switch {
		case !mr.Signature.Signed:
			problem("not signed: a node that enforces module signatures (Secure Boot) refuses it")
		default:
			problem("signature: %s", mr.Signature.Problem)
		}
	}
	mr.Loads = len(mr.Problems) == 0
	return mr
}

func checkVermagic(m *Module, k *Kernel, ignoreRelease bool) VermagicReport {
	got := m.Info.Vermagic
	v := VermagicReport{Module: got, Kernel: k.Vermagic}
	if got == "" {
		v.Reason = "the module has none (the kernel refuses it as a bad vermagic)"
		return v
	}
	release, _, _ := strings.Cut(got, " ")
	hasCRCs := len(m.Versions) > 0
	switch {
	case !ignoreRelease && release != k.Release:
		v.Reason = fmt.Sprintf("built for kernel %s, not %s", release, k.Release)
	case k.Vermagic != "" && !sameMagic(got, k.Vermagic, hasCRCs):
		if hasCRCs {
			v.Reason = fmt.Sprintf("flags %q differ from the kernel's %q", flagsOf(got), flagsOf(k.Vermagic))
		} else {
			v.Reason = fmt.Sprintf("%q differs from the kernel's %q (without symbol versions the whole vermagic must match)", got, k.Vermagic)
		}
	case hasFlag(got, "preempt_rt") && !k.RT:
		v.Reason = "built for a PREEMPT_RT kernel (preempt_rt); " + k.Release + " is not one"
	case !hasFlag(got, "preempt_rt") && k.RT:
		v.Reason = "not built for a PREEMPT_RT kernel; " + k.Release + " is one (its vermagic says preempt_rt)"
	case hasFlag(got, "modversions") != hasCRCs:
		v.Reason = "says modversions but has no symbol versions, or the other way round"
	default:
		v.OK = true
	}
	return v
}

// sameMagic is kernel/module/version.c's same_magic(): with symbol
// versions, the first word (the release) is skipped. Trailing blanks
// (VERMAGIC_STRING ends in one, a file written by hand may not) are not
// compared.
func sameMagic(a, b string, hasCRCs bool) bool {
	if hasCRCs {
		a, b = flagsOf(a), flagsOf(b)
	}
	return strings.TrimRight(a, " ") == strings.TrimRight(b, " ")
}

func flagsOf(vermagic string) string {
	_, flags, _ := strings.Cut(vermagic, " ")
	return strings.TrimRight(flags, " ")
}

// symversModules are the kernel's modules Module.symvers names as
// exporters.
func symversModules(symvers map[string]Symbol) map[string]string {
	out := map[string]string{}
	for _, s := range symvers {
		if s.Module != "vmlinux" {
			out[ModuleName(s.Module)] = s.Module
		}
	}
	return out
}

// licenseIsGPLCompatible is include/linux/license.h's
// license_is_gpl_compatible().
func licenseIsGPLCompatible(license string) bool {
	switch license {
	case "GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL":
		return true
	}
	return false
}

// ignoredUndefined are the undefined symbols the final link of a .ko or the
// loader resolves without an export (scripts/mod/modpost.c,
// ignore_undef_symbol). A linked .ko rarely has them undefined; an object
// that slipped through might.
func ignoredUndefined(name, machine string) bool {
	if name == "__this_module" || name == "_GLOBAL_OFFSET_TABLE_" {
		return true
	}
	switch machine {
	case "EM_PPC":
		for _, p := range []string{"_restgpr_", "_savegpr_", "_rest32gpr_", "_save32gpr_", "_restvr_", "_savevr_"} {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
	case "EM_PPC64":
		for _, p := range []string{"_restgpr0_", "_savegpr0_", "_restgpr1_", "_savegpr1_", "_restfpr_", "_savefpr_", "_restvr_", "_savevr_"} {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
		return name == ".TOC."
	case "EM_S390":
		return strings.HasPrefix(name, "__s390_indirect_jump_r")
	}
	return false
}

// machineOf is the ELF machine of a kernel's modules, from its release:
// RHEL's .x86_64, Debian's -amd64, ... ("" when the name does not say),
// a variant's suffix (+rt, +64k) aside.
func machineOf(release string) string {
	r := strings.TrimSuffix(strings.TrimSuffix(release, "+rt"), "+64k")
	for _, a := range []struct {
		suffixes []string
		machine  string
	}{
		{[]string{".x86_64", "-amd64"}, "EM_X86_64"},
		{[]string{".aarch64", "-arm64"}, "EM_AARCH64"},
		{[]string{".s390x", "-s390x"}, "EM_S390"},
		{[]string{".ppc64le", "-powerpc64le", "-ppc64el"}, "EM_PPC64"},
	} {
		for _, s := range a.suffixes {
			if strings.HasSuffix(r, s) {
				return a.machine
			}
		}
	}
	return ""
}

func checkSignature(sig *Signature, certs []*x509.Certificate) *SignatureReport {
	if sig == nil {
		return &SignatureReport{}
	}
	sr := &SignatureReport{Signed: true, Signer: sig.Signer(), Issuer: sig.Issuer, Serial: sig.Serial, KeyID: sig.KeyID,
		Hash: sig.Hash, Algorithm: sig.Algorithm, Problem: sig.Problem}
	if sig.Problem != "" || len(certs) == 0 {
		return sr
	}
	cert, err := sig.Verify(certs)
	if cert != nil {
		sr.Signer = cert.Subject.String()
	}
	switch {
	case err == nil:
		sr.Verified = true
	case errors.Is(err, ErrUntrustedSigner):
		sr.Problem = fmt.Sprintf("signed by %s, a key none of the %d trusted certificates holds (a Secure Boot node refuses it)", sig.Signer(), len(certs))
	default:
		sr.Problem = err.Error() + " (a Secure Boot node refuses it)"
	}
	return sr
}

func dedupe(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}
