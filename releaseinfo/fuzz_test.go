package releaseinfo

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
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

func FuzzExtractFiles(f *testing.F) {
	refs := []byte(`{"kind":"ImageStream"}`)
	f.Add(payloadtest.TarGz(payloadtest.TarEntry{Name: "release-manifests/", Type: tar.TypeDir}, payloadtest.File(imageReferencesPath, refs)))
	f.Add(payloadtest.Tar([]payloadtest.TarEntry{{Name: imageReferencesPath, Type: tar.TypeSymlink, Linkname: "/etc/passwd"}}))
	f.Add(payloadtest.TarGz(payloadtest.File("./"+imageReferencesPath, refs), payloadtest.File(imageReferencesPath, refs)))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	f.Add(zstdOf(payloadtest.Tar([]payloadtest.TarEntry{payloadtest.File(imageReferencesPath, refs)})))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0x58})
	lim := DefaultLimits()
	lim.MaxDecompressedBytes, lim.MaxTarEntries = 1<<20, 1000
	f.Fuzz(func(t *testing.T, layer []byte) {
		files, err := extractFiles(bytes.NewReader(layer), map[string]int64{imageReferencesPath: 4096, releaseMetadataPath: 4096}, lim)
		if err != nil {
			return
		}
		for name, data := range files {
			if name != imageReferencesPath && name != releaseMetadataPath {
				t.Errorf("returned %q", name)
			}
			if len(data) > 4096 {
				t.Errorf("%s: %d bytes over its limit", name, len(data))
			}
		}
	})
}

func zstdOf(data []byte) []byte {
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	_, _ = zw.Write(data)
	_ = zw.Close()
	return buf.Bytes()
}

// FuzzMergedLayers: any two layers, walked from the top as WalkImage walks
// an image, visit each path under the prefix at most once, and only paths
// under it.
func FuzzMergedLayers(f *testing.F) {
	const prefix = "opt/lib/modules/k/"
	f.Add(payloadtest.Tar([]payloadtest.TarEntry{payloadtest.File(prefix+".wh.a.ko", nil), payloadtest.File(prefix+"b.ko", []byte("b"))}),
		payloadtest.TarGz(payloadtest.File(prefix+"a.ko", []byte("a")), payloadtest.File(prefix+"b.ko", []byte("old b"))))
	f.Add(payloadtest.Tar([]payloadtest.TarEntry{payloadtest.File(prefix+".wh..wh..opq", nil)}), payloadtest.Tar([]payloadtest.TarEntry{payloadtest.File(prefix+"a.ko", nil)}))
	f.Add(payloadtest.Tar([]payloadtest.TarEntry{{Name: "opt/lib/modules/k", Type: tar.TypeSymlink, Linkname: "/"}}), zstdOf(payloadtest.Tar([]payloadtest.TarEntry{payloadtest.File(prefix+"a.ko", nil)})))
	lim := DefaultLimits()
	lim.MaxDecompressedBytes, lim.MaxTarEntries = 1<<20, 1000
	f.Fuzz(func(t *testing.T, top, bottom []byte) {
		v := newMergedView(prefix)
		var out ImageWalk
		seen := map[string]bool{}
		for i, layer := range [][]byte{top, bottom} {
			if v.prefixHidden() {
				break
			}
			err := v.walkLayer(bytes.NewReader(layer), lim, 1-i, "", &out, nil, func(f ImageFile, content io.Reader) error {
				if seen[f.Name] || !strings.HasPrefix(f.Name, prefix) {
					t.Errorf("visited %q (seen before: %v)", f.Name, seen[f.Name])
				}
				seen[f.Name] = true
				_, err := io.Copy(io.Discard, content)
				return err
			})
			if err != nil {
				return
			}
		}
	})
}
