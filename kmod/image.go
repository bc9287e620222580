package kmod

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/releaseinfo"
)

// ReadOptions bound what ReadImage reads beyond the layer limits of
// releaseinfo.Limits.
type ReadOptions struct {
	// MaxModuleBytes bounds one module, as stored and decompressed.
	// Default 256 MiB (the largest vendor modules are a few tens of MB).
	MaxModuleBytes int64
	// MaxModules bounds the modules of one image. Default 1000.
	MaxModules int
}

func (o ReadOptions) withDefaults() ReadOptions {
	if o.MaxModuleBytes <= 0 {
		o.MaxModuleBytes = 256 << 20
	}
	if o.MaxModules <= 0 {
		o.MaxModules = 1000
	}
	return o
}

// DefaultModulePath is where a kmod image holds a kernel's modules: KMM's
// default (the Module CRD's /opt prefix, then lib/modules/<kernel>/).
func DefaultModulePath(kernel string) string { return "opt/lib/modules/" + kernel + "/" }

// ReadImage reads every module under modulePath of the kmod image at
// pullspec, through in (its registry client, arch and limits): every layer
// from the top, digests verified, a module a higher layer deleted or
// replaced never read; each module decompressed and parsed as it streams
// by, so no module's bytes are kept. A module that does not parse is listed
// in Image.Unreadable; an image whose layers cannot be read is an error,
// registry.IsContent when it is the content's fault (the verdict then is
// "rejected") and retryable otherwise.
func ReadImage(ctx context.Context, in *releaseinfo.Inspector, pullspec, modulePath string, opts ReadOptions) (*Image, error) {
	opts = opts.withDefaults()
	img := &Image{Pullspec: pullspec, ModulePath: strings.TrimPrefix(strings.TrimSuffix(modulePath, "/")+"/", "/")}
	var modules []*Module
	var unreadable []UnreadableModule
	elsewhere := func(name string) bool { _, ok := IsModuleFile(name); return ok }
	walk, err := in.WalkImage(ctx, pullspec, img.ModulePath, elsewhere, func(f releaseinfo.ImageFile, content io.Reader) error {
		compression, ok := IsModuleFile(f.Name)
		if !ok {
			return nil // modules.dep and the other files depmod writes
		}
		if len(modules)+len(unreadable) >= opts.MaxModules {
			return fmt.Errorf("more than %d modules under /%s: %w", opts.MaxModules, img.ModulePath, releaseinfo.ErrLimit)
		}
		if f.Size > opts.MaxModuleBytes {
			unreadable = append(unreadable, UnreadableModule{Path: f.Name, Problem: fmt.Sprintf("%d bytes, over the limit of %d", f.Size, opts.MaxModuleBytes)})
			return nil
		}
		raw, err := io.ReadAll(io.LimitReader(content, opts.MaxModuleBytes+1))
		if err != nil {
			return fmt.Errorf("reading %s: %w", f.Name, err)
		}
		m, err := ParseFile(f.Name, raw, compression, opts.MaxModuleBytes)
		if err != nil {
			unreadable = append(unreadable, UnreadableModule{Path: f.Name, Problem: err.Error()})
			return nil
		}
		m.Layer = f.Layer
		modules = append(modules, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the modules of kmod image %s: %w", pullspec, err)
	}
	img.Digest = walk.Digest.String()
	img.Modules, img.Unreadable = modules, unreadable
	img.Links, img.Elsewhere, img.Labels = walk.Links, walk.Elsewhere, walk.Labels
	img.Layers, img.Walked = walk.Layers, walk.Walked
	return img, nil
}

// ParseFile parses a module file's bytes as stored (compressed as its
// compression says), at most max bytes decompressed.
func ParseFile(path string, raw []byte, compression string, max int64) (*Module, error) {
	data, err := Decompress(raw, compression, max)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	m, err := ParseModule(path, data)
	if err != nil {
		return nil, err
	}
	m.Compression = compression
	return m, nil
}

// Checker reads kmod images and DTK images through one registry client and
// checks the first against the kernels of the second.
type Checker struct {
	Inspector *releaseinfo.Inspector
	Read      ReadOptions
}

// CheckImage reads the kmod image at pullspec and checks its modules under
// modulePath against k. It returns a Report, accepted or rejected, when it
// could decide (an image whose content cannot be read is rejected: that
// content cannot change); an error only when it could not tell (the
// registry unreachable, a timeout, a digest mismatch in transit): try
// again.
func (c *Checker) CheckImage(ctx context.Context, pullspec, modulePath string, k *Kernel, opts CheckOptions) (*Report, error) {
	img, err := ReadImage(ctx, c.Inspector, pullspec, modulePath, c.Read)
	if err != nil {
		if !registry.IsContent(err) {
			return nil, err
		}
		return &Report{Image: pullspec, Kernel: k.Release, ModulePath: strings.TrimPrefix(modulePath, "/"),
			ABIChecked: k.Symvers != nil, SignaturesChecked: len(opts.Certs) > 0,
			Reason: "its layers cannot be read: " + err.Error()}, nil
	}
	return Check(img, k, opts), nil
}

// KernelFromDTK reads kernel's files (etc/driver-toolkit/<kernel>/) from
// the DTK image at pullspec (best pinned by digest). It returns the Kernel
// with what is there, and the required files that are missing (a DTK built
// by a recipe without them); an error when the DTK could not be read or
// its files do not parse.
func (c *Checker) KernelFromDTK(ctx context.Context, pullspec, kernel string) (*Kernel, []string, error) {
	files, err := c.Inspector.ReadDTKFiles(ctx, pullspec)
	if err != nil {
		return nil, nil, err
	}
	kf, _ := files.Files(kernel)
	k, err := KernelFromDTK(kf)
	if err != nil {
		return nil, nil, registry.Content(fmt.Errorf("driver-toolkit %s: %w", pullspec, err))
	}
	if len(k.Sources) > 0 {
		k.Sources = []string{"driver-toolkit " + pullspec + ": " + strings.Join(k.Sources, ", ")}
	}
	return k, kf.Missing(), nil
}
