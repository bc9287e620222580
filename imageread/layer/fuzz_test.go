package layer

import (
	"archive/tar"
	"bytes"
	"io"
	"path"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
)

// The paths of a release image's last layer FuzzExtractFiles wants, as
// package releaseinfo asks for them.
const (
	imageReferences = "release-manifests/image-references"
	releaseMetadata = "release-manifests/release-metadata"
)

func FuzzExtractFiles(f *testing.F) {
	refs := []byte(`{"kind":"ImageStream"}`)
	f.Add(payloadtest.TarGz(payloadtest.TarEntry{Name: "release-manifests/", Type: tar.TypeDir}, payloadtest.File(imageReferences, refs)))
	f.Add(payloadtest.Tar([]payloadtest.TarEntry{{Name: imageReferences, Type: tar.TypeSymlink, Linkname: "/etc/passwd"}}))
	f.Add(payloadtest.TarGz(payloadtest.File("./"+imageReferences, refs), payloadtest.File(imageReferences, refs)))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	f.Add(zstdOf(payloadtest.Tar([]payloadtest.TarEntry{payloadtest.File(imageReferences, refs)})))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0x58})
	lim := Limits{MaxDecompressedBytes: 1 << 20, MaxTarEntries: 1000}
	f.Fuzz(func(t *testing.T, layer []byte) {
		files, err := Files(bytes.NewReader(layer), Named(map[string]int64{imageReferences: 4096, releaseMetadata: 4096}), lim)
		if err != nil {
			return
		}
		for name, data := range files {
			if name != imageReferences && name != releaseMetadata {
				t.Errorf("returned %q", name)
			}
			if len(data) > 4096 {
				t.Errorf("%s: %d bytes over its limit", name, len(data))
			}
		}
	})
}

func zstdOf(data []byte) []byte {
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	_, _ = zw.Write(data)
	_ = zw.Close()
	return buf.Bytes()
}

// FuzzMergedLayers: any two layers, walked from the top as imageread
// walks an image, show each path under the prefix at most once, and never
// a whiteout.
func FuzzMergedLayers(f *testing.F) {
	const prefix = "opt/lib/modules/k/"
	f.Add(payloadtest.Tar([]payloadtest.TarEntry{payloadtest.File(prefix+".wh.a.ko", nil), payloadtest.File(prefix+"b.ko", []byte("b"))}),
		payloadtest.TarGz(payloadtest.File(prefix+"a.ko", []byte("a")), payloadtest.File(prefix+"b.ko", []byte("old b"))))
	f.Add(payloadtest.Tar([]payloadtest.TarEntry{payloadtest.File(prefix+".wh..wh..opq", nil)}), payloadtest.Tar([]payloadtest.TarEntry{payloadtest.File(prefix+"a.ko", nil)}))
	f.Add(payloadtest.Tar([]payloadtest.TarEntry{{Name: "opt/lib/modules/k", Type: tar.TypeSymlink, Linkname: "/"}}), zstdOf(payloadtest.Tar([]payloadtest.TarEntry{payloadtest.File(prefix+"a.ko", nil)})))
	lim := Limits{MaxDecompressedBytes: 1 << 20, MaxTarEntries: 1000}
	f.Fuzz(func(t *testing.T, top, bottom []byte) {
		v := NewMerged(prefix)
		seen := map[string]bool{}
		for _, layer := range [][]byte{top, bottom} {
			if v.PrefixHidden() {
				break
			}
			err := v.WalkLayer(bytes.NewReader(layer), lim, func(e Entry, content io.Reader) error {
				if strings.HasPrefix(path.Base(e.Name), whiteoutPrefix) {
					t.Errorf("a whiteout shows: %q", e.Name)
				}
				if !e.IsRegular() || !v.Under(e.Name) {
					return nil
				}
				if seen[e.Name] {
					t.Errorf("%q shows twice", e.Name)
				}
				seen[e.Name] = true
				_, err := io.Copy(io.Discard, content)
				return err
			})
			if err != nil {
				return
			}
		}
	})
}
