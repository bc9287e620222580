package kmm

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/dtkbot/dtkbot/ledger"
)

// TestVariantPreflightsOnlyForVariantsBuilt: a DTK carrying the RT kernel
// gets an RT PreflightValidationOCP per release only once a consumer is
// built for the RT kernel (with none, the preflight would fail for want of
// a Module with its image); the mappings file then has one key per
// consumer, its variants' items in one list, as YAML tools take it.
func TestVariantPreflightsOnlyForVariantsBuilt(t *testing.T) {
	const kf = "5.14.0-427.37.1.el9_4.x86_64"
	dtk := ledger.Image{Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-427.37.1.el9_4", KernelFull: kf, Releases: []string{"4.16.15", "4.16.16"},
		State: ledger.StatePromoted, Image: "quay.io/acme/dtk:" + kf, ImageDigest: "sha256:" + strings.Repeat("a", 64)}
	dtk.KernelFilesRead(ledger.KernelFilesCheck{Variants: []ledger.VariantKernel{{Variant: ledger.VariantRT, KernelFull: kf + "+rt"}}}, dtk.UpdatedAt)
	def := ledger.Image{Consumer: "nic", Stream: dtk.Stream, Arch: dtk.Arch, Kernel: dtk.Kernel, KernelFull: kf, State: ledger.StatePromoted, Image: "quay.io/acme/nic:" + kf}
	if k := ForKernel(dtk, []ledger.Image{def}, nil); len(k.Preflights) != 2 {
		t.Errorf("no consumer built for the RT kernel: %d preflights, want 2 (one per release)", len(k.Preflights))
	}
	rt := def
	rt.Variant, rt.KernelFull, rt.Image = ledger.VariantRT, kf+"+rt", "quay.io/acme/nic:"+kf+"_rt"
	k := ForKernel(dtk, []ledger.Image{def, rt}, nil)
	if len(k.Preflights) != 4 {
		t.Errorf("a consumer built for the RT kernel: %d preflights, want 4", len(k.Preflights))
	}
	data, err := k.MappingsYAML()
	if err != nil {
		t.Fatal(err)
	}
	var parsed map[string][]KernelMapping
	if err := yaml.Unmarshal(data, &parsed); err != nil || len(parsed["nic"]) != 2 {
		t.Errorf("the mappings file: %v, %+v\n%s", err, parsed, data)
	}
	pre, err := k.PreflightsYAML()
	if err != nil || !strings.Contains(string(pre), kf+", "+kf+"+rt") {
		t.Errorf("the preflights file's head names each kernel: %v\n%s", err, pre)
	}
}
