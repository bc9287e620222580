package payloadtest

// Eras returns one release of each era of payload layout (where the kernel
// is written: machine-os-content labels up to 4.11, rhel-coreos's ostree.linux
// label from 4.12, its meta.json layer from 4.19, a RHEL 10 stream from 4.21;
// see openshift/oc's release info and openshift/os), with kernels as those
// releases shipped them: the set that tests, the benchmark and the demo
// inspect.
func Eras() []ReleaseSpec {
	return []ReleaseSpec{
		// 4.1-4.7: machine-os-content without kernel labels, no DTK.
		{Version: "4.6.13", Stream: Stream{Kernel: "4.18.0-193.40.1.el8_2"}},
		// 4.8-4.11: com.coreos.rpm.kernel labels; RHEL 8 style RT.
		{Version: "4.9.0", Stream: Stream{Kernel: "4.18.0-305.19.1.el8_4", RTKernel: "4.18.0-305.19.1.rt7.91.el8_4"}},
		// 4.12: rhel-coreos-8 with ostree.linux; no RT in late 4.12.z.
		{Version: "4.12.3", Stream: Stream{Kernel: "4.18.0-372.43.1.el8_6", RHCOS: "412.86.202302091057-0"}},
		// 4.13-4.14: rhel-coreos (RHEL 9.2) beside machine-os-content.
		{Version: "4.14.1", Stream: Stream{Kernel: "5.14.0-284.36.1.el9_2", RTKernel: "5.14.0-284.36.1.rt14.321.el9_2"}},
		// 4.15-4.18: rhel-coreos only; "+rt" RT kernels from 4.16; OCI media types.
		{Version: "4.16.15", Stream: Stream{Kernel: "5.14.0-427.37.1.el9_4", RTKernel: "5.14.0-427.37.1.el9_4", RHCOS: "416.94.202409040013-0"}},
		// 4.19-4.21: the kernel is in the RHCOS metadata layer.
		{Version: "4.19.1", Stream: Stream{Kernel: "5.14.0-570.19.1.el9_6", RTKernel: "5.14.0-570.19.1.el9_6", RHCOS: "9.6.20250530-0"}},
		// 4.22: RHEL 9 and RHEL 10 streams; ostree.linux is the literal "true".
		{Version: "4.22.0", Stream: Stream{Kernel: "5.14.0-570.62.1.el9_6", RTKernel: "5.14.0-570.62.1.el9_6", RHCOS: "9.6.20251201-1"},
			Stream10: &Stream{Kernel: "6.12.0-55.9.1.el10_1", RTKernel: "6.12.0-55.9.1.el10_1", RHCOS: "10.1.20251202-0"}},
		// A multi-arch payload: manifest lists all the way down.
		{Version: "4.18.14", Arches: []string{"amd64", "arm64"}, Stream: Stream{Kernel: "5.14.0-427.68.1.el9_4", RTKernel: "5.14.0-427.68.1.el9_4"}},
	}
}
