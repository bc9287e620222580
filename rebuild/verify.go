package rebuild

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/releaseinfo"
)

// ErrWrongKernel means a built image does not carry the kernel it was built
// for: a failed build, never to be promoted.
var ErrWrongKernel = errors.New("the image does not carry the wanted kernel")

// Verifier checks a built DTK image before anything is promoted onto it:
// its etc/driver-toolkit-release.json, read from its small top layers with
// the digest verified (as releaseinfo reads a payload's DTK), must name the
// wanted kernel for the wanted arch.
type Verifier struct {
	Registry *registry.Client
	Limits   releaseinfo.Limits
}

// Verify returns nil when image carries kernel (VERSION-RELEASE) for arch,
// an error wrapping ErrWrongKernel when it carries another or none, and any
// other error when it could not be read (try again later).
func (v *Verifier) Verify(ctx context.Context, image, kernel, arch string) error {
	in := releaseinfo.New(v.Registry, releaseinfo.Options{Arch: arch, Limits: v.Limits})
	dtk, err := in.ReadDTK(ctx, image)
	if err != nil {
		return fmt.Errorf("verifying %s: %w", image, err)
	}
	if dtk.Kernel.IsZero() {
		return fmt.Errorf("verifying %s: %w: it declares no kernel (%s)", image, ErrWrongKernel, strings.Join(dtk.Warnings, "; "))
	}
	if dtk.Kernel.VR() != kernel {
		return fmt.Errorf("verifying %s: %w: it carries %s, want %s", image, ErrWrongKernel, dtk.Kernel, kernel)
	}
	if want := releaseinfo.KernelArch(arch); dtk.Kernel.Arch != want {
		return fmt.Errorf("verifying %s: %w: it carries a %s kernel, want %s", image, ErrWrongKernel, dtk.Kernel.Arch, want)
	}
	return nil
}
