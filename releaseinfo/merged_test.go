package releaseinfo

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
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
			v := newMergedView(prefix)
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
			if v.prefixHidden() != tc.hidden {
				t.Errorf("prefix hidden %v, want %v", v.prefixHidden(), tc.hidden)
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
		files, err := extractFiles(bytes.NewReader(layer), map[string]int64{dtkReleasePath: 100}, DefaultLimits())
		if err != nil || string(files[dtkReleasePath]) != "{}" {
			t.Errorf("%s: %q %v", name, files, err)
		}
	}
	if _, err := extractFiles(bytes.NewReader([]byte("BZh91AY&SY not a layer we read")), nil, DefaultLimits()); err == nil {
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
	lim := DefaultLimits()
	lim.MaxDecompressedBytes = 8 << 20
	if _, err := extractFiles(bytes.NewReader(bomb.Bytes()), nil, lim); err == nil {
		t.Error("a zstd bomb: accepted")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestReadDTKFiles: the kernel files the recipe writes next to the release
// JSON are read from that same small layer, digests verified, at no extra
// request; a DTK without them says which are missing.
func TestReadDTKFiles(t *testing.T) {
	tw := newTestWorld(t)
	const kernel, rt = "5.14.0-427.37.1.el9_4.x86_64", "5.14.0-427.37.1.el9_4.x86_64+rt"
	release, _ := json.Marshal(map[string]string{"KERNEL_VERSION": kernel, "RT_KERNEL_VERSION": rt, "RHEL_VERSION": "9.4"})
	dir := KernelFilesDir + kernel + "/"
	last := payloadtest.TarGz(
		payloadtest.File("etc/driver-toolkit-release.json", release),
		payloadtest.File(dir+SymversFile, []byte("0x4dfa8d4b\tmutex_lock\tvmlinux\tEXPORT_SYMBOL\t\n")),
		payloadtest.File(dir+ModulesDepFile, []byte("kernel/lib/crc-itu-t.ko.xz:\n")),
		payloadtest.File(dir+ModulesBuiltinFile, []byte("kernel/fs/ext4/ext4.ko\n")),
		payloadtest.File(dir+VermagicFile, []byte(kernel+" SMP preempt mod_unload modversions \n")),
		payloadtest.File(KernelFilesDir+rt+"/"+SymversFile, []byte("0x5de130f5\tmutex_lock\tvmlinux\tEXPORT_SYMBOL\t\n")),
		payloadtest.File(KernelFilesDir+"../"+SymversFile, []byte("never read")),
		payloadtest.File(KernelFilesDir+kernel+"/other-file", []byte("not ours")),
	)
	dtk := tw.w.PushImage("acme/dtk", "", payloadtest.Image{OCI: true, Layers: [][]byte{payloadtest.NoiseLayer("base", 1<<20), last}})
	in := tw.inspector(Options{})
	before := tw.srv.Stats()
	d, err := in.ReadDTKFiles(context.Background(), dtk.Pullspec)
	if err != nil {
		t.Fatal(err)
	}
	cost := tw.srv.Stats().Sub(before)
	if cost.BlobGETs != 1 || cost.ManifestGETs != 1 || cost.BytesServed > 64<<10 {
		t.Errorf("%d blob GETs, %d manifest GETs, %d bytes: want the one small top layer", cost.BlobGETs, cost.ManifestGETs, cost.BytesServed)
	}
	if d.Kernel.String() != kernel || d.Source != SourceDTKReleaseJSON {
		t.Errorf("kernel %s from %s", d.Kernel, d.Source)
	}
	k, ok := d.Files(kernel)
	if !ok || !strings.Contains(string(k.Symvers), "0x4dfa8d4b") || k.ModulesDep == nil || k.ModulesBuiltin == nil || k.Vermagic == nil {
		t.Errorf("kernel files %+v (complete %v)", k, ok)
	}
	if r, ok := d.Files(rt); ok || !slices.Equal(r.Missing(), []string{KernelFilesDir + rt + "/modules.dep", KernelFilesDir + rt + "/modules.builtin"}) {
		t.Errorf("RT files: missing %v", r.Missing())
	}
	if got := slices.Sorted(maps.Keys(d.Kernels)); !slices.Equal(got, []string{kernel, rt}) {
		t.Errorf("kernels %v", got)
	}
	// A DTK of the payloads' (or a recipe without the files): none, not an error.
	spec := payloadtest.Eras()[4]
	p := tw.w.Release(spec)
	old, err := in.ReadDTKFiles(context.Background(), p.DTK["driver-toolkit"].ForArch("amd64").Pullspec)
	if err != nil || len(old.Kernels) != 0 || old.Kernel.IsZero() {
		t.Errorf("a DTK without kernel files: %+v %v", old, err)
	}
	if _, ok := old.Files(old.Kernel.String()); ok {
		t.Error("a DTK without kernel files has them")
	}
}
