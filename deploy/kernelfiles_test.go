package deploy_test

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/need"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/kmod"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/releaseinfo"
)

// TestDTKRecipeWritesKernelFiles runs the recipe's last RUN, as a build
// would, over a fake root holding what kernel-core and kernel-devel (and
// their RT twins) install, with uname, rpm, modinfo and depmod stubbed; then
// pushes the /etc it wrote as the image's last layer and reads it back as
// dtkbot does (releaseinfo.ReadDTKFiles, kmod.NewKernel).
func TestDTKRecipeWritesKernelFiles(t *testing.T) {
	need.Command(t, "sh", "a POSIX shell")
	ins := parseContainerfile(t, "driver-toolkit/Containerfile")
	var last string
	for _, in := range ins {
		if in.op == "RUN" {
			last = in.args
		}
	}
	const vr = "5.14.0-427.37.1.el9_4"
	for _, tc := range []struct {
		name                      string
		arch                      string
		rtInstalled, k64Installed bool
		want                      []string
	}{
		{name: "with the RT kernel", arch: "x86_64", rtInstalled: true, want: []string{vr + ".x86_64", vr + ".x86_64+rt"}},
		{name: "without it", arch: "x86_64", want: []string{vr + ".x86_64"}},
		{name: "with the 64k kernel", arch: "aarch64", k64Installed: true, want: []string{vr + ".aarch64", vr + ".aarch64+64k"}},
		{name: "aarch64 without it", arch: "aarch64", want: []string{vr + ".aarch64"}},
	} {
		arch := tc.arch
		kernel, rt, k64 := vr+"."+arch, vr+"."+arch+"+rt", vr+"."+arch+"+64k"
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			script := last
			for _, p := range []string{"/usr/src/kernels/", "/lib/modules/", "/etc/"} {
				if !strings.Contains(script, p) {
					t.Fatalf("the last RUN does not use %s", p)
				}
				script = strings.ReplaceAll(script, `"`+p, `"`+root+p)
				script = strings.ReplaceAll(script, " "+p, " "+root+p)
			}
			for _, k := range []string{kernel, rt, k64} {
				write(t, root, "usr/src/kernels/"+k+"/Module.symvers", "0x4dfa8d4b\tmutex_lock\tvmlinux\tEXPORT_SYMBOL\t\n0x09a34a2b\tcrc_itu_t\tlib/crc-itu-t\tEXPORT_SYMBOL\t\n")
				write(t, root, "lib/modules/"+k+"/modules.builtin", "kernel/fs/ext4/ext4.ko\n")
				write(t, root, "lib/modules/"+k+"/kernel/lib/crc-itu-t.ko.xz", "a module")
			}
			// kernel-core's scriptlets made the standard kernel's modules.dep,
			// not the RT one's: the recipe runs depmod for it.
			write(t, root, "lib/modules/"+kernel+"/modules.dep", "kernel/lib/crc-itu-t.ko.xz:\n")
			write(t, root, "etc/os-release", "ID=rhel\n") // the base image's /etc
			bin := filepath.Join(root, "stub-bin")
			exit := map[bool]string{true: "0", false: "1"}
			stub(t, bin, "uname", "echo "+arch)
			stub(t, bin, "rpm", `case "$2" in kernel-rt-core-*) exit `+exit[tc.rtInstalled]+` ;; kernel-64k-core-*) exit `+exit[tc.k64Installed]+` ;; esac; exit 1`)
			stub(t, bin, "depmod", `printf 'kernel/lib/crc-itu-t.ko.xz:\n' > "`+root+`/lib/modules/$1/modules.dep"`)
			// modinfo -F vermagic FILE: the kernel's release (its directory) and flags.
			stub(t, bin, "modinfo", `k="${3#`+root+`/lib/modules/}"; k="${k%%/*}"; case "$k" in *+rt) f="SMP preempt_rt mod_unload modversions" ;; *) f="SMP preempt mod_unload modversions" ;; esac; echo "$k $f "`)
			cmd := exec.Command("sh", "-c", script)
			cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "KERNEL_VERSION=" + vr, "RT_KERNEL_VERSION=" + vr, "RHEL_VERSION=9.4"}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("the last RUN: %v\n%s", err, out)
			}

			// The layer the RUN makes: what it wrote under /etc.
			var entries []payloadtest.TarEntry
			err := filepath.WalkDir(filepath.Join(root, "etc"), func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(root, p)
				if rel == "etc/os-release" {
					return nil // the base's, not the RUN's
				}
				data, err := os.ReadFile(p)
				entries = append(entries, payloadtest.File(rel, data))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			srv := registrytest.New().Server()
			defer srv.Close()
			w := payloadtest.New(srv.Registry, srv.Host())
			dtk := w.PushImage("acme/dtk", "", payloadtest.Image{OCI: true, Layers: [][]byte{payloadtest.NoiseLayer("ubi", 1<<20), payloadtest.TarGz(entries...)}})
			f := false
			in := releaseinfo.New(registry.New(registry.Options{TLSVerify: &f, RegistriesConf: "/dev/null", Attempts: 1, Timeout: 10 * time.Second}), releaseinfo.Options{})
			files, err := in.ReadDTKFiles(context.Background(), dtk.Pullspec)
			if err != nil {
				t.Fatal(err)
			}
			if files.Kernel.String() != kernel || (files.RTKernel.String() == rt) != tc.rtInstalled || (files.Kernel64K.String() == k64) != tc.k64Installed {
				t.Errorf("release JSON: kernel %s, RT %s, 64k %s", files.Kernel, files.RTKernel, files.Kernel64K)
			}
			if len(files.Kernels) != len(tc.want) {
				t.Errorf("kernel files for %d kernels, want %v", len(files.Kernels), tc.want)
			}
			for _, k := range tc.want {
				kf, ok := files.Files(k)
				if !ok {
					t.Errorf("%s: missing %v", k, kf.Missing())
					continue
				}
				parsed, err := kmod.NewKernel(kf.Kernel, kf.Symvers, kf.ModulesDep, kf.ModulesBuiltin, kf.Vermagic)
				if err != nil {
					t.Errorf("%s: %v", k, err)
					continue
				}
				if parsed.Symvers["mutex_lock"].CRC != 0x4dfa8d4b || parsed.Modules["crc_itu_t"] == "" || parsed.Modules["ext4"] != kmod.BuiltIn ||
					parsed.RT != strings.HasSuffix(k, "+rt") || !strings.HasPrefix(parsed.Vermagic, k+" SMP ") {
					t.Errorf("%s: %+v", k, parsed)
				}
			}
		})
	}
}

func write(t *testing.T, root, name, content string) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func stub(t *testing.T, dir, name, body string) {
	t.Helper()
	write(t, dir, name, "#!/bin/sh\n"+body+"\n")
	if err := os.Chmod(filepath.Join(dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
}
