// Package verify judges a built image, read by digest from the registry,
// before anything a consumer reads is pointed at it: a DTK must carry the
// kernel it was built for (DTK), a consumer's kmod image must hold modules
// for that kernel (Kmod). An error wrapping ErrRejected is a verdict on the
// image's content, which cannot change behind its digest; any other error
// means it could not be read (try again later).
//
// It never writes to a registry and never builds.
package verify

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
var ErrWrongKernel = fmt.Errorf("%w: the image does not carry the wanted kernel", ErrRejected)

// ErrRejected is what every verdict against an image wraps.
var ErrRejected = errors.New("rejected")

// DTK checks a built DTK image before anything is promoted onto it:
// its etc/driver-toolkit-release.json, read from its small top layers with
// the digest verified (as releaseinfo reads a payload's DTK), must name the
// wanted kernel for the wanted arch.
type DTK struct {
	Registry *registry.Client
	Limits   releaseinfo.Limits
}

// Verify returns nil when image carries kernel (VERSION-RELEASE) for arch,
// an error wrapping ErrWrongKernel when it carries another or none, and any
// other error when it could not be read (try again later).
func (v *DTK) Verify(ctx context.Context, image, kernel, arch string) error {
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
