package kmod

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/dtkbot/dtkbot/releaseinfo"
)

// MaxXZDictionary bounds the LZMA2 dictionary an xz module may ask its
// decoder for (64 MiB, what `xz -9` uses; kbuild compresses modules with a
// 1 MiB one: scripts/Makefile.modinst). github.com/ulikunitz/xz allocates
// whatever a block header asks for, up to 4 GiB, so every block header is
// read first (checkXZ).
const MaxXZDictionary = 64 << 20

// Decompress returns a module file's content: data itself when
// compression is CompressionNone, else data decompressed, at most max
// bytes (more is an error wrapping releaseinfo.ErrLimit, a decompression
// bomb). The content must be what the name says it is.
func Decompress(data []byte, compression string, max int64) ([]byte, error) {
	var r io.Reader
	switch compression {
	case CompressionNone:
		if int64(len(data)) > max {
			return nil, fmt.Errorf("%d bytes: %w of %d", len(data), releaseinfo.ErrLimit, max)
		}
		return data, nil
	case CompressionXZ:
		if err := checkXZ(data, max); err != nil {
			return nil, fmt.Errorf("reading xz: %w", err)
		}
		xr, err := xz.ReaderConfig{SingleStream: true}.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("reading xz: %w", err)
		}
		r = xr
	case CompressionZstd:
		if !releaseinfo.IsZstd(data) {
			return nil, errors.New("reading zstd: not a zstd stream")
		}
		zr, err := releaseinfo.NewZstdReader(bytes.NewReader(data), max)
		if err != nil {
			return nil, fmt.Errorf("reading zstd: %w", err)
		}
		defer zr.Close()
		r = zr
	case CompressionGzip:
		gr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("reading gzip: %w", err)
		}
		defer gr.Close()
		r = gr
	default:
		return nil, fmt.Errorf("unknown compression %q", compression)
	}
	out, err := io.ReadAll(io.LimitReader(r, max+1))
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
		return nil, fmt.Errorf("decompressing %s: more than %d bytes: %w (a decompression bomb?): %v", compression, max, releaseinfo.ErrLimit, err)
	}
	if err != nil {
		return nil, fmt.Errorf("decompressing %s: %w", compression, err)
	}
	if int64(len(out)) > max {
		return nil, fmt.Errorf("decompressing %s: more than %d bytes: %w (a decompression bomb?)", compression, max, releaseinfo.ErrLimit)
	}
	return out, nil
}

// xz stream layout (The .xz File Format, version 1.1.0, sections 2 and 3:
// https://tukaani.org/xz/xz-file-format.txt).
var (
	xzHeaderMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	xzFooterMagic = []byte{'Y', 'Z'}
)

const (
	xzLZMA2Filter = 0x21
	xzMaxFilters  = 4
)

// checkXZ reads an xz stream's footer, index and every block header
// without decompressing anything, and refuses what would make the decoder
// allocate too much: an LZMA2 dictionary over MaxXZDictionary, or more
// than max bytes of content by the index. Only a single stream (what xz
// writes for one file) is accepted.
func checkXZ(data []byte, max int64) error {
	if len(data) < 24 || !bytes.Equal(data[:6], xzHeaderMagic) {
		return errors.New("not an xz stream")
	}
	footer := data[len(data)-12:]
	if !bytes.Equal(footer[10:], xzFooterMagic) {
		return errors.New("no xz stream footer at the end (trailing data, or more than one stream)")
	}
	if !bytes.Equal(footer[8:10], data[6:8]) {
		return errors.New("xz stream header and footer disagree")
	}
	backward := (int64(binary.LittleEndian.Uint32(footer[4:8])) + 1) * 4
	indexStart := int64(len(data)) - 12 - backward
	if indexStart < 12 {
		return errors.New("xz index out of bounds")
	}
	index := data[indexStart : len(data)-12]
	if index[0] != 0 {
		return errors.New("xz index indicator missing")
	}
	rd := &xzVarints{b: index[1:]}
	records, err := rd.next()
	if err != nil {
		return fmt.Errorf("xz index: %w", err)
	}
	if records > uint64(len(index)) {
		return errors.New("xz index: more records than bytes")
	}
	off := int64(12)
	var total uint64
	for i := uint64(0); i < records; i++ {
		unpadded, err := rd.next()
		if err != nil {
			return fmt.Errorf("xz index record %d: %w", i, err)
		}
		size, err := rd.next()
		if err != nil {
			return fmt.Errorf("xz index record %d: %w", i, err)
		}
		total += size
		if total > uint64(max) {
			return fmt.Errorf("xz index: more than %d bytes of content: %w", max, releaseinfo.ErrLimit)
		}
		if unpadded > uint64(indexStart) {
			return fmt.Errorf("xz block %d: size out of bounds", i)
		}
		if err := checkXZBlockHeader(data[off:indexStart]); err != nil {
			return fmt.Errorf("xz block %d: %w", i, err)
		}
		off += (int64(unpadded) + 3) &^ 3
		if off > indexStart {
			return fmt.Errorf("xz block %d: runs past the index", i)
		}
	}
	if off != indexStart {
		return errors.New("xz index does not account for every block")
	}
	return nil
}

