package kmod

import (
	"context"
	"errors"
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
	// Default DefaultMaxModuleBytes.
	MaxModuleBytes int64
	// MaxModules bounds the modules of one image: ReadImage cannot tell
	// whether more load (a TooManyModulesError). Default DefaultMaxModules.
	MaxModules int
	// Budget, shared by the reads in flight, bounds the memory their
	// modules hold at once; nil bounds nothing.
	Budget *Budget
}

// Defaults of ReadOptions.
const (
	// DefaultMaxModuleBytes: the largest vendor modules (NVIDIA's nvidia.ko)
	// are a few tens of MB, decompressed.
	DefaultMaxModuleBytes = 128 << 20
	// DefaultMaxModules: a kmod image holds a few modules, a whole kernel's
	// module tree (the largest image anyone would check) about 1,121; each
	// module read keeps a few KB to a few tens of KB of what it says
	// (.modinfo, symbol versions, symbols) until the image is checked.
	DefaultMaxModules = 4096
)

func (o ReadOptions) withDefaults() ReadOptions {
	if o.MaxModuleBytes <= 0 {
		o.MaxModuleBytes = DefaultMaxModuleBytes
	}
	if o.MaxModules <= 0 {
		o.MaxModules = DefaultMaxModules
	}
	return o
}

// TooManyModulesError says an image holds more modules under its module
// path than ReadOptions.MaxModules: ReadImage could not tell whether they
// load (a limit of dtkbot's, not a fault of the image).
type TooManyModulesError struct {
	Limit      int
	ModulePath string
}

func (e *TooManyModulesError) Error() string {
	return fmt.Sprintf("more than %d modules under /%s: over the limit of modules read from one image, so whether they load is not known", e.Limit, e.ModulePath)
}

// DefaultModulePath is where a kmod image holds a kernel's modules: KMM's
// default (the Module CRD's /opt prefix, then lib/modules/<kernel>/).
func DefaultModulePath(kernel string) string { return "opt/lib/modules/" + kernel + "/" }

// couldNotTell carries, out of the layer walk, an error that is no fault of
// the content (the walk would call it one): a limit of ours, the context.
type couldNotTell struct{ err error }

func (c couldNotTell) Error() string { return c.err.Error() }

// ReadImage reads every module under modulePath of the kmod image at
// pullspec, through in (its registry client, arch and limits): every layer
// from the top, digests verified, a module a higher layer deleted or
// replaced never read; each module decompressed and parsed as it streams
// by, within opts.Budget, so no module's bytes are kept. A module that does
// not parse is listed in Image.Unreadable; an image whose layers cannot be
// read is an error, registry.IsContent when it is the content's fault (the
// verdict then is "rejected") and retryable otherwise; an image with more
// modules than opts.MaxModules is a *TooManyModulesError (not content: the
// limit is ours).
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
			return couldNotTell{&TooManyModulesError{Limit: opts.MaxModules, ModulePath: img.ModulePath}}
		}
		if f.Size > opts.MaxModuleBytes {
			unreadable = append(unreadable, UnreadableModule{Path: f.Name, Problem: fmt.Sprintf("%d bytes, over the limit of %d", f.Size, opts.MaxModuleBytes)})
			return nil
		}
		m, problem, err := readModule(ctx, f, content, compression, opts)
		switch {
		case err != nil:
			return err
		case problem != "":
			unreadable = append(unreadable, UnreadableModule{Path: f.Name, Problem: problem})
		default:
			m.Layer = f.Layer
			modules = append(modules, m)
		}
		return nil
	})
	if cnt := (couldNotTell{}); errors.As(err, &cnt) {
		return nil, fmt.Errorf("reading the modules of kmod image %s: %w", pullspec, cnt.err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the modules of kmod image %s: %w", pullspec, err)
	}
	img.Digest = walk.Digest.String()
	img.Modules, img.Unreadable = modules, unreadable
	img.Links, img.Elsewhere, img.Labels = walk.Links, walk.Elsewhere, walk.Labels
	img.Layers, img.Walked = walk.Layers, walk.Walked
	return img, nil
}

// readModule reads one module file of f.Size bytes from content and parses
// it, within opts.Budget: its stored bytes first, then its content, of the
// size its container declares (at most the module's limit). A module that
// holds more than it declares (a gzip of several members, or a lie) is
// decoded again with the module's limit. It returns the module, or the
// problem that makes it unreadable; an error only when the context ended
// (a couldNotTell).
func readModule(ctx context.Context, f releaseinfo.ImageFile, content io.Reader, compression string, opts ReadOptions) (*Module, string, error) {
	giveBack, err := opts.Budget.takeStored(ctx, f.Size)
	if err != nil {
		return nil, "", couldNotTell{err}
	}
	defer giveBack()
	raw := make([]byte, f.Size)
	if _, err := io.ReadFull(content, raw); err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", f.Name, err)
	}
	limit := opts.MaxModuleBytes
	if size, ok := DeclaredSize(raw, compression); ok && size < limit {
		limit = size
	}
	for {
		giveBackContent, err := opts.Budget.takeContent(ctx, contentCost(compression, limit))
		if err != nil {
			return nil, "", couldNotTell{err}
		}
		m, err := ParseFile(f.Name, raw, compression, limit)
		giveBackContent()
		if errors.Is(err, releaseinfo.ErrLimit) && limit < opts.MaxModuleBytes {
			limit = opts.MaxModuleBytes
			continue
		}
		if err != nil {
			return nil, err.Error(), nil
		}
		return m, "", nil
	}
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
