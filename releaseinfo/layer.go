package releaseinfo

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
)

// ErrLimit is wrapped by every error about untrusted input exceeding a limit.
var ErrLimit = errors.New("over the limit")

// openLayer is a layer's tar stream: gunzipped if it is gzip, as it is if
// it is a plain tar; any other compression is refused.
func openLayer(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(2)
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("opening gzip stream: %w", err)
		}
		return gz, func() { gz.Close() }, nil
	}
	if head, _ := br.Peek(262); len(head) < 262 || !bytes.Equal(head[257:262], []byte("ustar")) {
		return nil, nil, errors.New("layer is neither gzip nor tar (unsupported compression)")
	}
	return br, func() {}, nil
}

// extractFiles reads a layer (gzip-compressed or plain tar) and returns the
// contents of the regular files named in want (name -> maximum size). Only
// regular files whose name, cleaned of a leading "./" or "/", equals a wanted
// name exactly are taken: symlinks, hard links, devices and names with ".."
// are ignored, so a hostile layer cannot point us elsewhere. The whole tar
// is walked (within the limits), so that a wanted name appearing twice, which
// would make the layer ambiguous, is an error. Nothing returned may be trusted before the caller has verified the
// layer's digest.
func extractFiles(r io.Reader, want map[string]int64, lim Limits) (map[string][]byte, error) {
	content, closeLayer, err := openLayer(r)
	if err != nil {
		return nil, err
	}
	defer closeLayer()
	inflated := &limitedReader{r: content, left: lim.MaxDecompressedBytes}
	tr := tar.NewReader(inflated)
	found := map[string][]byte{}
	for entries := 0; ; entries++ {
		if entries >= lim.MaxTarEntries {
			return nil, fmt.Errorf("more than %d tar entries: %w", lim.MaxTarEntries, ErrLimit)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading tar: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA { //nolint:staticcheck // TypeRegA still appears in old layers
			continue
		}
		name, ok := cleanEntryName(hdr.Name)
		if !ok {
			continue
		}
		max, wanted := want[name]
		if !wanted {
			continue
		}
		if _, dup := found[name]; dup {
			return nil, fmt.Errorf("tar entry %s appears twice", name)
		}
		if hdr.Size > max {
			return nil, fmt.Errorf("tar entry %s is %d bytes: %w of %d", name, hdr.Size, ErrLimit, max)
		}
		data, err := io.ReadAll(io.LimitReader(tr, max+1))
		if err != nil {
			return nil, fmt.Errorf("reading tar entry %s: %w", name, err)
		}
		if int64(len(data)) > max {
			return nil, fmt.Errorf("tar entry %s: %w of %d bytes", name, ErrLimit, max)
		}
		found[name] = data
	}
	return found, nil
}

// listFiles walks a layer (gzip or plain tar, within the limits) and returns
// the names of the regular files match accepts, at most max of them. Like
// extractFiles, it never follows a link and skips names that are not clean.
func listFiles(r io.Reader, match func(name string) bool, max int, lim Limits) ([]string, error) {
	content, closeLayer, err := openLayer(r)
	if err != nil {
		return nil, err
	}
	defer closeLayer()
	tr := tar.NewReader(&limitedReader{r: content, left: lim.MaxDecompressedBytes})
	var out []string
	for entries := 0; ; entries++ {
		if entries >= lim.MaxTarEntries {
			return nil, fmt.Errorf("more than %d tar entries: %w", lim.MaxTarEntries, ErrLimit)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading tar: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA { //nolint:staticcheck // TypeRegA still appears in old layers
			continue
		}
		if name, ok := cleanEntryName(hdr.Name); ok && match(name) && len(out) < max {
			out = append(out, name)
		}
	}
}

// cleanEntryName strips "./" and "/" prefixes and refuses names that are not
// already clean (a "..", a doubled slash).
func cleanEntryName(name string) (string, bool) {
	n := strings.TrimPrefix(name, "./")
	n = strings.TrimLeft(n, "/")
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
