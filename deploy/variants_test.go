package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/internal/need"
)

// TestDTKRecipeInstallsVariantKernels runs the recipe's install RUN, as a
// build would, with subscription-manager, dnf and uname stubbed (dnf
// records what it is asked): KERNEL_VARIANTS=64k installs kernel-64k-* of
// KERNEL_VERSION on aarch64 when RHEL has it for that kernel, and nothing
// else; never off aarch64, never unasked, and a kernel without kernel-64k
// (RHEL before 9.2) is no failed build. The RT kernel is installed on
// x86_64 when RT_KERNEL_VERSION is set.
func TestDTKRecipeInstallsVariantKernels(t *testing.T) {
	need.Command(t, "sh", "a POSIX shell")
	var install string
	for _, in := range parseContainerfile(t, "driver-toolkit/Containerfile") {
		if in.op == "RUN" && install == "" {
			install = in.args
		}
	}
	// The RUN's flags (--mount=...) are the builder's, not the shell's.
	install = regexp.MustCompile(`^(--\S+\s+)+`).ReplaceAllString(install, "")
	const vr, rtVR = "5.14.0-427.37.1.el9_4", "5.14.0-427.37.1.el9_4"
	k64 := []string{"kernel-64k-core-" + vr, "kernel-64k-devel-" + vr, "kernel-64k-modules-" + vr, "kernel-64k-modules-extra-" + vr}
	rt := []string{"kernel-rt-core-" + rtVR, "kernel-rt-devel-" + rtVR, "kernel-rt-modules-" + rtVR, "kernel-rt-modules-extra-" + rtVR}
	for _, tc := range []struct {
		name, arch, variants, rtVersion string
		k64Available                    bool
		want                            []string // the variant packages installed
		asked                           bool     // dnf asked whether kernel-64k is available
	}{
		{name: "aarch64, 64k asked and available", arch: "aarch64", variants: "64k", k64Available: true, want: k64, asked: true},
		{name: "aarch64, 64k among others", arch: "aarch64", variants: "rt 64k", k64Available: true, want: k64, asked: true},
		{name: "aarch64, 64k asked, RHEL has none for the kernel", arch: "aarch64", variants: "64k", asked: true},
		{name: "aarch64, not asked", arch: "aarch64", variants: "", k64Available: true},
		{name: "aarch64, a word that is not 64k", arch: "aarch64", variants: "x64k 64kb", k64Available: true},
		{name: "x86_64, 64k asked", arch: "x86_64", variants: "64k", k64Available: true},
		{name: "x86_64 with the RT kernel", arch: "x86_64", variants: "rt", rtVersion: rtVR, want: rt},
		{name: "aarch64, an RT version given", arch: "aarch64", rtVersion: rtVR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			script := strings.ReplaceAll(install, "/run/secrets/", root+"/secrets/")
			write(t, root, "secrets/rhsm-org", "acme")
			write(t, root, "secrets/rhsm-activation-key", "key")
			log := filepath.Join(root, "dnf.log")
			bin := filepath.Join(root, "stub-bin")
			stub(t, bin, "uname", "echo "+tc.arch)
			stub(t, bin, "subscription-manager", "exit 0")
			available := map[bool]string{true: "0", false: "1"}[tc.k64Available]
			stub(t, bin, "dnf", `echo "$*" >> "`+log+`"; case "$*" in *"list --available kernel-64k-core-"*) exit `+available+` ;; esac; exit 0`)
			cmd := exec.Command("sh", "-c", script)
			cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "KERNEL_VERSION=" + vr, "RT_KERNEL_VERSION=" + tc.rtVersion,
				"KERNEL_VARIANTS=" + tc.variants, "RHEL_VERSION=9.4"}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("the install RUN: %v\n%s", err, out)
			}
			data, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			var installed []string
			asked := false
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				switch {
				case strings.HasPrefix(line, "-q list --available kernel-64k-core-"+vr):
					asked = true
				case strings.HasPrefix(line, "-y install kernel-core-"+vr):
					// the default kernel, every build
				case strings.HasPrefix(line, "-y install "):
					installed = append(installed, strings.Fields(strings.TrimPrefix(line, "-y install "))...)
				}
			}
			if strings.Join(installed, " ") != strings.Join(tc.want, " ") || asked != tc.asked {
				t.Errorf("installed %v (asked for kernel-64k: %v), want %v (%v); dnf was run:\n%s", installed, asked, tc.want, tc.asked, data)
			}
			if !strings.Contains(string(data), "-y install kernel-core-"+vr+" ") {
				t.Errorf("the default kernel was not installed:\n%s", data)
			}
		})
	}
}

// TestBuilderPassesKernelVariants: the variants dtkbot asks a DTK to carry
// reach the recipe as KERNEL_VARIANTS, space-separated, the form its case
// pattern matches.
func TestBuilderPassesKernelVariants(t *testing.T) {
	args, _, err := (&builder.CommandBuilder{Command: "podman", Containerfile: "Containerfile", Context: "."}).Args(builder.Request{
		Kernel: "5.14.0-427.37.1.el9_4", RHEL: "9.4", Stream: "rhel-9", Arch: "arm64", Image: "quay.io/acme/dtk:x", Variants: []string{"rt", "64k"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(args, "\x00"), "--build-arg\x00KERNEL_VARIANTS=rt 64k\x00") {
		t.Errorf("podman build %q: no KERNEL_VARIANTS=rt 64k", args)
	}
}
