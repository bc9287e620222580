package releaseinfo

import (
	"strings"
	"testing"
)

func TestParseKernel(t *testing.T) {
	tests := []struct {
		in            string
		vr, rhel, str string
		rt, pages64K  bool
	}{
		{in: "5.14.0-427.22.1.el9_4.x86_64", vr: "5.14.0-427.22.1.el9_4", rhel: "9.4", str: "rhel-9"},
		{in: "5.14.0-427.22.1.el9_4.x86_64+rt", vr: "5.14.0-427.22.1.el9_4", rhel: "9.4", str: "rhel-9", rt: true},
		{in: "4.18.0-305.19.1.rt7.91.el8_4.x86_64", vr: "4.18.0-305.19.1.rt7.91.el8_4", rhel: "8.4", str: "rhel-8"},
		{in: "5.14.0-252.el9.x86_64", vr: "5.14.0-252.el9", rhel: "9", str: "rhel-9"},
		{in: "6.12.0-55.9.1.el10_0.aarch64", vr: "6.12.0-55.9.1.el10_0", rhel: "10.0", str: "rhel-10"},
		{in: "6.1.10-200.fc37.x86_64", vr: "6.1.10-200.fc37"},
		{in: "5.14.0-427.37.1.el9_4.aarch64+64k", vr: "5.14.0-427.37.1.el9_4", rhel: "9.4", str: "rhel-9", pages64K: true},
		{in: "6.12.0-55.9.1.el10_0.aarch64+64k", vr: "6.12.0-55.9.1.el10_0", rhel: "10.0", str: "rhel-10", pages64K: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			k, err := ParseKernel(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if k.VR() != tt.vr || k.RHEL() != tt.rhel || k.Stream() != tt.str || k.RT != tt.rt || k.Pages64K != tt.pages64K || k.String() != tt.in {
				t.Errorf("got VR %q RHEL %q stream %q rt %v 64k %v string %q", k.VR(), k.RHEL(), k.Stream(), k.RT, k.Pages64K, k.String())
			}
		})
	}
}

func TestParseKernelRejects(t *testing.T) {
	for _, in := range []string{
		"", "true", "false", "package kernel-rt-core is not installed",
		"5.14.0-427.22.1.el9_4",                // no arch
		"5.14.0-427.22.1.x86_64",               // no dist tag
		"5.14.0-427.22.1.el9_4.x86_64 ",        // trailing space
		"5.14.0-427.22.1.el9_4.i686",           // arch OpenShift does not ship
		"5.14.0_427.el9.x86_64",                // no dash
		"../../etc/passwd",                     //
		"5.14.0-427.22.1.el9_4.x86_64\n",       //
		"5.14.0-427.22.1.el9_4.x86_64+rt2",     //
		"5.14.0-427.22.1.el9_4.aarch64+64K",    // RHEL writes +64k
		"5.14.0-427.22.1.el9_4.aarch64+64k+rt", // no RT kernel with 64 KB pages
		"5.14.0-427.22.1.el9_4.aarch64+16k",    // RHEL builds no 16k kernel
		"5.14.0-4" + string(make([]byte, 200)) + ".el9.x86_64",
	} {
		if k, err := ParseKernel(in); err == nil {
			t.Errorf("ParseKernel(%q) = %+v, want error", in, k)
		}
	}
}

// TestParseKernelVariantArch: RHEL builds kernel-64k for aarch64 only and
// kernel-rt (as "+rt") for x86_64 only; a "+64k" or "+rt" kernel of another
// arch is a made-up name, refused with the reason.
func TestParseKernelVariantArch(t *testing.T) {
	for in, want := range map[string]string{
		"5.14.0-427.37.1.el9_4.x86_64+64k":  "RHEL builds +64k kernels for aarch64 only",
		"5.14.0-427.37.1.el9_4.ppc64le+64k": "RHEL builds +64k kernels for aarch64 only",
		"5.14.0-427.37.1.el9_4.aarch64+rt":  "RHEL builds +rt kernels for x86_64 only",
		"5.14.0-427.37.1.el9_4.s390x+rt":    "RHEL builds +rt kernels for x86_64 only",
	} {
		if k, err := ParseKernel(in); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), in) {
			t.Errorf("ParseKernel(%q) = %+v, %v; want an error saying %q", in, k, err, want)
		}
	}
}

func TestParseKernelVR(t *testing.T) {
	k, err := ParseKernelVR("4.18.0-348.2.1.el8_5")
	if err != nil || k.VR() != "4.18.0-348.2.1.el8_5" {
		t.Fatalf("got %+v, %v", k, err)
	}
	for _, in := range []string{"4.18.0-348.2.1.el8_5.x86_64", "true", "4.18.0", "4.18.0-348; rm -rf /"} {
		if _, err := ParseKernelVR(in); err == nil {
			t.Errorf("ParseKernelVR(%q): want error", in)
		}
	}
}
