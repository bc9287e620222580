package verify

import (
	"context"
	"fmt"
	"strings"
	"text/template"

	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/releaseinfo"
)

// ErrNoModules means a kmod image holds no kernel module for the wanted
// kernel: a failed build, never to be promoted.
var ErrNoModules = fmt.Errorf("%w: the image holds no kernel module for the wanted kernel", ErrRejected)

// Kmod checks a consumer's image (a kmod image, a driver container)
// before it is promoted: it exists, and its layers, walked from the top with
// digests verified and the limits every untrusted read has, hold at least
// one kernel module under the module path of the kernel; where a label is
// configured, the image's label of that name must name the kernel too.
type Kmod struct {
	Registry *registry.Client
	Limits   releaseinfo.Limits
}

// VerifyKmod returns nil when image carries modules under modulePath (the
// kernel's: opt/lib/modules/<kernel_full>/), an error wrapping ErrNoModules
// when it does not (saying what it found instead), and any other error when
// it could not be read (try again later).
func (v *Kmod) VerifyKmod(ctx context.Context, image, arch, kernelFull, modulePath, label string) error {
	in := releaseinfo.New(v.Registry, releaseinfo.Options{Arch: arch, Limits: v.Limits})
	prefix := strings.TrimPrefix(strings.TrimSuffix(modulePath, "/")+"/", "/")
	mods, err := in.ReadModules(ctx, image, prefix)
	if err != nil {
		if registry.IsContent(err) {
			return fmt.Errorf("verifying %s: %w: %v", image, ErrNoModules, err)
		}
		return fmt.Errorf("verifying %s: %w", image, err)
	}
	if label != "" {
		if got := mods.Labels[label]; got != kernelFull {
			return fmt.Errorf("verifying %s: %w: its label %s is %q, want %s", image, ErrNoModules, label, got, kernelFull)
		}
	}
	for _, p := range mods.Paths {
		if strings.HasPrefix(p, prefix) {
			return nil
		}
	}
	if len(mods.Paths) == 0 {
		return fmt.Errorf("verifying %s: %w: no kernel module in its top %d layers (want one under /%s)", image, ErrNoModules, mods.Walked, prefix)
	}
	shown := mods.Paths
	if len(shown) > 3 {
		shown = shown[:3]
	}
	return fmt.Errorf("verifying %s: %w: its modules are elsewhere (%s), want them under /%s", image, ErrNoModules, strings.Join(shown, ", "), prefix)
}

// ModulePath renders a module path template (fields Kernel, KernelFull):
// where a kmod image must hold the kernel's modules, relative to the root
// of its layers, ending in "/".
func ModulePath(tmpl, kernel, kernelFull string) (string, error) {
	t, err := template.New("module_path").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("module path %q: %w", tmpl, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, struct{ Kernel, KernelFull string }{kernel, kernelFull}); err != nil {
		return "", fmt.Errorf("module path %q: %w", tmpl, err)
	}
	p := strings.TrimPrefix(b.String(), "./")
	switch {
	case strings.HasPrefix(p, "/"):
		return "", fmt.Errorf("module path %q: a path inside the image's layers, without the leading /", tmpl)
	case !strings.Contains(p, kernelFull) && !strings.Contains(p, kernel):
		return "", fmt.Errorf("module path %q does not name the kernel ({{.KernelFull}}): a module for another kernel would pass", tmpl)
	case strings.Contains("/"+p+"/", "/../"):
		return "", fmt.Errorf("module path %q leaves the image's root", tmpl)
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p, nil
}
