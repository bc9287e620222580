package kmod

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"

	"github.com/ulikunitz/xz/lzma"

	"github.com/dtkbot/dtkbot/imageread/layer"
)

// MaxXZDictionary is the largest LZMA2 dictionary the xz decoder gives a
// block (64 MiB, what `xz -9` asks for; kbuild compresses modules with a
// 1 MiB one: scripts/Makefile.modinst). A block gets the smallest of this,
// what its header asks for and what the index says it holds: a dictionary
// larger than the content is never used, so a header asking for 4 GiB
// costs what the content does.
const MaxXZDictionary = 64 << 20

// xz stream layout ("The .xz File Format", version 1.2.0, sections 2 to 6:
// https://tukaani.org/xz/xz-file-format.txt).
var (
	xzHeaderMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	xzFooterMagic = []byte{'Y', 'Z'}
)

const (
	xzStreamHeaderLen = 12
	xzStreamFooterLen = 12
	xzLZMA2Filter     = 0x21
)

// xzIndexRecord is one record of an xz index: what one block holds.
type xzIndexRecord struct{ unpadded, uncompressed int64 }

// decompressXZ decodes data, one xz stream as xz writes one file, into at
// most max bytes.
//
// The container is read here, block by block as the stream holds them,
// and each block's LZMA2 data is decoded by github.com/ulikunitz/xz/lzma
// with a dictionary no larger than MaxXZDictionary and what the block
// holds. ulikunitz/xz's own xz reader allocates whatever each block header
// asks for (up to 4 GiB each; its ReaderConfig.DictCap is a floor, not a
// ceiling, in v0.5.17), and checking the block headers the index lists
// misses the blocks it does not list: the decoder reads those. The other
// pure-Go decoders with a dictionary limit (xi2/xz and its forks) are no
// longer maintained, so the container, a simple and fully specified
// format, is ours, and the LZMA2 decoding stays ulikunitz/xz's.
//
// The index, read first from the footer, bounds the content: its total
// must be at most max, the output is allocated once at that size, and each
// block must hold what its record says, its check matching. Nothing after
// the stream is accepted (one file, one stream).
func decompressXZ(data []byte, max int64) ([]byte, error) {
	checkSize, newCheck, records, indexStart, err := readXZFrame(data, max)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, r := range records {
		total += r.uncompressed
	}
	out := make([]byte, 0, total)
	off := int64(xzStreamHeaderLen)
	for i, rec := range records {
		n, err := decodeXZBlock(data[off:indexStart], rec, checkSize, newCheck, &out)
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", i, err)
		}
		off += n
	}
	if off != indexStart {
		return nil, fmt.Errorf("index: lists %d blocks, the stream holds more", len(records))
	}
	return out, nil
}

// readXZFrame reads the stream header and footer and the index, and
// returns the size of each block's check and its hash, the index's
// records and where the index starts. The records' content must fit max.
func readXZFrame(data []byte, max int64) (checkSize int, newCheck func() hash.Hash, records []xzIndexRecord, indexStart int64, err error) {
	if len(data) < xzStreamHeaderLen+xzStreamFooterLen || !bytes.Equal(data[:6], xzHeaderMagic) {
		return 0, nil, nil, 0, errors.New("not an xz stream")
	}
	flags := data[6:8]
	if binary.LittleEndian.Uint32(data[8:12]) != crc32.ChecksumIEEE(flags) {
		return 0, nil, nil, 0, errors.New("stream header: CRC32 mismatch")
	}
	if flags[0] != 0 || flags[1]&0xf0 != 0 {
		return 0, nil, nil, 0, errors.New("stream header: reserved flags set")
	}
	checkSize, newCheck, err = xzCheck(flags[1])
	if err != nil {
		return 0, nil, nil, 0, fmt.Errorf("stream header: %w", err)
	}
	footer := data[len(data)-xzStreamFooterLen:]
	switch {
	case !bytes.Equal(footer[10:], xzFooterMagic):
		return 0, nil, nil, 0, errors.New("stream footer: not at the end (data after the stream, or more than one stream)")
	case binary.LittleEndian.Uint32(footer[:4]) != crc32.ChecksumIEEE(footer[4:10]):
		return 0, nil, nil, 0, errors.New("stream footer: CRC32 mismatch")
	case !bytes.Equal(footer[8:10], flags):
		return 0, nil, nil, 0, errors.New("stream footer: flags differ from the header's")
	}
	indexSize := (int64(binary.LittleEndian.Uint32(footer[4:8])) + 1) * 4
	indexStart = int64(len(data)) - xzStreamFooterLen - indexSize
	if indexStart < xzStreamHeaderLen {
		return 0, nil, nil, 0, errors.New("index: larger than the stream")
	}
	records, err = readXZIndex(data[indexStart:len(data)-xzStreamFooterLen], max)
	if err != nil {
		return 0, nil, nil, 0, fmt.Errorf("index: %w", err)
	}
	return checkSize, newCheck, records, indexStart, nil
}

