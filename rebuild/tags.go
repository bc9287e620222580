package rebuild

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"text/template"

	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/watcher"
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
	})
	return err
}

// minorOf returns "4.16" for "4.16.15".
func minorOf(version string) string { return watcher.Minor(version) }

// ValidateStaging checks, with sample data, that the staging reference of t
// can never be its kernel tag: a build would then be visible to consumers
// before it is verified.
func ValidateStaging(t Target) error {
	if t.Repository == "" {
		t.Repository = "registry.example.com/acme/driver-toolkit"
	}
	k := state.Kernel{Kernel: "5.14.0-427.37.1.el9_4", KernelFull: "5.14.0-427.37.1.el9_4.x86_64", RHEL: "9.4",
		Releases: []string{"4.16.15"}, Arch: "amd64", Stream: "rhel-9"}
	if _, err := KernelImage(t, k); err != nil {
		return nil // reported as the kernel tag's problem
	}
	_, err := StagingImage(t, k)
	return err
}
