package kmod

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// StoredKernel is what dtkbot keeps of one kernel of one DTK image in its
// state, so that the DTK's layer is read once per kernel: the Kernel as
// read (the whole Module.symvers, as later consumers use other symbols)
// and the required files the DTK lacked.
type StoredKernel struct {
	Kernel  *Kernel  `json:"kernel"`
	Missing []string `json:"missing,omitempty"`
}

// maxStoredKernel bounds a decoded StoredKernel (RHEL 9's Module.symvers is
// 30,000 symbols: a few MB as JSON).
const maxStoredKernel = 64 << 20

// Encode is s as the state keeps it: JSON, zstd-compressed (about a tenth
// of the JSON).
func (s StoredKernel) Encode() ([]byte, error) {
	data, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil), nil
}

// DecodeStoredKernel reads what Encode wrote.
func DecodeStoredKernel(data []byte) (StoredKernel, error) {
	var s StoredKernel
	dec, err := zstd.NewReader(bytes.NewReader(data), zstd.WithDecoderMaxMemory(maxStoredKernel))
	if err != nil {
		return s, err
	}
	defer dec.Close()
	raw, err := io.ReadAll(io.LimitReader(dec, maxStoredKernel))
	if err != nil {
		return s, fmt.Errorf("stored kernel: %w", err)
	}
	if err := json.Unmarshal(raw, &s); err != nil || s.Kernel == nil {
		return s, fmt.Errorf("stored kernel: not one (%v)", err)
	}
	return s, nil
}

// KernelImports are the symbols, with their versions (CRCs), that the
// modules of img take from the kernel, by module name: each module's
// __versions but the symbols another module of the image exports. They
// are what decides whether the modules load on another kernel
// (CompareImports).
func KernelImports(img *Image) map[string]map[string]uint32 {
	own := map[string]bool{}
	for _, m := range img.Modules {
		for _, e := range m.Exports {
			own[e.Name] = true
		}
	}
	out := map[string]map[string]uint32{}
	for _, m := range img.Modules {
		imp := map[string]uint32{}
		for _, v := range m.Versions {
			if !own[v.Name] {
				imp[v.Name] = uint32(v.CRC)
			}
		}
		out[m.Name()] = imp
	}
	return out
}

// ABIChange is how a symbol a module imports fares on another kernel.
type ABIChange struct {
	Symbol string
	// Gone: the kernel does not export it; else its CRC differs.
	Gone bool
}

// CompareImports says which of imports (symbol → CRC, as KernelImports
// gives them) the kernel k would refuse: those whose CRC differs from
// k's Module.symvers ("disagrees about version of symbol"), and those k
// does not export; sorted by symbol. Nil: the modules' symbol versions
// all match. k.Symvers must be known.
func CompareImports(imports map[string]uint32, k *Kernel) []ABIChange {
	var out []ABIChange
	for sym, crc := range imports {
		s, ok := k.Symvers[sym]
		switch {
		case !ok:
			out = append(out, ABIChange{Symbol: sym, Gone: true})
		case s.CRC != crc:
			out = append(out, ABIChange{Symbol: sym})
		}
	}
	slices.SortFunc(out, func(a, b ABIChange) int { return strings.Compare(a.Symbol, b.Symbol) })
	return out
}
