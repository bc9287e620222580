package layer

import (
	"archive/tar"
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
)

// TestMergedView: which entries of a layer a container sees, given the
// layers above it (OCI image-spec layer.md, "Whiteouts"). Layers are
// listed from the top.
func TestMergedView(t *testing.T) {
	const prefix = "opt/lib/modules/k/"
	reg := func(names ...string) []string { return names }
	for _, tc := range []struct {
		name   string
		layers [][]string // entries per layer, top first; a trailing "/" is a directory, "@" a symlink
		want   []string   // regular files under the prefix that show, with their layer (0 is the top)
		hidden bool       // nothing below the last layer can show
	}{
		{name: "one layer", layers: [][]string{reg(prefix+"a.ko", prefix+"sub/b.ko", "usr/bin/cp")},
			want: []string{"0:" + prefix + "a.ko", "0:" + prefix + "sub/b.ko"}},
		{name: "a whiteout deletes the file below, not its own layer's",
			layers: [][]string{reg(prefix+".wh.a.ko", prefix+"c.ko"), reg(prefix+"a.ko", prefix+"b.ko")},
			want:   []string{"0:" + prefix + "c.ko", "1:" + prefix + "b.ko"}},
		{name: "a whiteout of a directory deletes what is under it",
			layers: [][]string{reg(prefix + ".wh.sub"), reg(prefix+"sub/a.ko", prefix+"b.ko")},
			want:   []string{"1:" + prefix + "b.ko"}},
		{name: "an opaque directory hides the layers below, not its own",
			layers: [][]string{reg(prefix+".wh..wh..opq", prefix+"a.ko"), reg(prefix + "b.ko")},
			want:   []string{"0:" + prefix + "a.ko"}, hidden: true},
		{name: "an opaque subdirectory hides only itself",
			layers: [][]string{reg(prefix + "extra/.wh..wh..opq"), reg(prefix+"extra/a.ko", prefix+"b.ko")},
			want:   []string{"1:" + prefix + "b.ko"}},
		{name: "an opaque ancestor hides the prefix",
			layers: [][]string{reg("opt/lib/.wh..wh..opq"), reg(prefix + "a.ko")}, hidden: true},
		{name: "a higher file replaces the lower one",
			layers: [][]string{reg(prefix + "a.ko"), reg(prefix + "a.ko")},
			want:   []string{"0:" + prefix + "a.ko"}},
		{name: "a symlink in the place of the module directory",
			layers: [][]string{reg("opt/lib/modules/k@"), reg(prefix + "a.ko")}, hidden: true},
		{name: "a whiteout of the prefix's parent",
			layers: [][]string{reg("opt/lib/.wh.modules"), reg(prefix + "a.ko")}, hidden: true},
		{name: "directories merge",
			layers: [][]string{reg(prefix, prefix+"a.ko"), reg(prefix, prefix+"b.ko")},
			want:   []string{"0:" + prefix + "a.ko", "1:" + prefix + "b.ko"}},
		{name: "aufs metadata is not a whiteout of anything",
			layers: [][]string{reg(prefix + ".wh..wh.plnk"), reg(prefix + "a.ko")},
			want:   []string{"1:" + prefix + "a.ko"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := NewMerged(prefix)
			var got []string
			for i, layer := range tc.layers {
				for _, e := range layer {
					typ := byte(tar.TypeReg)
					name := e
					switch {
					case strings.HasSuffix(e, "/"):
						typ, name = tar.TypeDir, strings.TrimSuffix(e, "/")
					case strings.HasSuffix(e, "@"):
						typ, name = tar.TypeSymlink, strings.TrimSuffix(e, "@")
					}
					if v.add(name, typ) && typ == tar.TypeReg && strings.HasPrefix(name, prefix) {
						got = append(got, string(rune('0'+i))+":"+name)
					}
				}
				v.endLayer()
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("visible %v, want %v", got, tc.want)
			}
			if v.PrefixHidden() != tc.hidden {
				t.Errorf("prefix hidden %v, want %v", v.PrefixHidden(), tc.hidden)
			}
		})
	}
}

// TestLayerCompressions: a layer is read whatever its compression: gzip,
// zstd (with a skippable frame first, as zstd:chunked layers may carry),
// or none; anything else is refused.
func TestLayerCompressions(t *testing.T) {
	tarball := payloadtest.Tar([]payloadtest.TarEntry{payloadtest.File("etc/driver-toolkit-release.json", []byte("{}"))})
	var zst bytes.Buffer
	zw, _ := zstd.NewWriter(&zst)
	_, _ = zw.Write(tarball)
	_ = zw.Close()
	skippable := append([]byte{0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 't', 'o', 'c', '!'}, zst.Bytes()...)
	for name, layer := range map[string][]byte{
		"gzip": payloadtest.Gzip(tarball), "zstd": zst.Bytes(), "zstd after a skippable frame": skippable, "tar": tarball,
	} {
		files, err := Files(bytes.NewReader(layer), Named(map[string]int64{"etc/driver-toolkit-release.json": 100}), testLimits)
		if err != nil || string(files["etc/driver-toolkit-release.json"]) != "{}" {
			t.Errorf("%s: %q %v", name, files, err)
		}
	}
	if _, err := Files(bytes.NewReader([]byte("BZh91AY&SY not a layer we read")), Named(nil), testLimits); err == nil {
		t.Error("bzip2: accepted")
	}
	// A zstd bomb: a tar entry of 300 MB of zeros, a few KB compressed.
	var bomb bytes.Buffer
	bw, _ := zstd.NewWriter(&bomb)
	tarw := tar.NewWriter(bw)
	_ = tarw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Size: 300 << 20, Mode: 0o644})
	_, _ = io.Copy(tarw, io.LimitReader(zeros{}, 300<<20))
	_ = tarw.Close()
	_ = bw.Close()
	lim := testLimits
	lim.MaxDecompressedBytes = 8 << 20
	if _, err := Files(bytes.NewReader(bomb.Bytes()), Named(nil), lim); err == nil {
		t.Error("a zstd bomb: accepted")
	}
}

// testLimits are imageread's defaults for a layer.
var testLimits = Limits{MaxDecompressedBytes: 256 << 20, MaxTarEntries: 20000}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
