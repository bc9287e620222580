package verify

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/internal/citest"
	"github.com/dtkbot/dtkbot/internal/kmodtest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/ledger"
)

// The kernels of the variant tests: one RHEL 9.4 build, its x86_64 kernel
// with kernel-rt, its aarch64 kernel with kernel-64k.
const (
	variantVR  = "5.14.0-427.37.1.el9_4"
	x86Kernel  = variantVR + ".x86_64"
	rtKernel   = x86Kernel + "+rt"
	armKernel  = variantVR + ".aarch64"
	k64Kernel  = armKernel + "+64k"
	notRT      = "package kernel-rt-core is not installed"
	not64K     = "package kernel-64k-core is not installed"
	otherRTVR  = "5.14.0-427.40.1.el9_4"
	otherRTKer = otherRTVR + ".x86_64+rt"
)

// dtkRelease is etc/driver-toolkit-release.json as dtkbot's recipe writes it.
func dtkRelease(kernel, rt, k64 string) payloadtest.TarEntry {
	data, _ := json.Marshal(map[string]string{"KERNEL_VERSION": kernel, "RT_KERNEL_VERSION": rt, "KERNEL_64K_VERSION": k64, "RHEL_VERSION": "9.4"})
	return payloadtest.File("etc/driver-toolkit-release.json", data)
}

// arm64Files are the DTK's files of kernelFull from the arm64 kernel with
// pages (kbuild-built, kmod/testdata/make-arm64-modules.sh).
func arm64Files(kernelFull, pages string) []payloadtest.TarEntry {
	var out []payloadtest.TarEntry
	for _, f := range kmodtest.KernelFilesArm64(kernelFull, pages) {
		out = append(out, payloadtest.File(f.Name, f.Data))
	}
	return out
}

// TestVerifyDTKVariants: a DTK that declares a variant's kernel (RT,
// 64k) must carry its files (etc/driver-toolkit/<uname -r>/) where it
// carries its own kernel's; one that does is accepted; an RT kernel other
// than the payload's is a wrong kernel. A DTK that carries no kernel files
// at all (a recipe of its own) cannot be checked for them and is judged by
// its release JSON alone.
func TestVerifyDTKVariants(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	push := func(arch string, entries ...payloadtest.TarEntry) string {
		return w.PushImage("acme/dtk", "", payloadtest.Image{OCI: true, Arch: arch, Layers: [][]byte{payloadtest.NoiseLayer("base", 64<<10), payloadtest.TarGz(entries...)}}).Pullspec
	}
	cat := func(lists ...[]payloadtest.TarEntry) []payloadtest.TarEntry {
		var out []payloadtest.TarEntry
		for _, l := range lists {
			out = append(out, l...)
		}
		return out
	}
	rtFiles := citest.DTKKernelFiles(rtKernel, kmodtest.RT, false)
	x86Files := citest.DTKKernelFiles(x86Kernel, "", false)
	x86 := Want{Kernel: variantVR, RTKernel: variantVR, Arch: "amd64"}
	arm := Want{Kernel: variantVR, Arch: "arm64"}
	v := &DTK{Registry: testClient(), Limits: imageread.DefaultLimits()}
	for _, tc := range []struct {
		name  string
		image string
		want  Want
		err   string // "" accepted, else a substring of an ErrWrongKernel
	}{
		{name: "RT declared and carried", want: x86,
			image: push("amd64", cat([]payloadtest.TarEntry{dtkRelease(x86Kernel, rtKernel, not64K)}, x86Files, rtFiles)...)},
		{name: "RT declared, its files missing", want: x86,
			image: push("amd64", cat([]payloadtest.TarEntry{dtkRelease(x86Kernel, rtKernel, not64K)}, x86Files)...),
			err:   "it declares the rt kernel " + rtKernel + " but carries no etc/driver-toolkit/" + rtKernel + "/"},
		{name: "RT not installed", want: x86,
			image: push("amd64", cat([]payloadtest.TarEntry{dtkRelease(x86Kernel, notRT, not64K)}, x86Files)...)},
		{name: "another RT kernel than the payload's", want: x86,
			image: push("amd64", cat([]payloadtest.TarEntry{dtkRelease(x86Kernel, otherRTKer, not64K)}, x86Files, citest.DTKKernelFiles(otherRTKer, kmodtest.RT, false))...),
			err:   "it carries the RT kernel " + otherRTKer + ", the payload ships " + variantVR},
		{name: "RT declared, no kernel files at all (a recipe of its own)", want: x86,
			image: push("amd64", dtkRelease(x86Kernel, rtKernel, not64K))},
		{name: "64k declared and carried", want: arm,
			image: push("arm64", cat([]payloadtest.TarEntry{dtkRelease(armKernel, notRT, k64Kernel)}, arm64Files(armKernel, kmodtest.Pages4K), arm64Files(k64Kernel, kmodtest.Pages64K))...)},
		{name: "64k declared, its files missing", want: arm,
			image: push("arm64", cat([]payloadtest.TarEntry{dtkRelease(armKernel, notRT, k64Kernel)}, arm64Files(armKernel, kmodtest.Pages4K))...),
			err:   "it declares the 64k kernel " + k64Kernel + " but carries no etc/driver-toolkit/" + k64Kernel + "/"},
		{name: "64k not installed", want: arm,
			image: push("arm64", cat([]payloadtest.TarEntry{dtkRelease(armKernel, notRT, not64K)}, arm64Files(armKernel, kmodtest.Pages4K))...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := v.Verify(context.Background(), tc.image, tc.want)
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("rejected: %v", err)
			case tc.err != "" && (!errors.Is(err, ErrWrongKernel) || !Rejects(err) || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("%v, want ErrWrongKernel saying %q", err, tc.err)
			}
		})
	}
}

