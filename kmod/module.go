package kmod

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Module is what a kernel module says about itself: its .modinfo, the
// symbol versions it was built against, what it exports and needs, and its
// signature.
type Module struct {
	// Path is where the module is (in the image, or a file name); Layer is
	// the index of the image layer it came from (-1 when not from an image).
	Path        string `json:"path"`
	Layer       int    `json:"layer"`
	Compression string `json:"compression,omitempty"`
	// Size is the module's size, decompressed, signature included.
	Size int64   `json:"size"`
	Info ModInfo `json:"modinfo"`
	// Machine is the ELF machine (EM_X86_64, ...); BigEndian the ELF data
	// encoding.
	Machine   string `json:"machine"`
	BigEndian bool   `json:"big_endian,omitempty"`
	// Versions is the __versions section: the CRC of every symbol the
	// module uses, as the kernel it was built against had it.
	Versions []SymbolVersion `json:"versions,omitempty"`
	// Exports are the symbols the module exports (EXPORT_SYMBOL), with
	// their CRCs where it carries them.
	Exports []ExportedSymbol `json:"exports,omitempty"`
	// Undefined are the symbols the module needs from the kernel or other
	// modules (undefined global symbols of its symbol table), sorted.
	Undefined []string `json:"undefined,omitempty"`
	// Signature is the appended signature; nil when the module is unsigned.
	Signature *Signature `json:"signature,omitempty"`
}

// Name is the module's name: .modinfo's name=, else its file name's.
func (m *Module) Name() string {
	if m.Info.Name != "" {
		return NormalizeName(m.Info.Name)
	}
	return ModuleName(m.Path)
}

// ModInfo is a module's .modinfo section: NUL-terminated key=value strings
// (include/linux/moduleparam.h, __MODULE_INFO).
type ModInfo struct {
	Name       string   `json:"name,omitempty"`
	Vermagic   string   `json:"vermagic,omitempty"`
	License    string   `json:"license,omitempty"`
	SrcVersion string   `json:"srcversion,omitempty"`
	Version    string   `json:"version,omitempty"`
	Depends    []string `json:"depends,omitempty"`
	ImportNS   []string `json:"import_ns,omitempty"`
	// Fields is every key=value in order (keys may repeat: alias, parm).
	Fields []string `json:"-"`
}

// SymbolVersion is one entry of __versions.
type SymbolVersion struct {
	Name string `json:"name"`
	CRC  uint64 `json:"crc"`
}

// ExportedSymbol is a symbol a module exports.
type ExportedSymbol struct {
	Name    string `json:"name"`
	CRC     uint32 `json:"crc,omitempty"`
	HasCRC  bool   `json:"has_crc,omitempty"`
	GPLOnly bool   `json:"gpl_only,omitempty"`
}

// maxModinfoFields bounds what one .modinfo may hold (a real module has a
// few dozen; a driver with many aliases a few thousand).
const maxModinfoFields = 100000

// ParseModule parses a module's content (decompressed): the appended
// signature is split off first, as the kernel does before it reads the
// ELF (kernel/module/signing.c, module_sig_check), and the digest the
// signature covers is taken then. path only names the module in errors
// and results.
func ParseModule(path string, data []byte) (*Module, error) {
	m := &Module{Path: path, Layer: -1, Size: int64(len(data))}
	elfBytes, sig, err := SplitSignature(data)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	m.Signature = sig
	f, err := elf.NewFile(bytes.NewReader(elfBytes))
	if err != nil {
		return nil, fmt.Errorf("module %s: reading ELF: %w", path, err)
	}
	defer f.Close()
	if f.Type != elf.ET_REL {
		return nil, fmt.Errorf("module %s: ELF type %s, want a relocatable object (ET_REL)", path, f.Type)
	}
	m.Machine = f.Machine.String()
	m.BigEndian = f.ByteOrder == binary.BigEndian
	info := f.Section(".modinfo")
	if info == nil {
		return nil, fmt.Errorf("module %s: no .modinfo section (is it a kernel module?)", path)
	}
	raw, err := sectionData(info)
	if err != nil {
		return nil, fmt.Errorf("module %s: reading .modinfo: %w", path, err)
	}
	if m.Info, err = ParseModInfo(raw); err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	if vers := f.Section("__versions"); vers != nil {
		raw, err := sectionData(vers)
		if err != nil {
			return nil, fmt.Errorf("module %s: reading __versions: %w", path, err)
		}
		if m.Versions, err = ParseVersions(raw, f.Class == elf.ELFCLASS64, f.ByteOrder); err != nil {
			return nil, fmt.Errorf("module %s: %w", path, err)
		}
	}
	if err := readSymbols(f, m); err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	return m, nil
}

// sectionData reads a section that occupies file bytes. A compressed one
// (SHF_COMPRESSED) is refused: the kernel loads sections as they are, and
// debug/elf would inflate it to whatever size its header claims.
func sectionData(s *elf.Section) ([]byte, error) {
	if s.Type == elf.SHT_NOBITS {
		return nil, fmt.Errorf("section %s has no content", s.Name)
	}
	if s.Flags&elf.SHF_COMPRESSED != 0 {
		return nil, fmt.Errorf("section %s is compressed", s.Name)
	}
	return s.Data()
}

