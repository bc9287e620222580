// Tests of the files under deploy/: the DTK recipe's invariants and the
// GitHub workflow's inputs, checked against what dtkbot sends.
package deploy_test

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/dtkbot/dtkbot/builder"
	"github.com/dtkbot/dtkbot/releaseinfo"
)

// instruction is one Containerfile instruction with continuations joined.
type instruction struct {
	op, args string
}

func parseContainerfile(t *testing.T, path string) []instruction {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		op, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(op), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

var secretish = regexp.MustCompile(`(?i)(org|key|token|pass|secret|user|activation|cred)`)

func TestDTKRecipeInvariants(t *testing.T) {
	ins := parseContainerfile(t, "driver-toolkit/Containerfile")
	var args []string
	var runs []string
	labels := ""
	for _, in := range ins {
		switch in.op {
		case "ARG", "ENV":
			name, _, _ := strings.Cut(in.args, "=")
			args = append(args, name)
			if secretish.MatchString(name) {
				t.Errorf("%s %s: a secret must be a build secret, never a build argument or an environment variable", in.op, name)
			}
		case "RUN":
			runs = append(runs, in.args)
		case "LABEL":
			labels += in.args + " "
		}
	}
	// Every build argument dtkbot passes is declared.
	build, _, err := (&builder.CommandBuilder{Command: "podman", Containerfile: "Containerfile", Context: "."}).Args(builder.Request{
		Kernel: "5.14.0-427.37.1.el9_4", RTKernel: "5.14.0-427.37.1.el9_4", RHEL: "9.4", Stream: "rhel-9", Arch: "amd64", Image: "quay.io/acme/dtk:x"})
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range build {
		if a == "--build-arg" {
			name, _, _ := strings.Cut(build[i+1], "=")
			found := false
			for _, declared := range args {
				found = found || declared == name
			}
			if !found {
				t.Errorf("dtkbot passes --build-arg %s, which the recipe does not declare", name)
			}
		}
	}
	if len(runs) < 2 {
		t.Fatalf("%d RUN instructions", len(runs))
	}
	install := runs[0]
	for _, want := range []string{"--mount=type=secret,id=rhsm-org", "--mount=type=secret,id=rhsm-activation-key", "/run/secrets/rhsm-org",
		"subscription-manager register", "subscription-manager unregister",
		"kernel-core-${KERNEL_VERSION}", "kernel-devel-${KERNEL_VERSION}", "kernel-headers-${KERNEL_VERSION}", "kernel-modules-${KERNEL_VERSION}",
		"kernel-modules-extra-${KERNEL_VERSION}", "kernel-rt-core-${RT_KERNEL_VERSION}", "kernel-rt-devel-${RT_KERNEL_VERSION}",
		"kernel-64k-core-${KERNEL_VERSION}", "kernel-64k-devel-${KERNEL_VERSION}", "kernel-64k-modules-${KERNEL_VERSION}",
		"kernel-64k-modules-extra-${KERNEL_VERSION}", `*" 64k "*`, "elfutils-libelf-devel", "kmod", "binutils", "kabi-dw", "kernel-abi-stablelists"} {
		if !strings.Contains(install, want) {
			t.Errorf("the install RUN lacks %q", want)
		}
	}
	for _, r := range runs {
		if strings.Contains(r, "rhsm") && !strings.Contains(r, "--mount=type=secret") && strings.Contains(r, "/run/secrets") {
			t.Errorf("a RUN reads secrets without mounting them: %.80s", r)
		}
	}
	last := runs[len(runs)-1]
	for _, want := range []string{"/etc/driver-toolkit-release.json", `"KERNEL_VERSION"`, `"RT_KERNEL_VERSION"`, `"RHEL_VERSION"`, "package kernel-rt-core is not installed",
		`"KERNEL_64K_VERSION"`, "package kernel-64k-core is not installed", `kernels="${kernels} ${k64}"`,
		// What a kmod check reads, in the same small layer (releaseinfo.ReadDTKFiles).
		`d="/` + releaseinfo.KernelFilesDir + `${k}"`, `"/usr/src/kernels/${k}/` + releaseinfo.SymversFile + `"`,
		`"/lib/modules/${k}/` + releaseinfo.ModulesDepFile + `"`, `"/lib/modules/${k}/` + releaseinfo.ModulesBuiltinFile + `"`,
		`"${d}/` + releaseinfo.VermagicFile + `"`, `kernels="${kernels} ${rt}"`} {
		if !strings.Contains(last, want) {
			t.Errorf("the last RUN, which writes the release JSON and the kernel files, lacks %q", want)
		}
	}
	if strings.Contains(last, "--mount=type=secret") || strings.Contains(last, "dnf ") {
		t.Error("the last RUN installs or mounts secrets: its layer must stay small and clean")
	}
	for _, want := range []string{"kernel-version=", "kernel-rt-version=", "io.openshift.os.streamclass="} {
		if !strings.Contains(labels, want) {
			t.Errorf("no LABEL %s", want)
		}
	}
}

// consumerRequest is a consumer build as dtkbot asks for it.
var consumerRequest = builder.Request{Kernel: "5.14.0-427.37.1.el9_4", KernelFull: "5.14.0-427.37.1.el9_4.x86_64", RTKernel: "5.14.0-427.37.1.el9_4",
	RHEL: "9.4", Stream: "rhel-9", Arch: "amd64", Image: "quay.io/acme/simple-kmod:x", Consumer: "simple-kmod",
	DTK: "quay.io/acme/driver-toolkit@sha256:" + strings.Repeat("a", 64)}

// TestKmodExampleIsWhatKMMLoads: the example consumer builds FROM the DTK
// it is given, keeps only the module (under /opt/lib/modules/<kernel>/,
// KMM's default) with cp and kmod, runs depmod there, labels the kernel,
// and declares every build argument dtkbot passes.
func TestKmodExampleIsWhatKMMLoads(t *testing.T) {
	ins := parseContainerfile(t, "examples/kmod/Containerfile")
	var froms, args []string
	copies, runs, labels := "", "", ""
	for _, in := range ins {
		switch in.op {
		case "FROM":
			froms = append(froms, in.args)
		case "ARG":
			name, _, _ := strings.Cut(in.args, "=")
			args = append(args, name)
		case "COPY":
			copies += in.args + "\n"
		case "RUN":
			runs += in.args + "\n"
		case "LABEL":
			labels += in.args + " "
		}
	}
	if len(froms) != 2 || froms[0] != "${DTK_IMAGE} AS builder" || strings.Contains(froms[1], "DTK") {
		t.Errorf("FROMs %q: the DTK must be the builder only", froms)
	}
	if !strings.Contains(copies, "--from=builder /build/simple-kmod.ko /opt/lib/modules/${KERNEL_FULL_VERSION}/") {
		t.Errorf("the module is not copied under /opt/lib/modules/${KERNEL_FULL_VERSION}/:\n%s", copies)
	}
	for _, want := range []string{`depmod -b /opt "${KERNEL_FULL_VERSION}"`, "microdnf -y install kmod", "/etc/driver-toolkit-release.json",
		`/usr/src/kernels/${KERNEL_FULL_VERSION}`} {
		if !strings.Contains(runs, want) {
			t.Errorf("no RUN has %q", want)
		}
	}
	if !strings.Contains(labels, `kernel-version="${KERNEL_FULL_VERSION}"`) {
		t.Errorf("no kernel-version label: %s", labels)
	}
	build, _, err := (&builder.CommandBuilder{Command: "podman", Containerfile: "Containerfile", Context: "."}).Args(consumerRequest)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range build {
		if a == "--build-arg" {
			name, _, _ := strings.Cut(build[i+1], "=")
			if !slices.Contains(args, name) {
				t.Errorf("dtkbot passes --build-arg %s, which the kmod recipe does not declare", name)
			}
		}
		if a == "--secret" {
			t.Errorf("a consumer build is given a secret: %s", build[i+1])
		}
	}
}

func TestWorkflowTakesTheInputsDtkbotSends(t *testing.T) {
	// An aarch64 DTK: dtkbot asks it to carry the 64k kernel too.
	checkWorkflow(t, "github/build-dtk.yml", builder.Request{Variants: []string{"64k"}}.Inputs())
}

func TestKmodWorkflowTakesTheInputsDtkbotSends(t *testing.T) {
	// An RT image's build: the default kernel's sends no kernel_variant
	// (the workflow's default), so that workflows from before variants
	// still take it.
	rt := consumerRequest
	rt.Variant, rt.KernelFull = "rt", rt.KernelFull+"+rt"
	checkWorkflow(t, "examples/kmod/build-kmod.yml", rt.Inputs())
	if in := consumerRequest.Inputs(); in.KernelVariant != "" {
		t.Errorf("the default kernel's build sends kernel_variant %q", in.KernelVariant)
	}
	data, _ := os.ReadFile("examples/kmod/build-kmod.yml")
	if strings.Contains(string(data), "RHSM") && !strings.Contains(string(data), "No RHSM") {
		t.Error("the kmod workflow uses an RHSM entitlement: the DTK carries the packages")
	}
}

// checkWorkflow: a workflow takes exactly the inputs dtkbot sends, as
// strings, and hands them to scripts only through env.
func checkWorkflow(t *testing.T, path string, inputs builder.Inputs) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		On struct {
			Dispatch struct {
				Inputs map[string]struct {
					Type     string `yaml:"type"`
					Required bool   `yaml:"required"`
				} `yaml:"inputs"`
			} `yaml:"workflow_dispatch"`
		} `yaml:"on"`
		Jobs map[string]struct {
			Steps []struct {
				Name string `yaml:"name"`
				Run  string `yaml:"run"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatal(err)
	}
	var sent map[string]string
	raw, _ := json.Marshal(inputs)
	_ = json.Unmarshal(raw, &sent)
	var want, got []string
	for k := range sent {
		want = append(want, k)
	}
	for k, in := range wf.On.Dispatch.Inputs {
		got = append(got, k)
		if in.Type != "string" {
			t.Errorf("input %s has type %q: dtkbot sends strings", k, in.Type)
		}
	}
	sort.Strings(want)
	sort.Strings(got)
	if !reflect.DeepEqual(want, got) {
		t.Errorf("workflow inputs %v, dtkbot sends %v", got, want)
	}
	steps := 0
	for _, job := range wf.Jobs {
		for _, st := range job.Steps {
			steps++
			if strings.Contains(st.Run, "${{") {
				t.Errorf("step %q interpolates an expression into its script: inputs must reach scripts through env", st.Name)
			}
		}
	}
	if steps == 0 {
		t.Error("the workflow has no steps")
	}
	if strings.Contains(string(data), "--build-arg RHSM") || strings.Contains(string(data), "build-arg ORG") {
		t.Errorf("the workflow passes a secret as a build argument")
	}
}
