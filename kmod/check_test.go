package kmod

import (
	"slices"
	"strings"
	"testing"
)

// checkCase is one verdict the checker must reach on real modules, and
// why. Each names the modules of testdata it puts under the module path.
type checkCase struct {
	name string
	// files are the image's modules: file name -> (kernel, variant) of
	// testdata/modules/<kernel>/<variant>/<file>.
	files  map[string]source
	kernel func(t testing.TB) *Kernel // default: cloud with all its files
	certs  []string
	opts   CheckOptions
	accept bool
	// want are substrings of the reason or of a module's problems; check
	// inspects the report further.
	want  []string
	check func(t *testing.T, r *Report)
}

type source struct{ kernel, variant string }

var (
	both = func(kernel, variant string) map[string]source {
		return map[string]source{"dtkbot_hello.ko": {kernel, variant}, "dtkbot_user.ko": {kernel, variant}}
	}
	// The symbols of dtkbot_hello whose CRCs differ between the standard
	// and the RT build of 6.1.0-57 (their Module.symvers).
	rtDiffering = []string{"kmalloc_caches", "kmalloc_trace", "module_layout", "mutex_lock", "mutex_unlock", "param_ops_int"}
)

func checkCases() []checkCase {
	return []checkCase{
		{name: "right kernel", files: both(cloud, ""), accept: true,
			want: []string{"2 modules load on 6.1.0-57-cloud-amd64", "symbol versions"},
			check: func(t *testing.T, r *Report) {
				user := moduleReport(t, r, "dtkbot_user")
				if !user.Vermagic.OK || len(user.UnresolvedDepends)+len(user.UncheckedDepends) != 0 || r.DependenciesFrom != "modules.dep and modules.builtin" {
					t.Errorf("dtkbot_user (depends on crc-itu-t and dtkbot_hello): %+v, dependencies from %s", user, r.DependenciesFrom)
				}
			}},
		{name: "the module a node loads is not in the image", files: both(cloud, ""), opts: CheckOptions{Load: "simple-kmod"}, accept: false,
			want: []string{"the module a node loads, simple-kmod (modprobe), is not under", "the image holds dtkbot_hello.ko, dtkbot_user.ko"}},
		{name: "the module a node loads, named as modprobe may", files: both(cloud, ""), opts: CheckOptions{Load: "dtkbot-user"}, accept: true,
			want: []string{"2 modules load on 6.1.0-57-cloud-amd64"}},
		{name: "RT modules on the standard kernel: vermagic and CRCs differ", files: both(rt, ""), accept: false,
			want: []string{"built for kernel 6.1.0-57-rt-amd64, not 6.1.0-57-cloud-amd64"},
			check: func(t *testing.T, r *Report) {
				wantCRCs(t, moduleReport(t, r, "dtkbot_hello"), rtDiffering...)
				wantCRCs(t, moduleReport(t, r, "dtkbot_user"), "module_layout")
			}},
		{name: "RT modules on the RT kernel", files: both(rt, ""), kernel: kernelOf(rt), accept: true,
			want: []string{"2 modules load on 6.1.0-57-rt-amd64 (vermagic, symbol versions, dependencies checked)"}},
		{name: "standard modules on the RT kernel", files: both(cloud, ""), kernel: kernelOf(rt), accept: false,
			want: []string{"built for kernel 6.1.0-57-cloud-amd64, not 6.1.0-57-rt-amd64"},
			check: func(t *testing.T, r *Report) {
				hello := moduleReport(t, r, "dtkbot_hello")
				wantCRCs(t, hello, rtDiffering...)
				if c := hello.CRCMismatches[slices.IndexFunc(hello.CRCMismatches, func(c CRCMismatch) bool { return c.Symbol == "mutex_lock" })]; c.Module != "0x4dfa8d4b" || c.Kernel != "0x5de130f5" || c.From != "vmlinux" {
					t.Errorf("mutex_lock: %+v, want the module's 0x4dfa8d4b against vmlinux's 0x5de130f5", c)
				}
			}},
		{name: "RT modules, release ignored (would they load?): the flags and CRCs still differ", files: both(rt, ""),
			opts: CheckOptions{IgnoreRelease: true}, accept: false,
			want: []string{`flags "SMP preempt_rt mod_unload modversions" differ from the kernel's "SMP preempt mod_unload modversions"`}},
		{name: "RT modules, the kernel's vermagic unknown: preempt_rt says RT", files: both(rt, ""),
			kernel: func(t testing.TB) *Kernel { k := testKernel(t, cloud); k.Vermagic = ""; return k },
			opts:   CheckOptions{IgnoreRelease: true}, accept: false,
			want: []string{"built for a PREEMPT_RT kernel (preempt_rt); 6.1.0-57-cloud-amd64 is not one"}},
		{name: "another ABI of the same flavour: vermagic names another kernel", files: both(older, ""), accept: false,
			want: []string{"built for kernel 6.1.0-56-cloud-amd64, not 6.1.0-57-cloud-amd64"},
			check: func(t *testing.T, r *Report) {
				for _, m := range r.Modules {
					if len(m.CRCMismatches) > 0 {
						t.Errorf("%s: CRC mismatches %v: 6.1.0-56 and -57 export the same symbol versions", m.Name, m.CRCMismatches)
					}
				}
			}},
		{name: "another ABI of the same flavour, release ignored: the kABI it uses is kept, it would load", files: both(older, ""),
			opts: CheckOptions{IgnoreRelease: true}, accept: true},
		{name: "signed right (issuer and serial, sha256)", files: both(cloud, "signed"), certs: []string{"trusted.pem"}, accept: true,
			want: []string{"signatures checked"},
			check: func(t *testing.T, r *Report) {
				s := moduleReport(t, r, "dtkbot_hello").Signature
				if !s.Verified || s.Signer != "CN=dtkbot test signing key (trusted),O=dtkbot tests" || s.Hash != "sha256" || s.Algorithm != "RSA" || s.Serial == "" {
					t.Errorf("signature %+v", s)
				}
			}},
		{name: "signed right (subject key identifier, sha512), DER certificate", files: both(cloud, "signed-keyid"), certs: []string{"trusted.der"}, accept: true,
			check: func(t *testing.T, r *Report) {
				s := moduleReport(t, r, "dtkbot_user").Signature
				if !s.Verified || s.KeyID == "" || s.Issuer != "" || s.Hash != "sha512" || !strings.Contains(s.Signer, "(trusted)") {
					t.Errorf("signature %+v", s)
				}
			}},
		{name: "signed right (ECDSA P-384, sha384)", files: both(cloud, "signed-ecdsa"), certs: []string{"trusted.pem", "trusted-ec.pem"}, accept: true,
			check: func(t *testing.T, r *Report) {
				if s := moduleReport(t, r, "dtkbot_hello").Signature; !s.Verified || s.Algorithm != "ECDSA" || s.Hash != "sha384" {
					t.Errorf("signature %+v", s)
				}
			}},
		{name: "signed by another key", files: both(cloud, "signed-other"), certs: []string{"trusted.pem"}, accept: false,
			want: []string{"signed by CN=dtkbot test signing key (not trusted),O=dtkbot tests serial", "none of the 1 trusted certificates"}},
		{name: "ECDSA-signed, only the RSA key trusted", files: both(cloud, "signed-ecdsa"), certs: []string{"trusted.pem"}, accept: false,
			want: []string{"none of the 1 trusted certificates"}},
		{name: "signed with signed attributes (the kernel refuses them in a module signature)", certs: []string{"trusted.pem"}, accept: false,
			files: map[string]source{"dtkbot_hello.ko": {cloud, "signed-attrs"}},
			want:  []string{"it has signed attributes, which the kernel refuses"}},
		{name: "tampered after signing", accept: false, certs: []string{"trusted.pem"},
			files: map[string]source{"dtkbot_hello.ko": {cloud, "tampered"}, "dtkbot_user.ko": {cloud, "signed"}},
			want:  []string{"1 of 2 modules would not load", "dtkbot_hello: signature: the signature does not verify"}},
		{name: "unsigned, certificates given", files: both(cloud, ""), certs: []string{"trusted.pem"}, accept: false,
			want: []string{"not signed: a node that enforces module signatures (Secure Boot) refuses it"}},
		{name: "signed, no certificates given: reported, not required", files: both(cloud, "signed-other"), accept: true,
			check: func(t *testing.T, r *Report) {
				if s := moduleReport(t, r, "dtkbot_hello").Signature; !s.Signed || s.Verified || !strings.Contains(s.Signer, "(not trusted)") || r.SignaturesChecked {
					t.Errorf("signature %+v", s)
				}
			}},
		{name: "compressed: .ko.xz (CRC32 check), signed", files: map[string]source{"dtkbot_hello.ko.xz": {cloud, "signed"}, "dtkbot_user.ko.xz": {cloud, "signed"}},
			certs: []string{"trusted.pem"}, accept: true, check: wantCompression(CompressionXZ)},
		{name: "compressed: .ko.zst, signed", files: map[string]source{"dtkbot_hello.ko.zst": {cloud, "signed"}, "dtkbot_user.ko.zst": {cloud, "signed"}},
			certs: []string{"trusted.pem"}, accept: true, check: wantCompression(CompressionZstd)},
		{name: "compressed: .ko.gz, signed", files: map[string]source{"dtkbot_hello.ko.gz": {cloud, "signed"}, "dtkbot_user.ko.gz": {cloud, "signed"}},
			certs: []string{"trusted.pem"}, accept: true, check: wantCompression(CompressionGzip)},
		{name: "a module whose dependency is missing", files: map[string]source{"dtkbot_user.ko": {cloud, ""}}, accept: false,
			want: []string{"depends on modules that are neither kernel 6.1.0-57-cloud-amd64's nor in the image: dtkbot_hello"},
			check: func(t *testing.T, r *Report) {
				u := moduleReport(t, r, "dtkbot_user")
				if !slices.Equal(u.UnresolvedDepends, []string{"dtkbot_hello"}) || !slices.Equal(u.UnresolvedSymbols, []string{"dtkbot_hello_greet"}) {
					t.Errorf("dtkbot_user: depends %v, symbols %v; want dtkbot_hello and dtkbot_hello_greet (crc-itu-t is the kernel's)", u.UnresolvedDepends, u.UnresolvedSymbols)
				}
			}},
		{name: "Module.symvers alone: in-tree dependencies from its exporters", files: both(cloud, ""), accept: true,
			kernel: func(t testing.TB) *Kernel {
				k, err := NewKernel(cloud, kernelFile(t, cloud, "Module.symvers"), nil, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				return k
			},
			check: func(t *testing.T, r *Report) {
				if !strings.HasPrefix(r.DependenciesFrom, "Module.symvers") || !r.ABIChecked {
					t.Errorf("dependencies from %q, ABI checked %v", r.DependenciesFrom, r.ABIChecked)
				}
			}},
		{name: "Module.symvers alone, the dependency missing", files: map[string]source{"dtkbot_user.ko": {cloud, ""}}, accept: false,
			kernel: func(t testing.TB) *Kernel {
				k, _ := NewKernel(cloud, kernelFile(t, cloud, "Module.symvers"), nil, nil, nil)
				return k
			},
			want: []string{"dtkbot_hello"}},
		{name: "no kernel files, ABI required (a DTK without them)", files: both(cloud, ""), accept: false,
			kernel: func(t testing.TB) *Kernel { return &Kernel{Release: cloud} }, opts: CheckOptions{RequireABI: true},
			want: []string{"no Module.symvers of kernel 6.1.0-57-cloud-amd64"}},
		{name: "no kernel files, ABI not required: vermagic and the image's own dependencies", files: both(cloud, ""), accept: true,
			kernel: func(t testing.TB) *Kernel { return &Kernel{Release: cloud} },
			check: func(t *testing.T, r *Report) {
				if r.ABIChecked || !slices.Equal(moduleReport(t, r, "dtkbot_user").UncheckedDepends, []string{"crc-itu-t"}) {
					t.Errorf("ABI checked %v, unchecked depends %v", r.ABIChecked, moduleReport(t, r, "dtkbot_user").UncheckedDepends)
				}
			}},
		{name: "an image module replacing an in-tree one: its exports win over the in-tree module's", files: both(cloud, ""), accept: true,
			kernel: func(t testing.TB) *Kernel {
				k := testKernel(t, cloud)
				k.Symvers["dtkbot_hello_greet"] = Symbol{CRC: 0x12345678, Module: "drivers/misc/dtkbot_hello"}
				return k
			}},
		{name: "a module exporting a symbol vmlinux exports", files: both(cloud, ""), accept: false,
			kernel: func(t testing.TB) *Kernel {
				k := testKernel(t, cloud)
				k.Symvers["dtkbot_hello_greet"] = Symbol{CRC: 0x31e32a79, Module: "vmlinux"}
				return k
			},
			want: []string{"dtkbot_hello: exports symbols the kernel itself exports (exports duplicate symbol): dtkbot_hello_greet"}},
		{name: "no module at all", files: map[string]source{}, accept: false, want: []string{"no kernel module under /opt/lib/modules/6.1.0-57-cloud-amd64/"}},
	}
}

func kernelOf(release string) func(t testing.TB) *Kernel {
	return func(t testing.TB) *Kernel { return testKernel(t, release) }
}

func moduleReport(t *testing.T, r *Report, name string) ModuleReport {
	t.Helper()
	for _, m := range r.Modules {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no module %s in the report: %+v", name, r.Modules)
	return ModuleReport{}
}

func wantCRCs(t *testing.T, m ModuleReport, symbols ...string) {
	t.Helper()
	var got []string
	for _, c := range m.CRCMismatches {
		got = append(got, c.Symbol)
	}
	slices.Sort(got)
	if !slices.Equal(got, symbols) {
		t.Errorf("%s: CRC mismatches %v, want %v", m.Name, got, symbols)
	}
	if len(symbols) > 0 && !slices.ContainsFunc(m.Problems, func(p string) bool { return strings.Contains(p, "disagrees about version of symbol") }) {
		t.Errorf("%s: problems %v do not name the mismatch", m.Name, m.Problems)
	}
}

func wantCompression(c string) func(t *testing.T, r *Report) {
	return func(t *testing.T, r *Report) {
		for _, m := range r.Modules {
			if m.Compression != c || !m.Signature.Verified {
				t.Errorf("%s: compression %q, signature %+v", m.Path, m.Compression, m.Signature)
			}
		}
	}
}

// runCheckCases checks every case on the modules of m.
func runCheckCases(t *testing.T, m material, cases []checkCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := &Image{Pullspec: "example.com/kmod:test", ModulePath: DefaultModulePath(cloud)}
			for file, src := range tc.files {
				mod := m.parsed(t, src.kernel, src.variant, file)
				mod.Layer = 1
				img.Modules = append(img.Modules, mod)
			}
			k := testKernel(t, cloud)
			if tc.kernel != nil {
				k = tc.kernel(t)
			}
			img.ModulePath = DefaultModulePath(k.Release)
			opts := tc.opts
			if len(tc.certs) > 0 {
				opts.Certs = m.certs(t, tc.certs...)
			}
			r := Check(img, k, opts)
			if r.Accepted != tc.accept {
				t.Fatalf("accepted %v, want %v: %s\n%+v", r.Accepted, tc.accept, r.Reason, r.Modules)
			}
			said := r.Reason
			for _, mr := range r.Modules {
				said += "\n" + strings.Join(mr.Problems, "\n")
			}
			for _, w := range tc.want {
				if !strings.Contains(said, w) {
					t.Errorf("the report does not say %q:\n%s", w, said)
				}
			}
			if !tc.accept && r.Reason == "" {
				t.Error("rejected without a reason")
			}
			for _, mr := range r.Modules {
				if mr.Loads != (len(mr.Problems) == 0) {
					t.Errorf("%s: loads %v with problems %v", mr.Name, mr.Loads, mr.Problems)
				}
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func TestCheckRealModules(t *testing.T) { runCheckCases(t, committed, checkCases()) }

// TestCheckLicenseAndNamespaces: a module that is not GPL-compatible
// cannot use GPL-only symbols, and a namespaced symbol needs its namespace
// imported (kernel/module/main.c: resolve_symbol,
// verify_namespace_is_imported).
func TestCheckLicenseAndNamespaces(t *testing.T) {
	for _, tc := range []struct {
		name      string
		license   string
		importNS  []string
		gplOnly   bool
		namespace string
		want      string
	}{
		{name: "GPL module, GPL-only symbol", license: "GPL", gplOnly: true},
		{name: "proprietary module, GPL-only symbol", license: "Proprietary", gplOnly: true, want: `uses GPL-only symbols (crc_itu_t, dtkbot_hello_greet) but its license "Proprietary"`},
		{name: "dual-licensed module, GPL-only symbol", license: "Dual BSD/GPL", gplOnly: true},
		{name: "namespace not imported", license: "GPL", namespace: "CRC", want: "without importing their namespace (MODULE_IMPORT_NS): crc_itu_t (CRC)"},
		{name: "namespace imported", license: "GPL", namespace: "CRC", importNS: []string{"CRC"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := testKernel(t, cloud)
			s := k.Symvers["crc_itu_t"]
			s.GPLOnly, s.Namespace = tc.gplOnly, tc.namespace
			k.Symvers["crc_itu_t"] = s
			hello, user := committed.parsed(t, cloud, "", "dtkbot_hello.ko"), committed.parsed(t, cloud, "", "dtkbot_user.ko")
			user.Info.License, user.Info.ImportNS = tc.license, tc.importNS
			r := Check(&Image{ModulePath: DefaultModulePath(cloud), Modules: []*Module{hello, user}}, k, CheckOptions{})
			problems := strings.Join(moduleReport(t, r, "dtkbot_user").Problems, "\n")
			if tc.want == "" && !r.Accepted || tc.want != "" && !strings.Contains(problems, tc.want) {
				t.Errorf("accepted %v, problems %q, want %q", r.Accepted, problems, tc.want)
			}
		})
	}
}
