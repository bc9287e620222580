package kmod

import (
	"testing"
)

// The arm64 kernels of testdata (make-arm64-modules.sh): one build of
// Debian's 6.1.192 source with 4 KB pages and one with 64 KB pages
// (CONFIG_ARM64_64K_PAGES, RHEL's kernel-64k), named as RHEL names them.
const (
	arm64  = "6.1.192-dtkbot-arm64"
	arm64K = arm64 + "+64k"
)

// The symbols the test modules use whose CRCs differ between the 4 KB- and
// the 64 KB-page kernel (their Module.symvers: 2,085 of 3,634 symbols
// differ): the types behind them depend on PAGE_SHIFT (kmalloc_caches'
// array bound, KMALLOC_SHIFT_HIGH; struct module and struct kernel_param
// through them).
var (
	pagesDifferingHello = []string{"kmalloc_caches", "kmalloc_trace", "module_layout", "param_ops_int"}
	pagesDifferingUser  = []string{"module_layout"}
)

// variantCases are the verdicts on the kernels of another variant: a
// module loads on the kernel of its own variant only. RHEL's variants are
// named by the release (vermagic's first word: "+64k", "+rt"), and each
// has its own symbol versions.
func variantCases() []checkCase {
	pagesCRCs := func(t *testing.T, r *Report) {
		wantCRCs(t, moduleReport(t, r, "dtkbot_hello"), pagesDifferingHello...)
		wantCRCs(t, moduleReport(t, r, "dtkbot_user"), pagesDifferingUser...)
	}
	return []checkCase{
		{name: "4k arm64 modules on the 4k kernel", files: both(arm64, ""), kernel: kernelOf(arm64), accept: true,
			want: []string{"2 modules load on 6.1.192-dtkbot-arm64 (vermagic, symbol versions, dependencies checked)"}},
		{name: "64k modules on the +64k kernel: its own Module.symvers and vermagic", files: both(arm64K, ""), kernel: kernelOf(arm64K), accept: true,
			want: []string{"2 modules load on 6.1.192-dtkbot-arm64+64k (vermagic, symbol versions, dependencies checked)"}},
		{name: "4k modules on the +64k kernel: vermagic and CRCs differ", files: both(arm64, ""), kernel: kernelOf(arm64K), accept: false,
			want:  []string{"built for kernel 6.1.192-dtkbot-arm64, not 6.1.192-dtkbot-arm64+64k", "disagrees about version of symbol kmalloc_caches"},
			check: pagesCRCs},
		{name: "64k modules on the 4k kernel: vermagic and CRCs differ", files: both(arm64K, ""), kernel: kernelOf(arm64), accept: false,
			want:  []string{"built for kernel 6.1.192-dtkbot-arm64+64k, not 6.1.192-dtkbot-arm64", "disagrees about version of symbol module_layout"},
			check: pagesCRCs},
		{name: "4k modules on the +64k kernel, release ignored: the flags agree (arm64's vermagic has no page size), the CRCs refuse",
			files: both(arm64, ""), kernel: kernelOf(arm64K), opts: CheckOptions{IgnoreRelease: true}, accept: false,
			want: []string{"dtkbot_hello: 4 symbol versions differ from kernel 6.1.192-dtkbot-arm64+64k's (disagrees about version of symbol kmalloc_caches, kmalloc_trace, param_ops_int, module_layout)"},
			check: func(t *testing.T, r *Report) {
				for _, m := range r.Modules {
					if !m.Vermagic.OK {
						t.Errorf("%s: vermagic %+v: the flags of both builds are %q", m.Name, m.Vermagic, "SMP preempt mod_unload modversions aarch64")
					}
				}
				pagesCRCs(t, r)
			}},
		{name: "x86_64 modules on the +64k kernel: another machine", files: both(cloud, ""), kernel: kernelOf(arm64K), accept: false,
			want: []string{"built for EM_X86_64, the kernel is EM_AARCH64", "built for kernel 6.1.0-57-cloud-amd64, not 6.1.192-dtkbot-arm64+64k"}},
		{name: "aarch64 modules on an x86_64 kernel", files: both(arm64, ""), kernel: kernelOf(cloud), accept: false,
			want: []string{"built for EM_AARCH64, the kernel is EM_X86_64"}},
		{name: "RT modules on the standard kernel, release ignored: preempt_rt and the CRCs refuse", files: both(rt, ""), kernel: kernelOf(cloud),
			opts: CheckOptions{IgnoreRelease: true}, accept: false,
			want: []string{`flags "SMP preempt_rt mod_unload modversions" differ`, "disagrees about version of symbol mutex_lock"},
			check: func(t *testing.T, r *Report) {
				wantCRCs(t, moduleReport(t, r, "dtkbot_hello"), rtDiffering...)
				wantCRCs(t, moduleReport(t, r, "dtkbot_user"), "module_layout")
			}},
	}
}

// TestCheckVariants: 4k and 64k arm64 modules each load on their own
// kernel only, and an RT module on the RT kernel only (the RT cases of
// the standard set are checkCases'), each refusal with the loader's
// reasons. Committed material only: make-modules.sh does not build the
// arm64 kernels (make-arm64-modules.sh does, in about 10 minutes).
func TestCheckVariants(t *testing.T) { runCheckCases(t, committed, variantCases()) }
