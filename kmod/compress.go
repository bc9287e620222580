package kmod

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/dtkbot/dtkbot/imageread/layer"
)

// Decompress returns a module file's content: data itself when
// compression is CompressionNone, else data decompressed, at most max
// bytes (more is an error wrapping layer.ErrLimit, a decompression
// bomb). The content must be what the name says it is.
//
// What decoding allocates is the content (once, at the size the container
// declares when it does) and a bounded decoder: an xz block's dictionary is
// at most what the block holds (decompressXZ), a zstd frame's window is
// the content itself (the whole frame is decoded into one buffer, so a
// `zstd --long=27` module costs its size, not 128 MiB), gzip's is 32 KiB.
func Decompress(data []byte, compression string, max int64) ([]byte, error) {
	switch compression {
	case CompressionNone:
		if int64(len(data)) > max {
			return nil, fmt.Errorf("%d bytes: %w of %d", len(data), layer.ErrLimit, max)
		}
		return data, nil
	case CompressionXZ:
		out, err := decompressXZ(data, max)
		if err != nil {
			return nil, fmt.Errorf("reading xz: %w", err)
		}
		return out, nil
	case CompressionZstd:
		out, err := decompressZstd(data, max)
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
			return nil, fmt.Errorf("decompressing zstd: more than %d bytes: %w (a decompression bomb?): %v", max, layer.ErrLimit, err)
		}
		if err != nil {
			return nil, fmt.Errorf("reading zstd: %w", err)
		}
		return out, nil
	case CompressionGzip:
		out, err := decompressGzip(data, max)
		if err != nil {
			return nil, fmt.Errorf("reading gzip: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown compression %q", compression)
}

// DeclaredSize is the size of a module file's content as its container
// declares it, without decoding anything: the xz index's total, the sum of
// the zstd frames' content sizes, the gzip trailer's size (of the last
// member only: the whole when there is one); ok is false when the
// container does not say (a zstd frame without its size) or cannot be
// read. Decompress never returns more than an xz or zstd container
// declares; a gzip of several members holds more than it declares.
func DeclaredSize(data []byte, compression string) (size int64, ok bool) {
	switch compression {
	case CompressionNone:
		return int64(len(data)), true
	case CompressionXZ:
		_, _, records, _, err := readXZFrame(data, 1<<62)
		if err != nil {
			return 0, false
		}
		for _, r := range records {
			size += r.uncompressed
		}
		return size, true
	case CompressionZstd:
		return zstdDeclaredSize(data)
	case CompressionGzip:
		if len(data) < 18 {
			return 0, false
		}
		return int64(binary.LittleEndian.Uint32(data[len(data)-4:])), true
	}
	return 0, false
}

// decompressZstd decodes every frame of data into one buffer, which is the
// decoder's history too (klauspost/compress's DecodeAll): no window is
// allocated beside it, so a frame may declare a window up to
// layer.MaxZstdWindow (what `zstd --long` writes) and costs its
// content only. When the frames declare their sizes (zstd writes them for
// a file), the buffer is allocated once, at that size, and holds no more;
// else it grows as the content comes, up to max.
func decompressZstd(data []byte, max int64) ([]byte, error) {
	if !layer.IsZstd(data) {
		return nil, errors.New("not a zstd stream")
	}
	opts := []zstd.DOption{zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(layer.MaxZstdWindow)}
	var dst []byte
	if size, ok := zstdDeclaredSize(data); ok {
		if size > max {
			return nil, fmt.Errorf("frames declare %d bytes: %w", size, zstd.ErrDecoderSizeExceeded)
		}
		// The window is checked against the decoder's "max memory" too:
		// the output's bound is the buffer's capacity.
		opts = append(opts, zstd.WithDecoderMaxMemory(uint64(size)+layer.MaxZstdWindow), zstd.WithDecodeAllCapLimit(true))
		dst = make([]byte, 0, size)
	} else {
		opts = append(opts, zstd.WithDecoderMaxMemory(uint64(max)))
	}
	dec, err := zstd.NewReader(nil, opts...)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	return dec.DecodeAll(data, dst)
}

// zstdDeclaredSize walks the frames of data (RFC 8878, section 3.1: frame
// headers, block headers, skippable frames) and adds up their content
// sizes; ok is false when a frame does not declare its size, or the
// frames do not parse.
func zstdDeclaredSize(data []byte) (size int64, ok bool) {
	for len(data) > 0 {
		if len(data) < 8 {
			return 0, false
		}
		magic := binary.LittleEndian.Uint32(data)
		if magic&0xfffffff0 == 0x184d2a50 { // a skippable frame
			n := int64(binary.LittleEndian.Uint32(data[4:8]))
			if n > int64(len(data))-8 {
				return 0, false
			}
			data = data[8+n:]
			continue
		}
		if magic != 0xfd2fb528 {
			return 0, false
		}
		desc := data[4]
		fcsFlag, single, checksum, dictFlag := desc>>6, desc&0x20 != 0, desc&0x04 != 0, desc&0x03
		at := 5
		if !single {
			at++ // Window_Descriptor
		}
		at += [4]int{0, 1, 2, 4}[dictFlag]
		fcsLen := [4]int{0, 2, 4, 8}[fcsFlag]
		if fcsFlag == 0 && single {
			fcsLen = 1
		}
		if fcsLen == 0 || len(data) < at+fcsLen {
			return 0, false
		}
		var fcs uint64
		for i := fcsLen - 1; i >= 0; i-- {
			fcs = fcs<<8 | uint64(data[at+i])
		}
		if fcsLen == 2 {
			fcs += 256
		}
		if fcs > 1<<62 || size+int64(fcs) > 1<<62 {
			return 0, false
		}
		size += int64(fcs)
		data = data[at+fcsLen:]
		for last := false; !last; {
			if len(data) < 3 {
				return 0, false
			}
			h := uint32(data[0]) | uint32(data[1])<<8 | uint32(data[2])<<16
			last = h&1 != 0
			n := int(h >> 3)
			if (h>>1)&3 == 1 { // RLE: one byte, repeated
				n = 1
			}
			if len(data) < 3+n {
				return 0, false
			}
			data = data[3+n:]
		}
		if checksum {
			if len(data) < 4 {
				return 0, false
			}
			data = data[4:]
		}
	}
	return size, true
}

// decompressGzip decodes data into one buffer of the size its trailer
// declares (when that is at most max), grown only for a gzip of several
// members.
func decompressGzip(data []byte, max int64) ([]byte, error) {
	gr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	defer gr.Close()
	size := int64(512)
	if declared, ok := DeclaredSize(data, CompressionGzip); ok && declared <= max {
		size = declared
	}
	out := make([]byte, 0, size)
	for {
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)] // grows: more than the trailer says
		}
		n, err := gr.Read(out[len(out):min(cap(out), int(max)+1)])
		out = out[:len(out)+n]
		if int64(len(out)) > max {
			return nil, fmt.Errorf("decompressing gzip: more than %d bytes: %w (a decompression bomb?)", max, layer.ErrLimit)
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decompressing: %w", err)
		}
	}
}
