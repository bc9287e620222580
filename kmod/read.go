package kmod

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/dtkbot/dtkbot/imageread/layer"
)

// ReadOptions bound what a Collector reads, beyond the limits of reading
// the image's layers (imageread.Limits).
type ReadOptions struct {
	// MaxModuleBytes bounds one module, as stored and decompressed.
	// Default DefaultMaxModuleBytes.
	MaxModuleBytes int64
	// MaxModules bounds the modules of one image: a Collector cannot tell
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
// path than ReadOptions.MaxModules: whether they load cannot be told (a
// limit of dtkbot's, not a fault of the image).
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

// Collector gathers the modules under one module path of a kmod image as
// the image's files stream by (package imageread walks an image's merged
// filesystem for it): each module is decompressed and parsed as it comes,
// within ReadOptions.Budget, so that no module's bytes are kept; one that
// does not parse is listed as unreadable (no node would load it either).
// It reads nothing but what it is handed.
type Collector struct {
	opts       ReadOptions
	modulePath string
	modules    []*Module
	unreadable []UnreadableModule
}

// NewCollector gathers the modules under modulePath (a path inside the
// image such as opt/lib/modules/<kernel>/).
func NewCollector(modulePath string, opts ReadOptions) *Collector {
	return &Collector{opts: opts.withDefaults(), modulePath: strings.TrimPrefix(strings.TrimSuffix(modulePath, "/")+"/", "/")}
}

// ModulePath is where the modules are gathered from: clean, without a
// leading "/", ending in "/".
func (c *Collector) ModulePath() string { return c.modulePath }

// Add takes the file name (size bytes, from the image's layer fromLayer,
// streaming from content): a module is read and parsed, any other file
// (modules.dep and the other files depmod writes) skipped. It returns an
// error when content could not be read (the stream's fault, for the
// caller to judge), and when it could not tell: over ReadOptions.MaxModules
// (a *TooManyModulesError), or ctx ended while the module waited for its
// share of the budget (ctx's error).
func (c *Collector) Add(ctx context.Context, name string, size int64, fromLayer int, content io.Reader) error {
	compression, ok := IsModuleFile(name)
	if !ok {
		return nil
	}
	if len(c.modules)+len(c.unreadable) >= c.opts.MaxModules {
		return &TooManyModulesError{Limit: c.opts.MaxModules, ModulePath: c.modulePath}
	}
	if size > c.opts.MaxModuleBytes {
		c.unreadable = append(c.unreadable, UnreadableModule{Path: name, Problem: fmt.Sprintf("%d bytes, over the limit of %d", size, c.opts.MaxModuleBytes)})
		return nil
	}
	m, problem, err := readModule(ctx, name, size, content, compression, c.opts)
	switch {
	case err != nil:
		return err
	case problem != "":
		c.unreadable = append(c.unreadable, UnreadableModule{Path: name, Problem: problem})
	default:
		m.Layer = fromLayer
		c.modules = append(c.modules, m)
	}
	return nil
}

// Image is what was gathered, as the Image of pullspec: its modules and
// those that do not parse. The caller adds what it read of the image
// itself (digest, labels, links, layers).
func (c *Collector) Image(pullspec string) *Image {
	return &Image{Pullspec: pullspec, ModulePath: c.modulePath, Modules: c.modules, Unreadable: c.unreadable}
}

// readModule reads one module file of size bytes from content and parses
// it, within opts.Budget: its stored bytes first, then its content, of the
// size its container declares (at most the module's limit). A module that
// holds more than it declares (a gzip of several members, or a lie) is
// decoded again with the module's limit. It returns the module, or the
// problem that makes it unreadable; an error when content could not be
// read, or the context ended.
func readModule(ctx context.Context, name string, size int64, content io.Reader, compression string, opts ReadOptions) (*Module, string, error) {
	giveBack, err := opts.Budget.takeStored(ctx, size)
	if err != nil {
		return nil, "", err
	}
	defer giveBack()
	raw := make([]byte, size)
	if _, err := io.ReadFull(content, raw); err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", name, err)
	}
	limit := opts.MaxModuleBytes
	if size, ok := DeclaredSize(raw, compression); ok && size < limit {
		limit = size
	}
	for {
		giveBackContent, err := opts.Budget.takeContent(ctx, contentCost(compression, limit))
		if err != nil {
			return nil, "", err
		}
		m, err := ParseFile(name, raw, compression, limit)
		giveBackContent()
		if errors.Is(err, layer.ErrLimit) && limit < opts.MaxModuleBytes {
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