// TestCarriedVariants: Carried names each variant's kernel the DTK
// declares, with the files it lacks, by the ledger's variant names; the
// default kernel's missing files apart.
func TestCarriedVariants(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	pushDTK := func(arch string, entries ...payloadtest.TarEntry) string {
		p := w.PushImage("acme/dtk", "", payloadtest.Image{OCI: true, Arch: arch, Layers: [][]byte{payloadtest.TarGz(entries...)}})
		return p.Pullspec
	}
	without := func(entries []payloadtest.TarEntry, suffix string) []payloadtest.TarEntry {
		var out []payloadtest.TarEntry
		for _, e := range entries {
			if !strings.HasSuffix(e.Name, suffix) {
				out = append(out, e)
			}
		}
		return out
	}
	v := &Kmod{Registry: testClient(), Limits: imageread.DefaultLimits()}
	for _, tc := range []struct {
		name, arch, kernel string
		entries            []payloadtest.TarEntry
		want               []ledger.VariantKernel
		missing            []string
	}{
		{name: "x86_64 with kernel-rt", arch: "amd64", kernel: x86Kernel,
			entries: append(append([]payloadtest.TarEntry{dtkRelease(x86Kernel, rtKernel, not64K)}, citest.DTKKernelFiles(x86Kernel, "", false)...), citest.DTKKernelFiles(rtKernel, kmodtest.RT, false)...),
			want:    []ledger.VariantKernel{{Variant: ledger.VariantRT, KernelFull: rtKernel}}},
		{name: "x86_64, kernel-rt's modules.dep missing", arch: "amd64", kernel: x86Kernel,
			entries: append(append([]payloadtest.TarEntry{dtkRelease(x86Kernel, rtKernel, not64K)}, citest.DTKKernelFiles(x86Kernel, "", false)...), without(citest.DTKKernelFiles(rtKernel, kmodtest.RT, false), "/modules.dep")...),
			want:    []ledger.VariantKernel{{Variant: ledger.VariantRT, KernelFull: rtKernel, Missing: []string{"etc/driver-toolkit/" + rtKernel + "/modules.dep"}}}},
		{name: "x86_64 without kernel-rt", arch: "amd64", kernel: x86Kernel,
			entries: append([]payloadtest.TarEntry{dtkRelease(x86Kernel, notRT, not64K)}, citest.DTKKernelFiles(x86Kernel, "", false)...)},
		{name: "aarch64 with kernel-64k", arch: "arm64", kernel: armKernel,
			entries: append(append([]payloadtest.TarEntry{dtkRelease(armKernel, notRT, k64Kernel)}, arm64Files(armKernel, kmodtest.Pages4K)...), arm64Files(k64Kernel, kmodtest.Pages64K)...),
			want:    []ledger.VariantKernel{{Variant: ledger.Variant64K, KernelFull: k64Kernel}}},
		{name: "aarch64, kernel-64k declared, none of its files; the default kernel's Module.symvers missing", arch: "arm64", kernel: armKernel,
			entries: append([]payloadtest.TarEntry{dtkRelease(armKernel, notRT, k64Kernel)}, without(arm64Files(armKernel, kmodtest.Pages4K), "/Module.symvers")...),
			missing: []string{"etc/driver-toolkit/" + armKernel + "/Module.symvers"},
			want: []ledger.VariantKernel{{Variant: ledger.Variant64K, KernelFull: k64Kernel, Missing: []string{
				"etc/driver-toolkit/" + k64Kernel + "/Module.symvers", "etc/driver-toolkit/" + k64Kernel + "/modules.dep", "etc/driver-toolkit/" + k64Kernel + "/modules.builtin"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.Carried(context.Background(), pushDTK(tc.arch, tc.entries...), tc.arch, tc.kernel)
			if err != nil {
				t.Fatal(err)
			}
			if !equalStrings(got.Missing, tc.missing) {
				t.Errorf("the default kernel lacks %q, want %q", got.Missing, tc.missing)
			}
			if len(got.Variants) != len(tc.want) {
				t.Fatalf("variants %+v, want %+v", got.Variants, tc.want)
			}
			for i, g := range got.Variants {
				if g.Variant != tc.want[i].Variant || g.KernelFull != tc.want[i].KernelFull || !equalStrings(g.Missing, tc.want[i].Missing) {
					t.Errorf("variant %+v, want %+v", g, tc.want[i])
				}
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

// TestVerifyKmodVariants: in one DTK that carries several kernels (the
// default and RT ones on x86_64, the default and 64k ones on aarch64), a
// consumer image is judged against its own variant's kernel files only:
// a module built for the +rt kernel is accepted for it and rejected for
// the default kernel of the same DTK, and a default one for the +rt
// kernel; a 64k module is accepted for the +64k kernel and a 4k one
// rejected, even when its vermagic names the +64k kernel (built against
// the wrong kernel-devel): the CRCs tell.
func TestVerifyKmodVariants(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	dtk := func(arch string, entries ...[]payloadtest.TarEntry) string {
		var all []payloadtest.TarEntry
		for _, e := range entries {
			all = append(all, e...)
		}
		return w.PushImage("acme/dtk", "", payloadtest.Image{OCI: true, Arch: arch, Layers: [][]byte{payloadtest.TarGz(all...)}}).Pullspec
	}
	x86DTK := dtk("amd64", []payloadtest.TarEntry{dtkRelease(x86Kernel, rtKernel, not64K)},
		citest.DTKKernelFiles(x86Kernel, "", false), citest.DTKKernelFiles(rtKernel, kmodtest.RT, false))
	armDTK := dtk("arm64", []payloadtest.TarEntry{dtkRelease(armKernel, notRT, k64Kernel)},
		arm64Files(armKernel, kmodtest.Pages4K), arm64Files(k64Kernel, kmodtest.Pages64K))
	v := &Kmod{Registry: testClient(), Limits: imageread.DefaultLimits()}
	// The DTK says which kernels it carries, each a variant's.
	for _, c := range []struct{ dtk, arch, kernel, variant, variantKernel string }{
		{x86DTK, "amd64", x86Kernel, ledger.VariantRT, rtKernel},
		{armDTK, "arm64", armKernel, ledger.Variant64K, k64Kernel},
	} {
		got, err := v.Carried(context.Background(), c.dtk, c.arch, c.kernel)
		if err != nil || len(got.Missing) != 0 || len(got.Variants) != 1 || got.Variants[0].Variant != c.variant || got.Variants[0].KernelFull != c.variantKernel || len(got.Variants[0].Missing) != 0 {
			t.Errorf("%s DTK carries %+v, %v; want its %s kernel %s, complete", c.arch, got, err, c.variant, c.variantKernel)
		}
	}
	for _, tc := range []struct {
		name       string
		arch, dtk  string
		modules    map[string][]byte
		kernelFull string // what the image is checked for
		want       []string
		accept     bool
	}{
		{name: "an RT module for the +rt kernel", arch: "amd64", dtk: x86DTK, accept: true,
			modules: kmodtest.Modules(kmodtest.FlavourRT, rtKernel), kernelFull: rtKernel},
		{name: "a default module for the default kernel", arch: "amd64", dtk: x86DTK, accept: true,
			modules: kmodtest.Modules(kmodtest.FlavourCloud, x86Kernel), kernelFull: x86Kernel},
		{name: "an RT module for the default kernel", arch: "amd64", dtk: x86DTK,
			modules: kmodtest.Modules(kmodtest.FlavourRT, rtKernel), kernelFull: x86Kernel,
			want: []string{"dtkbot_hello.ko: vermagic: built for kernel " + rtKernel + ", not " + x86Kernel, "6 symbol versions differ from kernel " + x86Kernel + "'s"}},
		{name: "an RT build named for the default kernel: preempt_rt and the CRCs", arch: "amd64", dtk: x86DTK,
			modules: kmodtest.Modules(kmodtest.FlavourRT, x86Kernel), kernelFull: x86Kernel,
			want: []string{`flags "SMP preempt_rt mod_unload modversions" differ from the kernel's "SMP preempt mod_unload modversions"`, "6 symbol versions differ"}},
		{name: "a default build named for the +rt kernel", arch: "amd64", dtk: x86DTK,
			modules: kmodtest.Modules(kmodtest.FlavourCloud, rtKernel), kernelFull: rtKernel,
			want: []string{"6 symbol versions differ from kernel " + rtKernel + "'s"}},
		{name: "a 64k module for the +64k kernel", arch: "arm64", dtk: armDTK, accept: true,
			modules: kmodtest.ModulesArm64(kmodtest.Pages64K, k64Kernel), kernelFull: k64Kernel},
		{name: "a 4k module for the 4k kernel", arch: "arm64", dtk: armDTK, accept: true,
			modules: kmodtest.ModulesArm64(kmodtest.Pages4K, armKernel), kernelFull: armKernel},
		{name: "a 4k module for the +64k kernel", arch: "arm64", dtk: armDTK,
			modules: kmodtest.ModulesArm64(kmodtest.Pages4K, armKernel), kernelFull: k64Kernel,
			want: []string{"built for kernel " + armKernel + ", not " + k64Kernel, "4 symbol versions differ from kernel " + k64Kernel + "'s"}},
		{name: "a 4k build named for the +64k kernel: the CRCs", arch: "arm64", dtk: armDTK,
			modules: kmodtest.ModulesArm64(kmodtest.Pages4K, k64Kernel), kernelFull: k64Kernel,
			want: []string{"dtkbot_hello.ko: 4 symbol versions differ from kernel " + k64Kernel + "'s (disagrees about version of symbol kmalloc_caches, kmalloc_trace, param_ops_int, module_layout)"}},
		{name: "a 64k module for the 4k kernel", arch: "arm64", dtk: armDTK,
			modules: kmodtest.ModulesArm64(kmodtest.Pages64K, k64Kernel), kernelFull: armKernel,
			want: []string{"built for kernel " + k64Kernel + ", not " + armKernel}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "opt/lib/modules/" + tc.kernelFull + "/"
			var files []payloadtest.TarEntry
			for _, n := range kmodtest.ModuleNames {
				files = append(files, payloadtest.File(path+"extra/"+n+".ko", tc.modules[n+".ko"]))
			}
			image := w.PushImage("acme/kmod", "", payloadtest.Image{OCI: true, Arch: tc.arch, Layers: [][]byte{payloadtest.TarGz(files...)}}).Pullspec
			res, err := v.VerifyKmod(context.Background(), KmodCheck{Image: image, Arch: tc.arch, KernelFull: tc.kernelFull, ModulePath: path, DTK: tc.dtk})
			if tc.accept {
				if err != nil || res.Checked != "vermagic, symbol versions, dependencies" {
					t.Errorf("rejected: %v (checked %q)", err, res.Checked)
				}
				return
			}
			if !errors.Is(err, ErrWontLoad) {
				t.Fatalf("%v, want ErrWontLoad", err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the verdict does not say %q:\n%v", want, err)
				}
			}
		})
	}
}

// TestCarriedVariantWithUnreadableFiles: an RT kernel whose Module.symvers
// does not parse makes that variant's images uncheckable (its files are
// missing, readably said), not the whole DTK: the default kernel's files
// are still read.
func TestCarriedVariantWithUnreadableFiles(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	var entries []payloadtest.TarEntry
	entries = append(entries, dtkRelease(x86Kernel, rtKernel, not64K))
	entries = append(entries, citest.DTKKernelFiles(x86Kernel, "", false)...)
	for _, e := range citest.DTKKernelFiles(rtKernel, kmodtest.RT, false) {
		if strings.HasSuffix(e.Name, "/Module.symvers") {
			e = payloadtest.File(e.Name, []byte("0xzz\tnot a symbol version line\n"))
		}
		entries = append(entries, e)
	}
	p := w.PushImage("acme/dtk", "", payloadtest.Image{OCI: true, Arch: "amd64", Layers: [][]byte{payloadtest.TarGz(entries...)}})
	v := &Kmod{Registry: testClient(), Limits: imageread.DefaultLimits()}
	got, err := v.Carried(context.Background(), p.Pullspec, "amd64", x86Kernel)
	if err != nil {
		t.Fatalf("one variant's unreadable files fail the whole DTK: %v", err)
	}
	if len(got.Missing) != 0 || len(got.Variants) != 1 || len(got.Variants[0].Missing) != 1 || !strings.Contains(got.Variants[0].Missing[0], "readable kernel files") {
		t.Errorf("%+v", got)
	}
}
