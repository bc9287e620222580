package releaseinfo

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
)

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
