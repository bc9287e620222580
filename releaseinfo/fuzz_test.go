package releaseinfo

import (
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/version"
)

func FuzzParseKernel(f *testing.F) {
	for _, s := range []string{"5.14.0-427.22.1.el9_4.x86_64", "5.14.0-427.22.1.el9_4.x86_64+rt", "4.18.0-305.19.1.rt7.91.el8_4.x86_64",
		"6.12.0-55.9.1.el10_1.aarch64", "true", "package kernel-rt-core is not installed", "4.18.0-348.2.1.el8_5", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if k, err := ParseKernel(s); err == nil {
			if k.String() != s {
				t.Errorf("ParseKernel(%q).String() = %q", s, k.String())
			}
			if k.Stream() != "" && !strings.HasPrefix(k.Stream(), "rhel-") {
				t.Errorf("stream %q", k.Stream())
			}
			if _, err := ParseKernelVR(k.VR()); err != nil {
				t.Errorf("the VR %q of a valid kernel does not parse: %v", k.VR(), err)
			}
		}
		if k, err := ParseKernelVR(s); err == nil && k.VR() != s {
			t.Errorf("ParseKernelVR(%q).VR() = %q", s, k.VR())
		}
	})
}

func FuzzImageReferences(f *testing.F) {
	f.Add([]byte(`{"kind":"ImageStream","apiVersion":"image.openshift.io/v1","metadata":{"name":"4.16.15"},"spec":{"tags":[{"name":"driver-toolkit","from":{"kind":"DockerImage","name":"quay.io/a/b@sha256:` + strings.Repeat("a", 64) + `"},"annotations":{"io.openshift.build.versions":"machine-os=416.94.202409040013-0"}}]}}`))
	f.Add([]byte(`{"kind":"ImageStream","apiVersion":"image.openshift.io/v1","metadata":{"name":"4.16.15"},"spec":{"tags":[{"name":"rhel-coreos"},{"name":"rhel-coreos"}]}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseImageReferences(data)
		if err != nil {
			return
		}
		if !version.Valid(c.version) || len(c.tags) == 0 {
			t.Errorf("accepted version %q with %d tags", c.version, len(c.tags))
		}
		for name := range c.tags {
			_, _ = c.image(name)
			_ = c.buildVersions(name)
		}
		_ = streamSpecs(c)
	})
}

func FuzzReleaseMetadata(f *testing.F) {
	f.Add([]byte(`{"kind":"cincinnati-metadata-v0","version":"4.16.15","previous":["4.16.14"],"metadata":{"url":"https://example.com"}}`))
	f.Add([]byte(`{"kind":"cincinnati-metadata-v0","version":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if m, err := parseReleaseMetadata(data); err == nil && !version.Valid(m.Version) {
			t.Errorf("accepted version %q", m.Version)
		}
	})
}

func FuzzDTKReleaseJSON(f *testing.F) {
	f.Add([]byte(`{ "KERNEL_VERSION": "5.14.0-427.22.1.el9_4.x86_64", "RT_KERNEL_VERSION": "5.14.0-427.22.1.el9_4.x86_64+rt", "RHEL_VERSION": "9.4" }`))
	f.Add([]byte(`{ "KERNEL_VERSION": "true", "RT_KERNEL_VERSION": "package kernel-rt-core is not installed", "RHEL_VERSION": "9.4; rm" }`))
	f.Add([]byte(`{ "KERNEL_VERSION": "5.14.0-427.22.1.el9_4.aarch64", "RT_KERNEL_VERSION": "package kernel-rt-core is not installed", "KERNEL_64K_VERSION": "5.14.0-427.22.1.el9_4.aarch64+64k", "RHEL_VERSION": "9.4" }`))
	f.Add([]byte(`{ "KERNEL_VERSION": "5.14.0-427.22.1.el9_4.x86_64", "KERNEL_64K_VERSION": "5.14.0-427.22.1.el9_4.x86_64+64k" }`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var out dtkKernels
		out.source = SourceDTKReleaseJSON
		parseDTKRelease(data, &out)
		if !out.kernel.IsZero() {
			if _, err := ParseKernel(out.kernel.String()); err != nil {
				t.Errorf("kept an invalid kernel %q", out.kernel)
			}
		}
		if !out.k64.IsZero() {
			if k, err := ParseKernel(out.k64.String()); err != nil || !k.Pages64K || k.Arch != "aarch64" {
				t.Errorf("kept %q as the 64k kernel", out.k64)
			}
		}
		if out.rhel != "" && !rhelVersionPattern.MatchString(out.rhel) {
			t.Errorf("kept RHEL %q", out.rhel)
		}
	})
}

func FuzzOSLabelsAndMetaJSON(f *testing.F) {
	f.Add("5.14.0-427.22.1.el9_4.x86_64", "amd64", []byte(`{"rpmdb.pkglist":[["kernel","0","5.14.0","427.22.1.el9_4","x86_64"],["kernel-rt-core",0,"5.14.0","427.22.1.el9_4","x86_64"]]}`))
	f.Add("true", "arm64", []byte(`{"rpmdb.pkglist":[["kernel"]]}`))
	f.Add("4.18.0-348.2.1.el8_5", "s390x", []byte(`{"rpmdb.pkglist":null}`))
	f.Fuzz(func(t *testing.T, label, arch string, meta []byte) {
		if k, err := kernelFromLabel(label, arch); err == nil {
			if _, err := ParseKernel(k.String()); err != nil {
				t.Errorf("label %q gave an invalid kernel %q", label, k)
			}
		}
		if k, rt, err := parseMetaJSON(meta); err == nil {
			if _, err := ParseKernel(k.String()); err != nil {
				t.Errorf("meta.json gave an invalid kernel %q", k)
			}
			if !rt.IsZero() {
				if _, err := ParseKernel(rt.String()); err != nil {
					t.Errorf("meta.json gave an invalid RT kernel %q", rt)
				}
			}
		}
	})
}
