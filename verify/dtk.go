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
	"maps"
	"slices"
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

// Want is what a DTK image must carry: its kernel (VERSION-RELEASE) for
// Arch, and RTKernel (VERSION-RELEASE), the RT kernel the payload ships,
// if any.
type Want struct {
	Kernel, RTKernel, Arch string
}

// Verify returns nil when image carries want's kernel for its arch, an
// error wrapping ErrWrongKernel when it carries another or none, or an RT
// kernel other than the payload's, or declares a variant's kernel (RT,
// 64k) whose files it does not carry (etc/driver-toolkit/<uname -r>/, where
// it carries its own kernel's: a DTK without any, built by a recipe of its
// own, cannot be checked for them); ErrUnreadable when its content is not
// a DTK's (a top layer that is not a tar), and any other error when it
// could not be read (try again later).
func (v *DTK) Verify(ctx context.Context, image string, want Want) error {
	in := releaseinfo.New(v.Registry, releaseinfo.Options{Arch: want.Arch, Limits: v.Limits})
	dtk, err := in.ReadDTKFiles(ctx, image)
	if registry.IsContent(err) {
		return fmt.Errorf("verifying %s: %w: %w", image, ErrUnreadable, err)
	}
	if err != nil {
		return fmt.Errorf("verifying %s: %w", image, err)
	}
	if dtk.Kernel.IsZero() {
		return fmt.Errorf("verifying %s: %w: it declares no kernel (%s)", image, ErrWrongKernel, strings.Join(dtk.Warnings, "; "))
	}
	if dtk.Kernel.VR() != want.Kernel {
		return fmt.Errorf("verifying %s: %w: it carries %s, want %s", image, ErrWrongKernel, dtk.Kernel, want.Kernel)
	}
	if arch := releaseinfo.KernelArch(want.Arch); dtk.Kernel.Arch != arch {
		return fmt.Errorf("verifying %s: %w: it carries a %s kernel, want %s", image, ErrWrongKernel, dtk.Kernel.Arch, arch)
	}
	if rt := dtk.RTKernel; !rt.IsZero() && want.RTKernel != "" && rt.VR() != want.RTKernel {
		return fmt.Errorf("verifying %s: %w: it carries the RT kernel %s, the payload ships %s", image, ErrWrongKernel, rt, want.RTKernel)
	}
	if _, hasFiles := dtk.Kernels[dtk.Kernel.String()]; hasFiles {
		variants := dtk.Variants()
		for _, name := range slices.Sorted(maps.Keys(variants)) {
			k := variants[name]
			if _, ok := dtk.Kernels[k.String()]; !ok {
				return fmt.Errorf("verifying %s: %w: it declares the %s kernel %s but carries no %s%s/", image, ErrWrongKernel, name, k, releaseinfo.KernelFilesDir, k)
			}
		}
	}
	return nil
}
