package config

import (
	"strings"
	"testing"
)

// TestStagingTagKeepsBuildsApart: the staging tag must name the kernel (and
// its arch), and never be a tag consumers read; validate-config says which
// key it collides with.
func TestStagingTagKeepsBuildsApart(t *testing.T) {
	for _, tc := range []struct {
		name, target string
		want         string // in the error; "" for none
	}{
		{"the default", ``, ""},
		{"a suffix", `  staging: {tag: "{{.KernelFull}}-unverified"}`, ""},
		{"another repository", `  staging: {repository: quay.io/acme/staging, tag: "{{.KernelFull}}"}`, ""},
		{"latest", `  staging: {tag: latest}`, `target.staging.tag: "latest" does not name the kernel`},
		{"a release tag", `  staging: {tag: "{{.Release}}"}`, `target.staging.tag: "{{.Release}}" does not name the kernel`},
		{"the kernel tag", `  staging: {tag: "{{.KernelFull}}"}`, `which target.kernel_tag gives too`},
		{"no arch", `  staging: {tag: "staging-{{.Kernel}}"}`, `for 5.14.0-427.37.1.el9_4 on amd64 and for 5.14.0-427.37.1.el9_4 on arm64`},
		{"a floating tag", "  floating_tags: [\"next-{{.KernelFull}}\"]\n  staging: {tag: \"next-{{.KernelFull}}\"}", `which target.floating_tags[0] gives too`},
		{"a mirror's release tag", "  mirrors: [quay.io/acme/staging]\n  release_tags: [\"{{.KernelFull}}\"]\n  kernel_tag: \"k-{{.KernelFull}}\"\n  staging: {repository: quay.io/acme/staging, tag: \"{{.KernelFull}}\"}",
			`which target.release_tags[0] in target.mirrors[0] gives too`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte("graph: {channels: [stable-4.16]}\ntarget:\n  repository: quay.io/acme/dtk\n" + tc.target + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("want no error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("want %q in: %v", tc.want, err)
			}
		})
	}
}

// TestTwoArchesNeedTheArchInReleaseTags: with two arches read, a release or
// floating tag without {{.Arch}} would be wanted by both arches' images.
func TestTwoArchesNeedTheArchInReleaseTags(t *testing.T) {
	for _, tc := range []struct {
		arches, tags, want string
	}{
		{"[amd64]", `release_tags: ["{{.Release}}"]`, ""},
		{"[amd64, arm64]", `release_tags: ["{{.Release}}-{{.Arch}}"]`, ""},
		{"[amd64, arm64]", `release_tags: ["{{.Release}}"]`, `target.release_tags[0]: "{{.Release}}" does not name the arch, and amd64 and arm64 are read`},
		{"[multi]", `floating_tags: ["{{.Minor}}"]`, `target.floating_tags[0]: "{{.Minor}}" does not name the arch`},
	} {
		cfg, err := Parse([]byte("graph: {channels: [stable-4.16], arches: " + tc.arches + "}\ntarget:\n  repository: quay.io/acme/dtk\n  " + tc.tags + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		err = cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s %s: want no error: %v", tc.arches, tc.tags, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s %s: want %q in: %v", tc.arches, tc.tags, tc.want, err)
		}
	}
}
