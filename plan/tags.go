package plan

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"text/template"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/version"
)

// TagData are the fields a tag template may use.
type TagData struct {
	Kernel     string // VERSION-RELEASE: 5.14.0-427.37.1.el9_4
	KernelFull string // as uname -r: 5.14.0-427.37.1.el9_4.x86_64
	RTKernel   string // VERSION-RELEASE of the RT kernel, or ""
	RHEL       string // 9.4
	Release    string // 4.16.15 (for a kernel tag: the first release that shipped it)
	Minor      string // 4.16
	Arch       string // amd64
	Stream     string // rhel-9
	// StreamSuffix is "" for a payload's main stream and "-<stream>" for
	// the others (4.22's "-rhel-10"), so "{{.Release}}{{.StreamSuffix}}"
	// names every stream of a dual-stream payload apart.
	StreamSuffix string
	// Variant is the kernel variant of a consumer's image: default, rt or
	// 64k (a DTK's: default, it carries them all); VariantSuffix is "" for
	// the default kernel and "-rt", "-64k" for the others, so
	// "{{.Release}}{{.VariantSuffix}}" names each variant's image apart.
	// KernelFull, the variant's uname -r, names it already.
	Variant       string
	VariantSuffix string
}

// variantSuffix is a variant's VariantSuffix.
func variantSuffix(v string) string {
	if v == ledger.VariantDefault {
		return ""
	}
	return "-" + v
}

var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// RenderTag executes a tag template and makes the result a valid registry
// tag: "+" (as in "+rt") becomes "_"; anything else invalid is an error.
func RenderTag(tmpl string, d TagData) (string, error) {
	t, err := template.New("tag").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("tag template %q: %w", tmpl, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return "", fmt.Errorf("tag template %q: %w", tmpl, err)
	}
	tag := strings.ReplaceAll(buf.String(), "+", "_")
	if !tagPattern.MatchString(tag) {
		return "", fmt.Errorf("tag template %q gives %q, not a valid registry tag", tmpl, tag)
	}
	return tag, nil
}

// ValidateTemplate checks a template against sample data, for config validation.
func ValidateTemplate(tmpl string) error {
	_, err := RenderTag(tmpl, TagData{
		Kernel: "5.14.0-427.37.1.el9_4", KernelFull: "5.14.0-427.37.1.el9_4.x86_64+rt", RHEL: "9.4",
		Release: "4.16.15", Minor: "4.16", Arch: "amd64", Stream: "rhel-9", StreamSuffix: "-rhel-10",
		Variant: ledger.VariantRT, VariantSuffix: "-rt",
	})
	return err
}

// NamesVariant checks, for config validation, that a tag template gives
// each kernel variant's image of one kernel its own tag ({{.KernelFull}},
// the variant's uname -r, or {{.VariantSuffix}}): a consumer built for
// several variants would otherwise push or promote two images to one tag.
func NamesVariant(tmpl string) error {
	d := TagData{Kernel: "5.14.0-427.37.1.el9_4", KernelFull: "5.14.0-427.37.1.el9_4.x86_64", RHEL: "9.4",
		Release: "4.16.15", Minor: "4.16", Arch: "amd64", Stream: "rhel-9", Variant: "default"}
	def, err := RenderTag(tmpl, d)
	if err != nil {
		return nil // reported as the template's own problem
	}
	d.KernelFull, d.Variant, d.VariantSuffix = d.KernelFull+"+rt", ledger.VariantRT, variantSuffix(ledger.VariantRT)
	if rt, err := RenderTag(tmpl, d); err == nil && rt == def {
		return fmt.Errorf("%q does not name the kernel variant (use {{.KernelFull}} or {{.VariantSuffix}})", tmpl)
	}
	return nil
}

// roles names the templates of a target, for messages: the config key
// below target: (or consumers[i].target:) that holds each.
type role struct {
	key  string
	tmpl string
	repo []string // the repositories its tags go to
}

