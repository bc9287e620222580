package ledger

import (
	"encoding/json"
	"testing"
)

// TestAVariantIsPartOfAnImagesIdentity: a consumer's images of one kernel's
// variants have keys of their own, all under the kernel's one DTK; a record
// of a state file from before variants is the default kernel's image.
func TestAVariantIsPartOfAnImagesIdentity(t *testing.T) {
	def := ImageID{Consumer: "acme-nic", Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-427.37.1.el9_4"}
	rt, k64 := def, def
	rt.Variant, k64.Variant = VariantRT, Variant64K
	keys := map[string]bool{def.Key(): true, rt.Key(): true, k64.Key(): true, def.DTK().Key(): true}
	if len(keys) != 4 {
		t.Fatalf("keys collide: %v", keys)
	}
	if rt.Key() != "acme-nic/rhel-9/amd64/5.14.0-427.37.1.el9_4+rt" || def.Key() != "acme-nic/rhel-9/amd64/5.14.0-427.37.1.el9_4" {
		t.Errorf("keys %s, %s", rt.Key(), def.Key())
	}
	if rt.DTK() != def.DTK() || rt.DTK().Key() != "rhel-9/amd64/5.14.0-427.37.1.el9_4" {
		t.Errorf("a variant's DTK %+v, the default kernel's %+v", rt.DTK(), def.DTK())
	}
	var old Image
	if err := json.Unmarshal([]byte(`{"consumer":"acme-nic","stream":"rhel-9","arch":"amd64","kernel":"5.14.0-427.37.1.el9_4","state":"promoted"}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.ID() != def || old.Key() != def.Key() {
		t.Errorf("a record from before variants: %+v", old.ID())
	}
	data, _ := json.Marshal(Image{Consumer: "acme-nic", Variant: VariantRT})
	var back Image
	if err := json.Unmarshal(data, &back); err != nil || back.Variant != VariantRT {
		t.Errorf("the variant does not survive the state file: %s", data)
	}
	for _, name := range []string{"", "default", "rt", "64k"} {
		if _, err := ParseVariant(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	if _, err := ParseVariant("realtime"); err == nil {
		t.Error("realtime is not a variant's name")
	}
}

// TestAKernelFilesCheckFromBeforeVariantsIsMadeAgain: a DTK's check of its
// kernel files recorded by a dtkbot that did not read its variants' kernels
// still says what it said of the kernel's own files, and nothing of its
// variants: when a consumer asks for one, it is made again
// (plan.KernelFilesDue), so that an RT or 64k image can be built FROM a DTK
// promoted before the upgrade.
func TestAKernelFilesCheckFromBeforeVariantsIsMadeAgain(t *testing.T) {
	var dtk Image
	if err := json.Unmarshal([]byte(`{"stream":"rhel-9","arch":"amd64","kernel":"5.14.0-427.37.1.el9_4","image_digest":"sha256:1","kernel_files":{"digest":"sha256:1"}}`), &dtk); err != nil {
		t.Fatal(err)
	}
	if dtk.ImageDigest != "sha256:1" || dtk.KernelFiles == nil {
		t.Fatalf("the record did not parse as expected: %+v", dtk)
	}
	if _, known := dtk.KernelFilesOf(); !known || dtk.VariantsKnown() {
		t.Errorf("a check from before variants: known %v (want: of the kernel's own files), of its variants' kernels %v (want not)", known, dtk.VariantsKnown())
	}
	if _, ok := dtk.Carries(VariantRT); ok {
		t.Error("a check from before variants says the DTK carries an RT kernel")
	}
	dtk.KernelFilesRead(KernelFilesCheck{}, dtk.UpdatedAt)
	if _, known := dtk.KernelFilesOf(); !known || !dtk.VariantsKnown() {
		t.Error("a check made now is not known")
	}
}
