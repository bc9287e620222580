// Package verify judges a built image, read by digest from the registry,
// before anything a consumer reads is pointed at it: a DTK must carry the
// kernel it was built for (DTK), a consumer's kmod image must hold modules
// that load on that kernel (Kmod: package imageread reads the image,
// package kmod judges its modules; `dtkbot kmod check` runs the same
// check). An error wrapping ErrRejected is a verdict on the image's
// content, which cannot change behind its digest; any other error means it
// could not be read (try again later).
//
// It never writes to a registry and never builds.
package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/releaseinfo"
)

// ErrWrongKernel means a built image does not carry the kernel it was built
// for: a failed build, never to be promoted.
var ErrWrongKernel = fmt.Errorf("%w: the image does not carry the wanted kernel", ErrRejected)

// ErrRejected is what every verdict against an image wraps.
var ErrRejected = errors.New("rejected")

// ErrUnreadable means an image's content, read by digest and verified
// against it, is not what an image of its kind must be (a layer that is
// not a tar, a manifest that does not parse): it cannot change, so it is a
// verdict, never to be promoted.
var ErrUnreadable = fmt.Errorf("%w: its content cannot be read", ErrRejected)

// Rejects reports whether err, from verifying an image by digest, is a
// verdict on the image: a rejection, or a fault of its content
// (registry.IsContent), which reading again can only meet again. Any other
// error (the network, a 5xx, auth, a digest mismatch in transit) can
// change: try again later.
func Rejects(err error) bool { return errors.Is(err, ErrRejected) || registry.IsContent(err) }

// DTK checks a built DTK image before anything is promoted onto it:
// its etc/driver-toolkit-release.json, read from its small top layers with
// the digest verified (as releaseinfo reads a payload's DTK), must name the
// wanted kernel for the wanted arch.
type DTK struct {
	Registry *registry.Client
	Limits   imageread.Limits
}

// Verify returns nil when image carries kernel (VERSION-RELEASE) for arch,
// an error wrapping ErrWrongKernel when it carries another or none,
// ErrUnreadable when its content is not a DTK's (a top layer that is not a
// tar), and any other error when it could not be read (try again later).
func (v *DTK) Verify(ctx context.Context, image, kernel, arch string) error {
	in := releaseinfo.New(v.Registry, releaseinfo.Options{Arch: arch, Limits: v.Limits})
	dtk, err := in.ReadDTK(ctx, image)
	if registry.IsContent(err) {
		return fmt.Errorf("verifying %s: %w: %w", image, ErrUnreadable, err)
	}
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
