package releaseinfo

import "testing"

func TestParseKernel(t *testing.T) {
	tests := []struct {
		in            string
		vr, rhel, str string
		rt            bool
	}{
		{in: "5.14.0-427.22.1.el9_4.x86_64", vr: "5.14.0-427.22.1.el9_4", rhel: "9.4", str: "rhel-9"},
		{in: "5.14.0-427.22.1.el9_4.x86_64+rt", vr: "5.14.0-427.22.1.el9_4", rhel: "9.4", str: "rhel-9", rt: true},
		{in: "4.18.0-305.19.1.rt7.91.el8_4.x86_64", vr: "4.18.0-305.19.1.rt7.91.el8_4", rhel: "8.4", str: "rhel-8"},
		{in: "5.14.0-252.el9.x86_64", vr: "5.14.0-252.el9", rhel: "9", str: "rhel-9"},
		{in: "6.12.0-55.9.1.el10_0.aarch64", vr: "6.12.0-55.9.1.el10_0", rhel: "10.0", str: "rhel-10"},
		{in: "6.1.10-200.fc37.x86_64", vr: "6.1.10-200.fc37"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			k, err := ParseKernel(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if k.VR() != tt.vr || k.RHEL() != tt.rhel || k.Stream() != tt.str || k.RT != tt.rt || k.String() != tt.in {
				t.Errorf("got VR %q RHEL %q stream %q rt %v string %q", k.VR(), k.RHEL(), k.Stream(), k.RT, k.String())
			}
		})
	}
}

func TestParseKernelRejects(t *testing.T) {
	for _, in := range []string{
		"", "true", "false", "package kernel-rt-core is not installed",
		"5.14.0-427.22.1.el9_4",            // no arch
		"5.14.0-427.22.1.x86_64",           // no dist tag
		"5.14.0-427.22.1.el9_4.x86_64 ",    // trailing space
		"5.14.0-427.22.1.el9_4.i686",       // arch OpenShift does not ship
		"5.14.0_427.el9.x86_64",            // no dash
		"../../etc/passwd",                 //
		"5.14.0-427.22.1.el9_4.x86_64\n",   //
		"5.14.0-427.22.1.el9_4.x86_64+rt2", //
		"5.14.0-4" + string(make([]byte, 200)) + ".el9.x86_64",
	} {
		if k, err := ParseKernel(in); err == nil {
			t.Errorf("ParseKernel(%q) = %+v, want error", in, k)
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
