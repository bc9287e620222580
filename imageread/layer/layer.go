// Package layer reads one image layer as untrusted input: a tar stream,
// gzip- or zstd-compressed (zstd:chunked included) or plain, told by its
// content and never by a media type; its entries walked within limits
// (entries, bytes inflated) with names cleaned; the regular files a caller
// wants extracted, each within its own limit; and, for layers read from the
// top of an image down, which entries a container would see (Merged:
// whiteouts, opaque directories, replaced files).
//
// It never follows a link, never takes a name that is not clean (a "..",
// a doubled slash), never lets a decompression bomb be a short file
// (ErrLimit), and never reads a registry or a disk: the caller hands it a
// layer's bytes, and must verify the layer's digest before it trusts
// anything read from them (package imageread does).
package layer

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// ErrLimit is wrapped by every error about untrusted input exceeding a
// limit: a layer, a file in it, a compressed module.
var ErrLimit = errors.New("over the limit")

// Limits bound what reading one layer may cost.
type Limits struct {
	// MaxDecompressedBytes is what the layer may inflate to before the
	// read stops with ErrLimit.
	MaxDecompressedBytes int64
	// MaxTarEntries is how many entries are walked at most.
	MaxTarEntries int
}

// MaxZstdWindow bounds the window a zstd frame may ask its decoder to
// allocate (128 MiB, what `zstd --long` uses at most): a hostile frame
// header cannot make us reserve gigabytes. Layers and modules compressed
// by podman, buildah, skopeo or the kernel's build use far less.
const MaxZstdWindow = 128 << 20

// IsZstd says whether data starts a zstd stream: a zstd frame, or a
// skippable frame (zstd:chunked layers carry their table of contents in
// skippable frames; RFC 8878, section 3.1).
func IsZstd(head []byte) bool {
	if len(head) < 4 {
		return false
	}
	if bytes.Equal(head[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		return true
	}
	return head[0]&0xf0 == 0x50 && bytes.Equal(head[1:4], []byte{0x2a, 0x4d, 0x18})
}

// NewZstdReader is a zstd decoder for untrusted input: one goroutine, low
// memory, a bounded window, and no more than maxMemory bytes of output
// buffered. Close it when done.
func NewZstdReader(r io.Reader, maxMemory int64) (*zstd.Decoder, error) {
	if maxMemory <= 0 {
		maxMemory = MaxZstdWindow
	}
	return zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(MaxZstdWindow), zstd.WithDecoderMaxMemory(uint64(maxMemory)))
}

// open is a layer's tar stream: gunzipped if it is gzip, decompressed if it
// is zstd (zstd:chunked included: its extra frames are skippable), as it
// is if it is a plain tar; any other compression is refused. The
// compression is told by the content, never by the media type, which the
// registry serves from a manifest that may be wrong.
func open(r io.Reader, lim Limits) (io.Reader, func(), error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(4)
	if len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("opening gzip stream: %w", err)
		}
		return gz, func() { gz.Close() }, nil
	}
	if IsZstd(magic) {
		zr, err := NewZstdReader(br, lim.MaxDecompressedBytes)
		if err != nil {
			return nil, nil, fmt.Errorf("opening zstd stream: %w", err)
		}
		return zr, zr.Close, nil
	}
	if head, _ := br.Peek(262); len(head) < 262 || !bytes.Equal(head[257:262], []byte("ustar")) {
		return nil, nil, errors.New("layer is neither gzip, zstd nor tar (unsupported compression)")
	}
	return br, func() {}, nil
}

// Walk reads a layer (gzip, zstd or plain tar) within the limits (its
// entries, what it inflates to) and calls visit for each entry with its
// header and content; visit's error ends the walk. Nothing visit sees may
// be trusted before the caller has verified the layer's digest.
func Walk(r io.Reader, lim Limits, visit func(hdr *tar.Header, content io.Reader) error) error {
	content, closeLayer, err := open(r, lim)
	if err != nil {
		return err
	}
	defer closeLayer()
	tr := tar.NewReader(&limitedReader{r: content, left: lim.MaxDecompressedBytes})
	for entries := 0; ; entries++ {
		if entries >= lim.MaxTarEntries {
			return fmt.Errorf("more than %d tar entries: %w", lim.MaxTarEntries, ErrLimit)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if err := visit(hdr, tr); err != nil {
			return err
		}
	}
}

// IsRegular says whether a tar entry is a regular file.
func IsRegular(hdr *tar.Header) bool {
	return hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA //nolint:staticcheck // TypeRegA still appears in old layers
}

// Named accepts the names of want, each up to its size: the want of Files
// for files known by name.
func Named(want map[string]int64) func(name string) (int64, bool) {
	return func(name string) (int64, bool) {
		max, ok := want[name]
		return max, ok
	}
}

// Files reads a layer (gzip, zstd or plain tar) and returns the
// contents of the regular files whose names want accepts, each at most the
// size want gives it. Only regular files whose name, cleaned of a leading
// "./" or "/", is accepted as it is are taken: symlinks, hard links,
// devices and names with ".." are ignored, so a hostile layer cannot point
// us elsewhere. The whole tar is walked (within the limits), so that a
// wanted name appearing twice, which would make the layer ambiguous, is an
// error. Nothing returned may be trusted before the caller has verified
// the layer's digest.
func Files(r io.Reader, want func(name string) (int64, bool), lim Limits) (map[string][]byte, error) {
	found := map[string][]byte{}
	err := Walk(r, lim, func(hdr *tar.Header, content io.Reader) error {
		if !IsRegular(hdr) {
			return nil
		}
		name, ok := CleanName(hdr.Name)
		if !ok {
			return nil
		}
		max, wanted := want(name)
		if !wanted {
			return nil
		}
		if _, dup := found[name]; dup {
			return fmt.Errorf("tar entry %s appears twice", name)
		}
		if hdr.Size > max {
			return fmt.Errorf("tar entry %s is %d bytes: %w of %d", name, hdr.Size, ErrLimit, max)
		}
		data, err := io.ReadAll(io.LimitReader(content, max+1))
		if err != nil {
			return fmt.Errorf("reading tar entry %s: %w", name, err)
		}
		if int64(len(data)) > max {
			return fmt.Errorf("tar entry %s: %w of %d bytes", name, ErrLimit, max)
		}
		found[name] = data
		return nil
	})
	if err != nil {
		return nil, err
	}
	return found, nil
}

// CleanName strips "./" and "/" prefixes of a tar entry's name and refuses
// names that are not already clean (a "..", a doubled slash). A
// directory's trailing "/" is dropped.
func CleanName(name string) (string, bool) {
	n := strings.TrimPrefix(name, "./")
	n = strings.TrimLeft(n, "/")
	n = strings.TrimSuffix(n, "/")
	if n == "" || path.Clean(n) != n || strings.HasPrefix(n, "..") || strings.Contains(n, "/../") {
		return "", false
	}
	return n, true
}

// limitedReader fails, rather than truncating, once more than left bytes are
// read: a decompression bomb must be an error, not a short file.
type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, fmt.Errorf("decompressed content: %w of bytes (a decompression bomb?)", ErrLimit)
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}
