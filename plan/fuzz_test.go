package plan

import (
	"testing"

	"github.com/dtkbot/dtkbot/version"
)

func FuzzRenderTag(f *testing.F) {
	f.Add("{{.Release}}{{.StreamSuffix}}", "4.16.15", "5.14.0-427.37.1.el9_4.x86_64+rt")
	f.Add("{{.KernelFull}}", "", "x/y")
	f.Add("{{.Minor}}-{{.Arch}}", "4.22.0-ec.1", "")
	f.Fuzz(func(t *testing.T, tmpl, release, kernel string) {
		tag, err := RenderTag(tmpl, TagData{Release: release, Minor: version.Minor(release), KernelFull: kernel, Kernel: kernel, Arch: "amd64", Stream: "rhel-9"})
		if err == nil && !tagPattern.MatchString(tag) {
			t.Errorf("rendered an invalid tag %q", tag)
		}
	})
}
