package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/kmod"
	"github.com/dtkbot/dtkbot/releaseinfo"
)

// The real modules and kernel files of package kmod's tests (see
// kmod/testdata/README.md).
const (
	kmodTestdata = "../../kmod/testdata"
	testKernel   = "6.1.0-57-cloud-amd64"
	testRT       = "6.1.0-57-rt-amd64"
)

func testdataFile(t *testing.T, parts ...string) []byte {
	t.Helper()
	p := filepath.Join(append([]string{kmodTestdata}, parts...)...)
	if data, err := os.ReadFile(p); err == nil {
		return data
	}
	raw, err := os.ReadFile(p + ".xz")
	if err != nil {
		t.Fatal(err)
	}
	r, err := xz.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// kmodWorld is a registry with a DTK carrying the kernel's files and kmod
// images of real modules.
type kmodWorld struct {
	srv      *registrytest.Server
	w        *payloadtest.World
	dtk      string // with /etc/driver-toolkit/<kernel>/
	bareDTK  string // without
	dir      string
	certFile string
}

func newKmodWorld(t *testing.T) *kmodWorld {
	t.Helper()
	srv := registrytest.New().Server()
	t.Cleanup(srv.Close)
	kw := &kmodWorld{srv: srv, w: payloadtest.New(srv.Registry, srv.Host()), dir: kmod.DefaultModulePath(testKernel),
		certFile: filepath.Join(kmodTestdata, "certs", "trusted.pem")}
	release, _ := json.Marshal(map[string]string{"KERNEL_VERSION": testKernel, "RT_KERNEL_VERSION": "package kernel-rt-core is not installed", "RHEL_VERSION": "9.4"})
	entries := []payloadtest.TarEntry{payloadtest.File("etc/driver-toolkit-release.json", release)}
	for _, f := range releaseinfo.KernelFileNames {
		entries = append(entries, payloadtest.File(releaseinfo.KernelFilesDir+testKernel+"/"+f, testdataFile(t, "kernels", testKernel, f)))
	}
	base := payloadtest.NoiseLayer("dtk-packages", 1<<20)
	kw.dtk = kw.w.PushImage("acme/driver-toolkit", testKernel, payloadtest.Image{OCI: true, Layers: [][]byte{base, payloadtest.TarGz(entries...)}}).Pullspec
	kw.bareDTK = kw.w.PushImage("acme/driver-toolkit", "bare", payloadtest.Image{OCI: true, Layers: [][]byte{base, payloadtest.TarGz(entries[0])}}).Pullspec
	return kw
}

// image pushes a kmod image holding files (name -> testdata/modules path).
func (kw *kmodWorld) image(t *testing.T, tag string, files map[string]string) string {
	t.Helper()
	entries := []payloadtest.TarEntry{payloadtest.File("usr/bin/cp", []byte("cp"))}
	for name, src := range files {
		entries = append(entries, payloadtest.File(kw.dir+name, testdataFile(t, "modules", src)))
	}
	kw.w.PushImage("acme/simple-kmod", tag, payloadtest.Image{OCI: true, Layers: [][]byte{payloadtest.TarGz(entries...)}})
	return kw.srv.Host() + "/acme/simple-kmod:" + tag
}

// TestKmodCheck runs `dtkbot kmod check` against a local registry: the
// exit code says accept (0), reject (1) or could not tell (2), the table
// and the JSON name each module, the symbols whose CRCs differ, the missing
// dependencies and the signer.
func TestKmodCheck(t *testing.T) {
	kw := newKmodWorld(t)
	good := kw.image(t, "good", map[string]string{"dtkbot_hello.ko": testKernel + "/dtkbot_hello.ko", "dtkbot_user.ko": testKernel + "/dtkbot_user.ko"})
	rtBuilt := kw.image(t, "rt", map[string]string{"dtkbot_hello.ko": testRT + "/dtkbot_hello.ko", "dtkbot_user.ko": testRT + "/dtkbot_user.ko"})
	signed := kw.image(t, "signed", map[string]string{"dtkbot_hello.ko.xz": testKernel + "/signed/dtkbot_hello.ko.xz", "dtkbot_user.ko.zst": testKernel + "/signed/dtkbot_user.ko.zst"})
	alone := kw.image(t, "alone", map[string]string{"dtkbot_user.ko": testKernel + "/dtkbot_user.ko"})
	symvers := filepath.Join(t.TempDir(), "Module.symvers")
	if err := os.WriteFile(symvers, testdataFile(t, "kernels", testKernel, "Module.symvers"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := []string{"--tls-verify=false", "--registries-conf=/dev/null"}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string // in stdout
	}{
		{"accepted, with the DTK's kernel files", []string{good, "--dtk", kw.dtk}, exitAccepted,
			[]string{"verdict: ACCEPTED: 2 modules load on 6.1.0-57-cloud-amd64", "dtkbot_user.ko", "Module.symvers (14415 symbols)"}},
		{"the RT build: CRCs named", []string{rtBuilt, "--dtk", kw.dtk}, exitRejected,
			[]string{"verdict: REJECTED", "WRONG", "6 differ: mutex_lock, mutex_unlock, kmalloc_caches", "mutex_lock is 0x5de130f5 in the module, 0x4dfa8d4b in vmlinux"}},
		{"a missing dependency, with --symvers", []string{alone, "--symvers", symvers}, exitRejected,
			[]string{"missing: dtkbot_hello", "unresolved: dtkbot_hello_greet"}},
		{"--symvers alone: in-tree dependencies from its exporters", []string{good, "--symvers", symvers}, exitAccepted, []string{"ACCEPTED"}},
		{"signed and compressed, certificate given", []string{signed, "--dtk", kw.dtk, "--cert", kw.certFile}, exitAccepted,
			[]string{"CN=dtkbot test signing key (trusted),O=dtkbot tests (sha256), verified", "signatures checked"}},
		{"unsigned, certificate given", []string{good, "--dtk", kw.dtk, "--cert", kw.certFile}, exitRejected, []string{"unsigned", "Secure Boot"}},
		{"a DTK without the kernel's files", []string{good, "--dtk", kw.bareDTK}, exitRejected,
			[]string{"no Module.symvers of kernel 6.1.0-57-cloud-amd64", "the driver-toolkit image has no etc/driver-toolkit/6.1.0-57-cloud-amd64/Module.symvers"}},
		{"no kernel files at all: what can be checked", []string{good}, exitAccepted, []string{"not checked", "no --dtk or --symvers"}},
		{"another module path", []string{good, "--dtk", kw.dtk, "--module-path", "lib/modules/" + testKernel}, exitRejected,
			[]string{"no kernel module under /lib/modules/6.1.0-57-cloud-amd64/ (its modules are elsewhere: opt/lib/modules/"}},
		{"without the module KMM loads", []string{good, "--dtk", kw.dtk, "--module", "simple-kmod"}, exitRejected,
			[]string{"the module a node loads, simple-kmod (modprobe), is not under /opt/lib/modules/6.1.0-57-cloud-amd64/: the image holds dtkbot_hello.ko, dtkbot_user.ko"}},
		{"with the module KMM loads", []string{good, "--dtk", kw.dtk, "--module", "dtkbot-user"}, exitAccepted, []string{"ACCEPTED"}},
		{"the image is not there", []string{kw.srv.Host() + "/acme/simple-kmod:missing", "--dtk", kw.dtk}, exitCouldNotTell, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"kmod", "check"}, tc.args...), "--kernel", testKernel)
			code, stdout, stderr := runCLI(t, append(args, reg...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, stdout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("the output does not say %q:\n%s", w, stdout)
				}
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, append([]string{"kmod", "check", rtBuilt, "--kernel", testKernel, "--dtk", kw.dtk, "-o", "json"}, reg...)...)
		if code != exitRejected {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var r kmod.Report
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("%v: %s", err, stdout)
		}
		hello := r.Modules[0]
		if r.Accepted || !r.ABIChecked || hello.Name != "dtkbot_hello" || len(hello.CRCMismatches) != 6 || hello.Vermagic.OK ||
			hello.CRCMismatches[0].Symbol != "mutex_lock" || hello.CRCMismatches[0].Kernel != "0x4dfa8d4b" {
			t.Errorf("%+v", r)
		}
		for _, key := range []string{`"crc_mismatches"`, `"exported_by": "vmlinux"`, `"vermagic"`, `"loads": false`, `"reason"`} {
			if !strings.Contains(stdout, key) {
				t.Errorf("the JSON has no %s", key)
			}
		}
	})

	t.Run("the registry failing: could not tell", func(t *testing.T) {
		kw.srv.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		})
		defer func() { kw.srv.SetIntercept(nil) }()
		code, stdout, stderr := runCLI(t, append([]string{"kmod", "check", good, "--kernel", testKernel, "--dtk", kw.dtk}, reg...)...)
		if code != exitCouldNotTell || !strings.Contains(stderr, "503") {
			t.Errorf("exit %d\n%s%s", code, stdout, stderr)
		}
	})

	for name, args := range map[string][]string{
		"no image":           {"kmod", "check", "--kernel", testKernel},
		"no kernel":          {"kmod", "check", good},
		"a kernel of spaces": {"kmod", "check", good, "--kernel", "a b"},
		"both sources":       {"kmod", "check", good, "--kernel", testKernel, "--dtk", kw.dtk, "--symvers", symvers},
		"a bad output":       {"kmod", "check", good, "--kernel", testKernel, "-o", "name"},
		"no verb":            {"kmod"},
		"a bad certificate":  {"kmod", "check", good, "--kernel", testKernel, "--cert", symvers},
	} {
		if code, _, stderr := runCLI(t, append(args, reg...)...); code != exitUsage || stderr == "" {
			t.Errorf("%s: exit %d, %q", name, code, stderr)
		}
	}
}

