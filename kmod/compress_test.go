package kmod

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/imageread/layer"
)

// allocated is how many bytes of heap f allocates (runtime.MemStats'
// TotalAlloc: every allocation counts, whether or not it is freed before
// the end). The tests that use it do not run in parallel.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// xzTestBlock is one block of a hand-made xz stream: the dictionary its
// LZMA2 filter asks for (the property byte, "The .xz File Format" 1.2.0,
// section 5.3.1: 0 is 4 KiB, 18 is 1 MiB, 32 is 256 MiB, 40 is 4 GiB - 1)
// and the content it holds.
type xzTestBlock struct {
	dict    byte
	content []byte
}

// xzRecord is an index record: what the index says of a block.
type xzRecord struct{ unpadded, uncompressed uint64 }

// craftXZ writes an xz stream (https://tukaani.org/xz/xz-file-format.txt)
// by hand, its check CRC32 as kbuild's: each block's content in LZMA2
// uncompressed chunks (section 5.3: control byte 1, a dictionary reset,
// then 2; the size less one, big-endian; the bytes; 0 ends the data),
// which every decoder must read and which need no encoder. index, if not
// nil, replaces the index the blocks call for: a lie about them.
func craftXZ(blocks []xzTestBlock, index []xzRecord) []byte {
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	flags := []byte{0x00, 0x01} // check: CRC32
	out := append([]byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, flags...)
	out = append(out, le32(crc32.ChecksumIEEE(flags))...)
	var records []xzRecord
	for _, b := range blocks {
		// Block header: size, flags (one filter, no sizes), LZMA2 (0x21)
		// with one property byte, padding, CRC32.
		hdr := []byte{0, 0x00, 0x21, 0x01, b.dict, 0, 0, 0}
		hdr[0] = byte((len(hdr)+4)/4 - 1)
		hdr = append(hdr, le32(crc32.ChecksumIEEE(hdr))...)
		var data []byte
		control := byte(1)
		for rest := b.content; len(rest) > 0; control = 2 {
			n := min(len(rest), 1<<16)
			data = append(data, control, byte((n-1)>>8), byte(n-1))
			data = append(data, rest[:n]...)
			rest = rest[n:]
		}
		data = append(data, 0)
		out = append(out, hdr...)
		out = append(out, data...)
		for pad := len(data); pad%4 != 0; pad++ {
			out = append(out, 0)
		}
		out = append(out, le32(crc32.ChecksumIEEE(b.content))...)
		// Unpadded size: header, compressed data and check (section 4.3.2).
		records = append(records, xzRecord{uint64(len(hdr) + len(data) + 4), uint64(len(b.content))})
	}
	if index != nil {
		records = index
	}
	idx := []byte{0}
	idx = binary.AppendUvarint(idx, uint64(len(records)))
	for _, r := range records {
		idx = binary.AppendUvarint(idx, r.unpadded)
		idx = binary.AppendUvarint(idx, r.uncompressed)
	}
	for len(idx)%4 != 0 {
		idx = append(idx, 0)
	}
	idx = append(idx, le32(crc32.ChecksumIEEE(idx))...)
	out = append(out, idx...)
	footer := append(le32(uint32(len(idx)/4-1)), flags...)
	out = append(out, le32(crc32.ChecksumIEEE(footer))...)
	out = append(out, footer...)
	return append(out, 'Y', 'Z')
}

// blockLen is how many bytes craftXZ writes for a block of n bytes of
// content: header, chunks, end marker, padding, check.
func blockLen(n int) uint64 {
	data := 1 + n + 3*((n+1<<16-1)>>16)
	return uint64(12 + (data+3)&^3 + 4)
}

// TestXZDictionariesOfTheBlocksRead: the xz decoder allocates the
// dictionaries of the blocks it reads, not of those the index lists, and
// never more than the content can use. A stream of 4 blocks whose blocks
// 2-4 ask for a 256 MiB or a 4 GiB dictionary, and whose index was
// rewritten as one record covering them all, made dtkbot allocate 3 such
// dictionaries (12 GiB for the 4 GiB ones); the same 4 blocks with an
// honest index decode with dictionaries no larger than each block.
func TestXZDictionariesOfTheBlocksRead(t *testing.T) {
	content := bytes.Repeat([]byte("dtkbot "), 3000) // 21,000 bytes
	for _, dict := range []byte{32, 40} {
		blocks := []xzTestBlock{{18, content}, {dict, content}, {dict, content}, {dict, content}}
		name := fmt.Sprintf("dictionary %d", lzma2Dictionary(dict))
		// The lie: one record covering the four blocks.
		oneRecord := []xzRecord{{4 * blockLen(len(content)), uint64(4 * len(content))}}
		lying := craftXZ(blocks, oneRecord)
		var err error
		got := allocated(func() { _, err = Decompress(lying, CompressionXZ, 1<<20) })
		if err == nil {
			t.Errorf("%s, the index rewritten: decoded", name)
		}
		if got > 4<<20 {
			t.Errorf("%s, the index rewritten: %d bytes allocated (%v); want a few hundred KB", name, got, err)
		}

		honest := craftXZ(blocks, nil)
		var out []byte
		got = allocated(func() { out, err = Decompress(honest, CompressionXZ, 1<<20) })
		if err != nil || !bytes.Equal(out, bytes.Repeat(content, 4)) {
			t.Errorf("%s, an honest index: %d bytes, %v", name, len(out), err)
		}
		if got > 4<<20 {
			t.Errorf("%s, an honest index: %d bytes allocated; want about the content (%d bytes)", name, got, 4*len(content))
		}
		t.Logf("%s: %d bytes allocated to decode %d bytes of content", name, got, 4*len(content))
	}
}