// CheckStaging checks, for config validation, the first trust rule: a
// build's staging reference keeps it apart from every tag consumers read.
// The staging tag must name the kernel (two kernels' builds never share a
// tag), and no kernel, release, floating or mirror tag of the target may
// ever be the same reference, or a build would be visible before it is
// verified. Templates are rendered with a spread of kernels (RHEL 8, 9,
// 10, x86_64 and aarch64, RT), releases (GA, rc, ec, nightlies, a second
// stream) and every pair compared; the error names the keys that collide,
// with prefix before them ("target.", "consumers[0].target.").
func CheckStaging(t Target, prefix string) error {
	if t.Repository == "" {
		t.Repository = "registry.example.com/acme/image"
	}
	stagingTmpl, stagingRepo := t.Staging.Tag, t.Staging.Repository
	if stagingTmpl == "" {
		stagingTmpl = DefaultStagingTag
	}
	if stagingRepo == "" {
		stagingRepo = t.Repository
	}
	everywhere := append([]string{t.Repository}, t.Mirrors...)
	roles := []role{{prefix + "kernel_tag", t.KernelTag, everywhere}}
	for i, tmpl := range t.ReleaseTags {
		roles = append(roles, role{fmt.Sprintf("%srelease_tags[%d]", prefix, i), tmpl, everywhere})
	}
	for i, tmpl := range t.FloatingTags {
		roles = append(roles, role{fmt.Sprintf("%sfloating_tags[%d]", prefix, i), tmpl, everywhere})
	}
	samples := sampleData()
	owner := map[string]TagData{} // staging tag -> the image that pushes there
	for _, d := range samples {
		tag, err := RenderTag(stagingTmpl, d)
		if err != nil {
			return nil // reported as the template's own problem
		}
		if !strings.Contains(tag, tagForm(d.KernelFull)) && !strings.Contains(tag, tagForm(d.Kernel)) {
			return fmt.Errorf("%q does not name the kernel (use {{.KernelFull}}): two kernels' builds would push to one tag, %s", stagingTmpl, tag)
		}
		if o, ok := owner[tag]; ok && (o.Kernel != d.Kernel || o.Arch != d.Arch || o.Stream != d.Stream) {
			return fmt.Errorf("%q gives %s for %s on %s and for %s on %s: use {{.KernelFull}}, which names the arch too", stagingTmpl, tag,
				o.Kernel, o.Arch, d.Kernel, d.Arch)
		}
		owner[tag] = d
		ref := stagingRepo + ":" + tag
		for _, r := range roles {
			for _, other := range samples {
				otag, err := RenderTag(r.tmpl, other)
				if err != nil {
					continue
				}
				for i, repo := range r.repo {
					if repo+":"+otag != ref {
						continue
					}
					where := r.key
					if i > 0 {
						where += fmt.Sprintf(" in %smirrors[%d]", prefix, i-1)
					}
					return fmt.Errorf("%q gives %s, which %s gives too: a build would be visible before it is verified", stagingTmpl, ref, where)
				}
			}
		}
	}
	return nil
}

// tagForm is s as a rendered tag writes it.
func tagForm(s string) string { return strings.ReplaceAll(s, "+", "_") }

// sampleData is a spread of what tags are rendered from.
func sampleData() []TagData {
	kernels := []TagData{
		{Kernel: "4.18.0-372.9.1.el8", KernelFull: "4.18.0-372.9.1.el8.x86_64", RTKernel: "4.18.0-372.9.1.rt7.166.el8", RHEL: "8.6", Arch: "amd64", Stream: "rhel-8"},
		{Kernel: "5.14.0-427.37.1.el9_4", KernelFull: "5.14.0-427.37.1.el9_4.x86_64", RTKernel: "5.14.0-427.37.1.el9_4", RHEL: "9.4", Arch: "amd64", Stream: "rhel-9"},
		{Kernel: "5.14.0-427.37.1.el9_4", KernelFull: "5.14.0-427.37.1.el9_4.aarch64", RHEL: "9.4", Arch: "arm64", Stream: "rhel-9"},
		{Kernel: "6.12.0-55.9.1.el10_1", KernelFull: "6.12.0-55.9.1.el10_1.x86_64", RHEL: "10.1", Arch: "amd64", Stream: "rhel-10", StreamSuffix: "-rhel-10"},
	}
	releases := []string{"4.16.15", "4.17.0-rc.3", "4.17.0-ec.1", "4.17.0-0.nightly-2024-06-01-123456", "4.22.0"}
	var out []TagData
	for _, k := range kernels {
		for _, r := range releases {
			d := k
			d.Release, d.Minor = r, version.Minor(r)
			out = append(out, d)
		}
	}
	return out
}