// ParseModInfo parses a .modinfo section.
func ParseModInfo(raw []byte) (ModInfo, error) {
	var mi ModInfo
	for _, field := range bytes.Split(raw, []byte{0}) {
		if len(field) == 0 {
			continue // alignment padding between entries
		}
		if len(mi.Fields) >= maxModinfoFields {
			return mi, fmt.Errorf(".modinfo has more than %d fields", maxModinfoFields)
		}
		key, value, ok := strings.Cut(string(field), "=")
		if !ok {
			return mi, fmt.Errorf(".modinfo field %.40q is not key=value", field)
		}
		mi.Fields = append(mi.Fields, string(field))
		switch key {
		case "name":
			mi.Name = value
		case "vermagic":
			mi.Vermagic = value
		case "license":
			mi.License = value
		case "srcversion":
			mi.SrcVersion = value
		case "version":
			mi.Version = value
		case "depends":
			for _, d := range strings.Split(value, ",") {
				if d = strings.TrimSpace(d); d != "" && !slices.Contains(mi.Depends, d) {
					mi.Depends = append(mi.Depends, d)
				}
			}
		case "import_ns":
			mi.ImportNS = append(mi.ImportNS, value)
		}
	}
	return mi, nil
}

// ModuleNameLen is MODULE_NAME_LEN's room for a symbol name in an entry of
// __versions on 64-bit kernels: struct modversion_info is
// { unsigned long crc; char name[MODULE_NAME_LEN]; } with MODULE_NAME_LEN
// (64 - sizeof(unsigned long)) (include/linux/module.h; scripts/mod/modpost.c
// writes the section, kernel/module/version.c check_version reads it), so an
// entry is 64 bytes on 32-bit and 64-bit kernels alike.
const versionEntrySize = 64

// ParseVersions parses a __versions section: entries of an unsigned long
// CRC (8 bytes on 64-bit, 4 on 32-bit, in the ELF's byte order) and a
// NUL-terminated name filling the rest of 64 bytes.
func ParseVersions(raw []byte, is64 bool, order binary.ByteOrder) ([]SymbolVersion, error) {
	if len(raw)%versionEntrySize != 0 {
		return nil, fmt.Errorf("__versions is %d bytes, not a whole number of %d-byte entries", len(raw), versionEntrySize)
	}
	crcSize := 4
	if is64 {
		crcSize = 8
	}
	out := make([]SymbolVersion, 0, len(raw)/versionEntrySize)
	for off := 0; off < len(raw); off += versionEntrySize {
		e := raw[off : off+versionEntrySize]
		var crc uint64
		if is64 {
			crc = order.Uint64(e[:8])
		} else {
			crc = uint64(order.Uint32(e[:4]))
		}
		name := e[crcSize:]
		end := bytes.IndexByte(name, 0)
		if end <= 0 {
			return nil, fmt.Errorf("__versions entry %d has no NUL-terminated name", off/versionEntrySize)
		}
		out = append(out, SymbolVersion{Name: string(name[:end]), CRC: crc})
	}
	return out, nil
}

// readSymbols fills Exports and Undefined from the symbol table. An
// exported symbol has a __ksymtab_<name> symbol (in __ksymtab, or
// __ksymtab_gpl for EXPORT_SYMBOL_GPL) and, with modversions, a
// __crc_<name> symbol: at an offset of a __kcrctab section, or absolute on
// older kernels (include/linux/export-internal.h, include/linux/export.h).
func readSymbols(f *elf.File, m *Module) error {
	for _, s := range f.Sections {
		if (s.Type == elf.SHT_SYMTAB || s.Type == elf.SHT_STRTAB || strings.HasPrefix(s.Name, "__kcrctab")) && s.Flags&elf.SHF_COMPRESSED != 0 {
			return fmt.Errorf("section %s is compressed", s.Name)
		}
	}
	syms, err := f.Symbols()
	if errors.Is(err, elf.ErrNoSymbols) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the symbol table: %w", err)
	}
	exports := map[string]*ExportedSymbol{}
	crcs := map[string]uint32{}
	undefined := map[string]bool{}
	for _, s := range syms {
		switch {
		case s.Section == elf.SHN_UNDEF:
			if s.Name != "" && elf.ST_BIND(s.Info) == elf.STB_GLOBAL {
				undefined[s.Name] = true
			}
		case strings.HasPrefix(s.Name, "__ksymtab_") && !strings.HasPrefix(s.Name, "__ksymtab_strings"):
			name := strings.TrimPrefix(s.Name, "__ksymtab_")
			e := exports[name]
			if e == nil {
				e = &ExportedSymbol{Name: name}
				exports[name] = e
			}
			if int(s.Section) < len(f.Sections) && strings.HasSuffix(f.Sections[s.Section].Name, "_gpl") {
				e.GPLOnly = true
			}
		case strings.HasPrefix(s.Name, "__crc_"):
			if crc, ok := symbolCRC(f, s); ok {
				crcs[strings.TrimPrefix(s.Name, "__crc_")] = crc
			}
		}
	}
	for name, e := range exports {
		if crc, ok := crcs[name]; ok {
			e.CRC, e.HasCRC = crc, true
		}
		m.Exports = append(m.Exports, *e)
	}
	slices.SortFunc(m.Exports, func(a, b ExportedSymbol) int { return strings.Compare(a.Name, b.Name) })
	for name := range undefined {
		m.Undefined = append(m.Undefined, name)
	}
	slices.Sort(m.Undefined)
	return nil
}

// symbolCRC reads the CRC a __crc_ symbol stands for.
func symbolCRC(f *elf.File, s elf.Symbol) (uint32, bool) {
	if s.Section == elf.SHN_ABS {
		return uint32(s.Value), true
	}
	if s.Section >= elf.SHN_LORESERVE || int(s.Section) >= len(f.Sections) {
		return 0, false
	}
	sec := f.Sections[s.Section]
	if sec.Type == elf.SHT_NOBITS || s.Value > sec.Size || sec.Size-s.Value < 4 {
		return 0, false
	}
	buf := make([]byte, 4)
	if _, err := sec.ReadAt(buf, int64(s.Value)); err != nil {
		return 0, false
	}
	return f.ByteOrder.Uint32(buf), true
}