// readXZIndex reads an index (section 4): its records, their content at
// most max bytes in all.
func readXZIndex(index []byte, max int64) ([]xzIndexRecord, error) {
	body, sum := index[:len(index)-4], index[len(index)-4:]
	if binary.LittleEndian.Uint32(sum) != crc32.ChecksumIEEE(body) {
		return nil, errors.New("CRC32 mismatch")
	}
	if body[0] != 0 {
		return nil, errors.New("no index indicator")
	}
	rd := &xzVarints{b: body[1:]}
	n, err := rd.next()
	if err != nil {
		return nil, fmt.Errorf("number of records: %w", err)
	}
	if n > uint64(len(body))/2 {
		return nil, fmt.Errorf("%d records in %d bytes", n, len(body))
	}
	records := make([]xzIndexRecord, 0, n)
	var total int64
	for i := uint64(0); i < n; i++ {
		unpadded, err := rd.next()
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		size, err := rd.next()
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		if unpadded == 0 {
			return nil, fmt.Errorf("record %d: unpadded size 0", i)
		}
		if size > uint64(max) || total+int64(size) > max {
			return nil, fmt.Errorf("more than %d bytes of content: %w", max, layer.ErrLimit)
		}
		total += int64(size)
		records = append(records, xzIndexRecord{int64(unpadded), int64(size)})
	}
	for _, b := range rd.b {
		if b != 0 {
			return nil, errors.New("non-zero padding")
		}
	}
	if len(rd.b) > 3 {
		return nil, errors.New("data after the records")
	}
	return records, nil
}

// decodeXZBlock decodes the block at the start of b (section 3), which
// the index says is rec, appending its content to out, and returns the
// block's length, padding and check included.
func decodeXZBlock(b []byte, rec xzIndexRecord, checkSize int, newCheck func() hash.Hash, out *[]byte) (int64, error) {
	if len(b) == 0 || b[0] == 0 {
		return 0, errors.New("index: lists more blocks than the stream holds")
	}
	hdrSize := (int64(b[0]) + 1) * 4
	if hdrSize > int64(len(b)) {
		return 0, errors.New("block header: past the end of the blocks")
	}
	compressedSize, uncompressedSize, dict, err := readXZBlockHeader(b[:hdrSize])
	if err != nil {
		return 0, fmt.Errorf("block header: %w", err)
	}
	if uncompressedSize >= 0 && uncompressedSize != rec.uncompressed {
		return 0, fmt.Errorf("block header says %d bytes of content, the index %d", uncompressedSize, rec.uncompressed)
	}
	// The dictionary: what the header asks, at most what the block holds
	// (never less than the decoder's minimum) and MaxXZDictionary.
	dict = min(dict, MaxXZDictionary, int64(max(rec.uncompressed, lzma.MinDictCap)))
	rest := b[hdrSize:]
	if compressedSize >= 0 {
		if compressedSize > int64(len(rest)) {
			return 0, errors.New("compressed size past the end of the blocks")
		}
		rest = rest[:compressedSize]
	}
	src := bytes.NewReader(rest)
	r2, err := lzma.Reader2Config{DictCap: int(dict)}.NewReader2(src)
	if err != nil {
		return 0, fmt.Errorf("LZMA2: %w", err)
	}
	start := len(*out)
	content := (*out)[start : start+int(rec.uncompressed)]
	if _, err := io.ReadFull(r2, content); err != nil {
		return 0, fmt.Errorf("LZMA2: %w (the index says %d bytes)", err, rec.uncompressed)
	}
	if n, err := r2.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		return 0, fmt.Errorf("LZMA2: more than the %d bytes the index says, or no end marker (%v)", rec.uncompressed, err)
	}
	*out = (*out)[:start+int(rec.uncompressed)]
	compressed := int64(len(rest) - src.Len())
	if compressedSize >= 0 && compressed != compressedSize {
		return 0, fmt.Errorf("%d bytes of LZMA2 data, the header says %d", compressed, compressedSize)
	}
	if unpadded := hdrSize + compressed + int64(checkSize); unpadded != rec.unpadded {
		return 0, fmt.Errorf("index: the block is %d bytes unpadded, the index says %d", unpadded, rec.unpadded)
	}
	pad := (4 - (hdrSize+compressed)%4) % 4
	end := hdrSize + compressed + pad + int64(checkSize)
	if end > int64(len(b)) {
		return 0, errors.New("check: past the end of the blocks")
	}
	for _, c := range b[hdrSize+compressed : hdrSize+compressed+pad] {
		if c != 0 {
			return 0, errors.New("non-zero block padding")
		}
	}
	if checkSize > 0 {
		h := newCheck()
		h.Write(content)
		if !bytes.Equal(xzCheckBytes(h), b[end-int64(checkSize):end]) {
			return 0, errors.New("check: the content does not match its check")
		}
	}
	return end, nil
}