// TestKmodCheckModuleLimit: an image holding a whole kernel's module tree
// (1,121 modules, as a real kernel's has) is checked with the default
// limit; over --max-modules, the check cannot tell (exit 2, the limit
// named), where a fixed cap of 1,000 once rejected it (exit 1) without a
// verdict on any module.
func TestKmodCheckModuleLimit(t *testing.T) {
	kw := newKmodWorld(t)
	hello := testdataFile(t, "modules", testKernel, "dtkbot_hello.ko")
	entries := []payloadtest.TarEntry{payloadtest.File("usr/bin/cp", []byte("cp"))}
	for i := range 1121 {
		entries = append(entries, payloadtest.File(fmt.Sprintf("%skernel/drivers/m%04d/dtkbot_hello.ko", kw.dir, i), hello))
	}
	kw.w.PushImage("acme/simple-kmod", "tree", payloadtest.Image{OCI: true, Layers: [][]byte{payloadtest.TarGz(entries...)}})
	tree := kw.srv.Host() + "/acme/simple-kmod:tree"
	reg := []string{"--tls-verify=false", "--registries-conf=/dev/null", "--kernel", testKernel, "--dtk", kw.dtk}

	code, stdout, stderr := runCLI(t, append([]string{"kmod", "check", tree}, reg...)...)
	if code != exitAccepted || !strings.Contains(stdout, "1121 modules load") {
		t.Errorf("1,121 modules, the default limit: exit %d\n%s%s", code, shortened(stdout), stderr)
	}
	code, stdout, stderr = runCLI(t, append([]string{"kmod", "check", tree, "--max-modules", "1000"}, reg...)...)
	if code != exitCouldNotTell || !strings.Contains(stderr, "more than 1000 modules under /"+kw.dir) || !strings.Contains(stderr, "--max-modules") {
		t.Errorf("over --max-modules: exit %d\n%s%s", code, shortened(stdout), stderr)
	}
}

func shortened(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "..."
	}
	return s
}
