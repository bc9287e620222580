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

// TestDTKReleaseJSONKernel64K: dtkbot's recipe writes the +64k kernel's
// uname -r as KERNEL_64K_VERSION (deploy/driver-toolkit/Containerfile), or
// "package kernel-64k-core is not installed" as it writes for RT; the
// latter and an absent key are no kernel and no warning, a value that is
// not a +64k kernel is warned about and never taken for one.
func TestDTKReleaseJSONKernel64K(t *testing.T) {
	const kernel = "5.14.0-427.37.1.el9_4.aarch64"
	for _, tc := range []struct {
		name, value string // value "-": no key
		want        string // the +64k kernel kept, or ""
		warning     string // a substring of the one warning, or "" for none
	}{
		{name: "the 64k kernel", value: kernel + "+64k", want: kernel + "+64k"},
		{name: "not installed", value: "package kernel-64k-core is not installed"},
		{name: "no key (the OpenShift DTK's)", value: "-"},
		{name: "empty", value: ""},
		{name: "the default kernel", value: kernel, warning: `KERNEL_64K_VERSION "` + kernel + `" is not a +64k kernel`},
		{name: "an RT kernel", value: "5.14.0-427.37.1.el9_4.x86_64+rt", warning: "is not a +64k kernel"},
		{name: "+64k off aarch64", value: "5.14.0-427.37.1.el9_4.x86_64+64k", warning: "is not a +64k kernel"},
		{name: "not a kernel", value: "true", warning: `KERNEL_64K_VERSION "true"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fields := map[string]string{"KERNEL_VERSION": kernel, "RT_KERNEL_VERSION": "package kernel-rt-core is not installed", "RHEL_VERSION": "9.4"}
			if tc.value != "-" {
				fields["KERNEL_64K_VERSION"] = tc.value
			}
			data, _ := json.Marshal(fields)
			out := dtkKernels{source: SourceDTKReleaseJSON}
			parseDTKRelease(data, &out)
			if out.kernel.String() != kernel || !out.rt.IsZero() || out.rhel != "9.4" {
				t.Errorf("kernel %s, RT %s, RHEL %q", out.kernel, out.rt, out.rhel)
			}
			got := ""
			if !out.k64.IsZero() {
				got = out.k64.String()
				if !out.k64.Pages64K || out.k64.VR() != out.kernel.VR() {
					t.Errorf("64k kernel %+v", out.k64)
				}
			}
			if got != tc.want {
				t.Errorf("64k kernel %q, want %q", got, tc.want)
			}
			switch {
			case tc.warning == "" && len(out.warnings) != 0:
				t.Errorf("warnings %q, want none", out.warnings)
			case tc.warning != "" && (len(out.warnings) != 1 || !strings.Contains(out.warnings[0], tc.warning)):
				t.Errorf("warnings %q, want one saying %q", out.warnings, tc.warning)
			}
			v := out.declared().Variants()
			if k, ok := v["64k"]; ok != (tc.want != "") || ok && k.String() != tc.want || len(v) > 1 {
				t.Errorf("variants %v, want the 64k kernel %q only", v, tc.want)
			}
		})
	}
}

// TestReadDTKFilesOfVariants: an aarch64 DTK of dtkbot's recipe that
// carries kernel-64k declares it and carries its files beside the default
// kernel's, each under its own uname -r, each kernel's files its own; an
// x86_64 DTK with kernel-rt likewise. The variants are named as the ledger
// names them.
func TestReadDTKFilesOfVariants(t *testing.T) {
	tw := newTestWorld(t)
	in := tw.inspector(Options{})
	files := func(kernel, crc string) []payloadtest.TarEntry {
		dir := KernelFilesDir + kernel + "/"
		return []payloadtest.TarEntry{
			payloadtest.File(dir+SymversFile, []byte(crc+"\tmutex_lock\tvmlinux\tEXPORT_SYMBOL\t\n")),
			payloadtest.File(dir+ModulesDepFile, []byte("kernel/lib/crc-itu-t.ko.xz:\n")),
			payloadtest.File(dir+ModulesBuiltinFile, []byte("kernel/fs/ext4/ext4.ko\n")),
			payloadtest.File(dir+VermagicFile, []byte(kernel+" SMP preempt mod_unload modversions aarch64\n")),
		}
	}
	for _, tc := range []struct {
		arch, kernel, rt, k64 string
	}{
		{arch: "arm64", kernel: "5.14.0-427.37.1.el9_4.aarch64", rt: "package kernel-rt-core is not installed", k64: "5.14.0-427.37.1.el9_4.aarch64+64k"},
		{arch: "amd64", kernel: "5.14.0-427.37.1.el9_4.x86_64", rt: "5.14.0-427.37.1.el9_4.x86_64+rt", k64: "package kernel-64k-core is not installed"},
	} {
		t.Run(tc.arch, func(t *testing.T) {
			variant, variantKernel := "64k", tc.k64
			if tc.arch == "amd64" {
				variant, variantKernel = "rt", tc.rt
			}
			release, _ := json.Marshal(map[string]string{"KERNEL_VERSION": tc.kernel, "RT_KERNEL_VERSION": tc.rt, "KERNEL_64K_VERSION": tc.k64, "RHEL_VERSION": "9.4"})
			entries := append([]payloadtest.TarEntry{payloadtest.File("etc/driver-toolkit-release.json", release)}, files(tc.kernel, "0x4dfa8d4b")...)
			entries = append(entries, files(variantKernel, "0x5de130f5")...)
			dtk := tw.w.PushImage("acme/dtk", "", payloadtest.Image{OCI: true, Arch: tc.arch, Layers: [][]byte{payloadtest.NoiseLayer("base", 1<<20), payloadtest.TarGz(entries...)}})
			d, err := in.ReadDTKFiles(context.Background(), dtk.Pullspec)
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Warnings) != 0 {
				t.Errorf("warnings %q", d.Warnings)
			}
			if v := d.Variants(); len(v) != 1 || v[variant].String() != variantKernel {
				t.Errorf("variants %v, want %s: %s", v, variant, variantKernel)
			}
			if got := slices.Sorted(maps.Keys(d.Kernels)); !slices.Equal(got, []string{tc.kernel, variantKernel}) {
				t.Errorf("kernel files of %v", got)
			}
			for kernel, crc := range map[string]string{tc.kernel: "0x4dfa8d4b", variantKernel: "0x5de130f5"} {
				if f, ok := d.Files(kernel); !ok || !strings.HasPrefix(string(f.Symvers), crc) || !strings.HasPrefix(string(f.Vermagic), kernel+" ") {
					t.Errorf("%s: files %+v (complete %v), want its own", kernel, f, ok)
				}
			}
		})
	}
}