// readXZBlockHeader reads a block header (section 3.1): the sizes it
// declares (-1 when it does not) and the dictionary its one filter, LZMA2,
// asks for. Other filters (BCJ, delta) are refused, as ulikunitz/xz
// refuses them: kbuild and RHEL's xz do not use them for modules.
func readXZBlockHeader(h []byte) (compressed, uncompressed, dict int64, err error) {
	if binary.LittleEndian.Uint32(h[len(h)-4:]) != crc32.ChecksumIEEE(h[:len(h)-4]) {
		return 0, 0, 0, errors.New("CRC32 mismatch")
	}
	flags := h[1]
	if flags&0x3c != 0 {
		return 0, 0, 0, errors.New("reserved flags set")
	}
	if flags&0x03 != 0 {
		return 0, 0, 0, fmt.Errorf("%d filters: only LZMA2 alone is supported", flags&0x03+1)
	}
	rd := &xzVarints{b: h[2 : len(h)-4]}
	compressed, uncompressed = -1, -1
	if flags&0x40 != 0 {
		v, err := rd.next()
		if err != nil || v == 0 || v > 1<<62 {
			return 0, 0, 0, fmt.Errorf("compressed size: %d %v", v, err)
		}
		compressed = int64(v)
	}
	if flags&0x80 != 0 {
		v, err := rd.next()
		if err != nil || v > 1<<62 {
			return 0, 0, 0, fmt.Errorf("uncompressed size: %d %v", v, err)
		}
		uncompressed = int64(v)
	}
	id, err := rd.next()
	if err != nil || id != xzLZMA2Filter {
		return 0, 0, 0, fmt.Errorf("filter %#x: only LZMA2 (0x21) is supported", id)
	}
	if n, err := rd.next(); err != nil || n != 1 || len(rd.b) < 1 {
		return 0, 0, 0, errors.New("LZMA2 properties: want one byte")
	}
	p := rd.b[0]
	if p&0xc0 != 0 || p > 40 {
		return 0, 0, 0, fmt.Errorf("LZMA2 dictionary property %d", p)
	}
	for _, c := range rd.b[1:] {
		if c != 0 {
			return 0, 0, 0, errors.New("non-zero header padding")
		}
	}
	return compressed, uncompressed, lzma2Dictionary(p), nil
}

// xzCheck is the size and the hash of a check type (section 3.4); the
// four that xz writes are supported, as ulikunitz/xz supports them.
func xzCheck(id byte) (int, func() hash.Hash, error) {
	switch id {
	case 0x00:
		return 0, nil, nil
	case 0x01:
		return 4, func() hash.Hash { return crc32.NewIEEE() }, nil
	case 0x04:
		return 8, func() hash.Hash { return crc64.New(crc64.MakeTable(crc64.ECMA)) }, nil
	case 0x0a:
		return 32, sha256.New, nil
	}
	return 0, nil, fmt.Errorf("check type %#x is not supported", id)
}

// xzCheckBytes is a check as the stream stores it: CRC32 and CRC64
// little-endian, SHA-256 as it is.
func xzCheckBytes(h hash.Hash) []byte {
	sum := h.Sum(nil)
	if len(sum) <= 8 {
		for i, j := 0, len(sum)-1; i < j; i, j = i+1, j-1 {
			sum[i], sum[j] = sum[j], sum[i]
		}
	}
	return sum
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
