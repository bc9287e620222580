package kmod

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Kernel is what checking modules against one kernel needs of it. A nil
// Symvers means the kernel's symbol versions are unknown (its ABI is not
// checked); a nil Modules that its list of modules is unknown.
type Kernel struct {
	// Release is the kernel's `uname -r`.
	Release string `json:"release"`
	// RT says it is a PREEMPT_RT kernel (its vermagic says preempt_rt).
	RT bool `json:"rt,omitempty"`
	// Vermagic is the kernel's own vermagic, as its modules carry it; empty
	// when unknown (then its flags are inferred: see Check).
	Vermagic string `json:"vermagic,omitempty"`
	// Symvers is Module.symvers by symbol: what vmlinux and the kernel's
	// modules export.
	Symvers map[string]Symbol `json:"symvers,omitempty"`
	// Modules are the kernel's modules (modules.dep) and built-in modules
	// (modules.builtin) by name, with their path ("(built-in)" for those).
	Modules map[string]string `json:"modules,omitempty"`
	// Sources says where each of the above came from, for reports.
	Sources []string `json:"sources,omitempty"`
}

// Symbol is one exported symbol of Module.symvers.
type Symbol struct {
	CRC       uint32 `json:"crc"`
	Module    string `json:"module"` // vmlinux, or the exporting module's path without .ko (lib/crc-itu-t)
	GPLOnly   bool   `json:"gpl_only,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

// BuiltIn is the path Kernel.Modules gives a built-in module.
const BuiltIn = "(built-in)"

// maxKernelLines bounds the lines of a kernel file (RHEL 9's Module.symvers
// has about 30,000, modules.dep about 6,000).
const maxKernelLines = 1 << 20

// ParseSymvers parses a Module.symvers as scripts/mod/modpost.c writes it
// (write_dump): one line per exported symbol,
// "0xCRC\tsymbol\tmodule\tEXPORT_SYMBOL[_GPL]\tnamespace" since Linux 5.10;
// "0xCRC\tsymbol\tmodule\texport" before 5.4 (RHEL 8); and
// "0xCRC\tsymbol\tnamespace\tmodule\texport" in between.
func ParseSymvers(data []byte) (map[string]Symbol, error) {
	out := map[string]Symbol{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for line := 1; sc.Scan(); line++ {
		if line > maxKernelLines {
			return nil, fmt.Errorf("Module.symvers: more than %d lines", maxKernelLines)
		}
		text := strings.TrimRight(sc.Text(), "\r")
		if text == "" {
			continue
		}
		f := strings.Split(text, "\t")
		if len(f) < 4 || len(f) > 5 {
			return nil, fmt.Errorf("Module.symvers line %d: %d fields, want 4 or 5", line, len(f))
		}
		crc, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(f[0], "0x"), "0X"), 16, 32)
		if err != nil || !strings.HasPrefix(strings.ToLower(f[0]), "0x") {
			return nil, fmt.Errorf("Module.symvers line %d: CRC %.20q is not 0x and 32-bit hex", line, f[0])
		}
		s := Symbol{CRC: uint32(crc)}
		name, export := f[1], ""
		switch {
		case len(f) == 4:
			s.Module, export = f[2], f[3]
		case strings.HasPrefix(f[3], "EXPORT_"):
			s.Module, export, s.Namespace = f[2], f[3], f[4]
		default:
			s.Namespace, s.Module, export = f[2], f[3], f[4]
		}
		if name == "" || s.Module == "" || !strings.HasPrefix(export, "EXPORT_") {
			return nil, fmt.Errorf("Module.symvers line %d: %.80q is not crc, symbol, module, export", line, text)
		}
		s.GPLOnly = strings.Contains(export, "_GPL")
		out[name] = s
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading Module.symvers: %w", err)
	}
	return out, nil
}

// ParseModulesDep parses a modules.dep as depmod writes it: per module
// "path: dependency-path ...", paths relative to /lib/modules/<uname -r>/.
// It returns the modules' names and paths.
func ParseModulesDep(data []byte) (map[string]string, error) {
	out := map[string]string{}
	err := eachLine("modules.dep", data, func(line int, text string) error {
		mod, _, ok := strings.Cut(text, ":")
		if !ok || strings.TrimSpace(mod) == "" {
			return fmt.Errorf("modules.dep line %d: %.80q has no \"module:\"", line, text)
		}
		mod = strings.TrimSpace(mod)
		if _, ok := IsModuleFile(mod); !ok {
			return fmt.Errorf("modules.dep line %d: %.80q is not a module file", line, mod)
		}
		out[ModuleName(mod)] = mod
		return nil
	})
	return out, err
}

// ParseModulesBuiltin parses a modules.builtin (scripts/Makefile.modinst,
// one "kernel/.../name.ko" per built-in module) into module names.
func ParseModulesBuiltin(data []byte) ([]string, error) {
	var out []string
	err := eachLine("modules.builtin", data, func(line int, text string) error {
		text = strings.TrimSpace(text)
		if _, ok := IsModuleFile(text); !ok || strings.ContainsAny(text, " \t") {
			return fmt.Errorf("modules.builtin line %d: %.80q is not a module path", line, text)
		}
		out = append(out, ModuleName(text))
		return nil
	})
	return out, err
}

func eachLine(file string, data []byte, fn func(line int, text string) error) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if line > maxKernelLines {
			return fmt.Errorf("%s: more than %d lines", file, maxKernelLines)
		}
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if err := fn(line, text); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	return nil
}

// ParseVermagic checks a vermagic file: one line, starting with the
// kernel's release.
func ParseVermagic(data []byte, release string) (string, error) {
	v := strings.TrimRight(string(data), "\n")
	if strings.Contains(v, "\n") || len(v) > 512 {
		return "", fmt.Errorf("vermagic: more than one line")
	}
	if first, _, _ := strings.Cut(v, " "); first != release {
		return "", fmt.Errorf("vermagic %q does not start with the kernel's release %s", v, release)
	}
	return v, nil
}

// rtRelease finds RT in a `uname -r`: RHEL 9.4+ "+rt", RHEL 8 and early
// RHEL 9 ".rt" in the release (4.18.0-305.19.1.rt7.91.el8_4.x86_64),
// Debian "-rt-" (6.1.0-57-rt-amd64).
var rtRelease = regexp.MustCompile(`\+rt$|\.rt[0-9]|-rt-|-rt$`)

// IsRTRelease says whether a `uname -r` names a PREEMPT_RT kernel.
func IsRTRelease(release string) bool { return rtRelease.MatchString(release) }

// NewKernel builds a Kernel from the contents of its files: symvers
// (Module.symvers), dep (modules.dep), builtin (modules.builtin) and
// vermagic, each nil when not known. RT is taken from the vermagic when
// known, else from the release's name.
func NewKernel(release string, symvers, dep, builtin, vermagic []byte) (*Kernel, error) {
	k := &Kernel{Release: release, RT: IsRTRelease(release)}
	if symvers != nil {
		s, err := ParseSymvers(symvers)
		if err != nil {
			return nil, fmt.Errorf("kernel %s: %w", release, err)
		}
		k.Symvers = s
		k.Sources = append(k.Sources, fmt.Sprintf("Module.symvers (%d symbols)", len(s)))
	}
	if dep != nil {
		mods, err := ParseModulesDep(dep)
		if err != nil {
			return nil, fmt.Errorf("kernel %s: %w", release, err)
		}
		k.Modules = mods
		k.Sources = append(k.Sources, fmt.Sprintf("modules.dep (%d modules)", len(mods)))
	}
	if builtin != nil {
		names, err := ParseModulesBuiltin(builtin)
		if err != nil {
			return nil, fmt.Errorf("kernel %s: %w", release, err)
		}
		if k.Modules == nil {
			k.Modules = map[string]string{}
		}
		for _, n := range names {
			if _, ok := k.Modules[n]; !ok {
				k.Modules[n] = BuiltIn
			}
		}
		k.Sources = append(k.Sources, fmt.Sprintf("modules.builtin (%d built-in)", len(names)))
	}
	if vermagic != nil {
		v, err := ParseVermagic(vermagic, release)
		if err != nil {
			return nil, fmt.Errorf("kernel %s: %w", release, err)
		}
		k.Vermagic = v
		k.RT = hasFlag(v, "preempt_rt")
		k.Sources = append(k.Sources, "vermagic")
	}
	return k, nil
}

// hasFlag says whether a vermagic has a flag (a word after the release).
func hasFlag(vermagic, flag string) bool {
	f := strings.Fields(vermagic)
	for _, w := range f[min(1, len(f)):] {
		if w == flag {
			return true
		}
	}
	return false
}