// TestXZRefusesWhatTheDecoderWouldNot: every part of the container is
// checked, as xz itself checks it.
func TestXZRefusesWhatTheDecoderWouldNot(t *testing.T) {
	content := []byte("a module's bytes, or so")
	good := craftXZ([]xzTestBlock{{0, content}, {0, content}}, nil)
	if out, err := Decompress(good, CompressionXZ, 1<<20); err != nil || !bytes.Equal(out, append(bytes.Clone(content), content...)) {
		t.Fatalf("the stream as made: %q, %v", out, err)
	}
	corrupt := func(at int, b byte) []byte {
		c := bytes.Clone(good)
		c[at] ^= b
		return c
	}
	indexAt := len(good) - 12 - 12
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"stream header flags", corrupt(7, 0x04), "stream header"},
		{"block header", corrupt(12+4, 0x01), "block 0"},
		{"content", corrupt(12+12+3, 0x01), "block 0"},
		{"check", corrupt(12+int(blockLen(len(content)))-1, 0x01), "check"},
		{"index", corrupt(indexAt+2, 0x01), "index"},
		{"footer", corrupt(len(good)-6, 0x01), "footer"},
		{"two records for one block", craftXZ([]xzTestBlock{{0, content}}, []xzRecord{{blockLen(len(content)), uint64(len(content))}, {0, 0}}), "index"},
		{"sizes in the index", craftXZ([]xzTestBlock{{0, content}}, []xzRecord{{blockLen(len(content)), uint64(len(content) - 1)}}), "index"},
		{"data after the stream", append(bytes.Clone(good), 0, 0, 0, 0), "footer"},
		{"truncated", good[:len(good)-20], ""},
		{"a dictionary property over 40", craftXZ([]xzTestBlock{{41, content}}, nil), "block 0"},
	} {
		if _, err := Decompress(c.data, CompressionXZ, 1<<20); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error saying %q", c.name, err, c.want)
		}
	}
	if _, err := Decompress(good, CompressionXZ, int64(2*len(content)-1)); !errors.Is(err, layer.ErrLimit) {
		t.Errorf("over the limit: %v", err)
	}
}

// craftZstd writes a zstd frame (RFC 8878, section 3.1.1) by hand, as
// `zstd --long=27` writes a file: a window of 128 MiB declared (window
// descriptor: exponent 17, 2^(10+17)), the content size declared, the
// content in raw blocks (type 0) of at most 128 KiB, which every decoder
// must read and which need no encoder.
func craftZstd(content []byte, windowLog byte, declareSize bool) []byte {
	out := []byte{0x28, 0xb5, 0x2f, 0xfd}
	if declareSize {
		out = append(out, 0x80, (windowLog-10)<<3) // 4-byte Frame_Content_Size
		out = binary.LittleEndian.AppendUint32(out, uint32(len(content)))
	} else {
		out = append(out, 0x00, (windowLog-10)<<3)
	}
	for rest := content; ; {
		n := min(len(rest), 128<<10)
		last := uint32(0)
		if n == len(rest) {
			last = 1
		}
		h := uint32(n)<<3 | last // block type 0: raw
		out = append(out, byte(h), byte(h>>8), byte(h>>16))
		out = append(out, rest[:n]...)
		if rest = rest[n:]; last == 1 {
			return out
		}
	}
}

// TestZstdWindowCostsTheContent: a 300 KB module written with a 128 MiB
// window (`zstd --long=27`) made dtkbot's decoder allocate the window,
// 129 MiB; decoded into one buffer, which is the decoder's window too, it
// costs its content.
func TestZstdWindowCostsTheContent(t *testing.T) {
	content := bytes.Repeat([]byte("a kernel module, or so "), 300000/23)
	for _, declared := range []bool{true, false} {
		frame := craftZstd(content, 27, declared)
		var out []byte
		var err error
		got := allocated(func() { out, err = Decompress(frame, CompressionZstd, 128<<20) })
		if err != nil || !bytes.Equal(out, content) {
			t.Fatalf("size declared %v: %d bytes, %v", declared, len(out), err)
		}
		// Without a declared size, the buffer grows as the content comes.
		want := uint64(2 * len(content))
		if !declared {
			want = uint64(4*len(content)) + 1<<20
		}
		if got > want {
			t.Errorf("size declared %v: %d bytes allocated to decode %d; want at most %d", declared, got, len(content), want)
		}
		t.Logf("size declared %v: %d bytes allocated to decode %d bytes", declared, got, len(content))
		if size, ok := DeclaredSize(frame, CompressionZstd); ok != declared || declared && size != int64(len(content)) {
			t.Errorf("size declared %v: DeclaredSize %d, %v", declared, size, ok)
		}
	}
	if _, err := Decompress(craftZstd(content, 27, true), CompressionZstd, 1<<16); !errors.Is(err, layer.ErrLimit) {
		t.Errorf("over the limit: %v", err)
	}
	lying := craftZstd(content, 27, true)
	binary.LittleEndian.PutUint32(lying[6:], 1000)
	if out, err := Decompress(lying, CompressionZstd, 128<<20); err == nil {
		t.Errorf("a frame holding more than it declares: %d bytes", len(out))
	}
}