// checkXZBlockHeader reads one block header (section 3.1) and checks the
// dictionary of its LZMA2 filter.
func checkXZBlockHeader(b []byte) error {
	if len(b) < 2 || b[0] == 0 {
		return errors.New("no block header")
	}
	size := (int(b[0]) + 1) * 4
	if size > len(b) {
		return errors.New("block header out of bounds")
	}
	flags := b[1]
	if flags&0x3c != 0 {
		return errors.New("reserved block flags set")
	}
	rd := &xzVarints{b: b[2 : size-4]}
	if flags&0x40 != 0 {
		if _, err := rd.next(); err != nil {
			return fmt.Errorf("compressed size: %w", err)
		}
	}
	if flags&0x80 != 0 {
		if _, err := rd.next(); err != nil {
			return fmt.Errorf("uncompressed size: %w", err)
		}
	}
	filters := int(flags&0x03) + 1
	if filters > xzMaxFilters {
		return errors.New("too many filters")
	}
	lzma2 := false
	for i := 0; i < filters; i++ {
		id, err := rd.next()
		if err != nil {
			return fmt.Errorf("filter %d: %w", i, err)
		}
		n, err := rd.next()
		if err != nil {
			return fmt.Errorf("filter %d: %w", i, err)
		}
		if n > uint64(len(rd.b)) {
			return fmt.Errorf("filter %d: properties out of bounds", i)
		}
		props := rd.b[:n]
		rd.b = rd.b[n:]
		if id != xzLZMA2Filter {
			continue
		}
		if len(props) != 1 || props[0]&0x3f > 40 {
			return errors.New("bad LZMA2 properties")
		}
		if dict := lzma2Dictionary(props[0]); dict > MaxXZDictionary {
			return fmt.Errorf("LZMA2 dictionary of %d bytes: %w of %d", dict, releaseinfo.ErrLimit, MaxXZDictionary)
		}
		lzma2 = true
	}
	if !lzma2 {
		return errors.New("no LZMA2 filter")
	}
	return nil
}

// lzma2Dictionary decodes the dictionary size of LZMA2's one property byte
// (section 5.3.1).
func lzma2Dictionary(p byte) int64 {
	bits := int64(p & 0x3f)
	if bits == 40 {
		return 1<<32 - 1
	}
	return (2 | (bits & 1)) << (bits/2 + 11)
}

// xzVarints reads xz's multibyte integers (section 1.2).
type xzVarints struct{ b []byte }

func (r *xzVarints) next() (uint64, error) {
	var v uint64
	for i := 0; i < 9; i++ {
		if i >= len(r.b) {
			return 0, errors.New("truncated integer")
		}
		c := r.b[i]
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return 0, errors.New("integer not minimally encoded")
			}
			r.b = r.b[i+1:]
			return v, nil
		}
	}
	return 0, errors.New("integer longer than 9 bytes")
}
