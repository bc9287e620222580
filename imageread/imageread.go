// Package imageread reads container images from a registry as untrusted
// input, through package registry's client: an image narrowed to one
// architecture (a manifest list's instance), its config, the regular files
// a caller wants from one layer, and the merged filesystem of its layers
// under one path as a container would see it (whiteouts honoured), read
// from the top layer down. Every layer's digest is verified at its end
// (registry.ReadBlob), and every read is bounded (Limits): layers and
// configs over their size are never downloaded, a layer inflates only so
// far, walks only so many entries, an image has only so many layers walked.
// Package layer does the reading of one layer's bytes.
//
// What the images mean is its callers' business: releaseinfo reads
// payloads and their DTK and OS images, verify reads the images dtkbot
// builds. It never writes to a registry, never keeps a layer on disk, and
// never follows a link in an image. A fault of an image's content (a
// manifest or config that does not parse, a layer that is not a tar, a
// limit exceeded) is a content error (registry.IsContent): what is behind
// a digest cannot change; anything else may.
package imageread

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"

	"github.com/dtkbot/dtkbot/imageread/layer"
	"github.com/dtkbot/dtkbot/registry"
)

// Limits bound everything read from a registry about an image: every
// untrusted read dtkbot makes, by what is read. The defaults are generous
// for real payloads and images and small enough that a hostile one cannot
// exhaust memory.
type Limits struct {
	MaxConfigBytes       int64 // an image config
	MaxDecompressedBytes int64 // what one layer may inflate to before we stop
	MaxTarEntries        int   // entries walked in one layer
	// A payload's release image (package releaseinfo).
	MaxReleaseLayerBytes    int64 // its last layer, compressed
	MaxImageReferencesBytes int64 // release-manifests/image-references
	MaxReleaseMetadataBytes int64 // release-manifests/release-metadata
	// A DTK (package releaseinfo).
	MaxDTKLayers       int   // layers walked from the top
	MaxDTKLayerBytes   int64 // a layer larger than this is never read
	MaxDTKJSONBytes    int64 // etc/driver-toolkit-release.json
	MaxKernelFileBytes int64 // an etc/driver-toolkit/<kernel>/ file (Module.symvers, modules.dep, ...)
	// An RHCOS image's metadata layer (4.19+; package releaseinfo).
	MaxMetaLayerBytes int64 // the layer
	MaxMetaJSONBytes  int64 // usr/share/openshift/base/meta.json
	// An image whose merged filesystem is walked (Walk: a kmod image).
	MaxWalkLayers     int   // an image with more layers is not read
	MaxWalkLayerBytes int64 // a layer larger than this is never read
}

// DefaultLimits are the limits used when none are given.
func DefaultLimits() Limits {
	return Limits{
		MaxConfigBytes:          4 << 20,
		MaxDecompressedBytes:    256 << 20,
		MaxTarEntries:           20000,
		MaxReleaseLayerBytes:    64 << 20,
		MaxImageReferencesBytes: 8 << 20,
		MaxReleaseMetadataBytes: 1 << 20,
		MaxDTKLayers:            3,
		MaxDTKLayerBytes:        32 << 20,
		MaxDTKJSONBytes:         64 << 10,
		MaxKernelFileBytes:      16 << 20,
		MaxMetaLayerBytes:       32 << 20,
		MaxMetaJSONBytes:        16 << 20,
		MaxWalkLayers:           32,
		MaxWalkLayerBytes:       256 << 20,
	}
}

// Layer are the limits of reading one layer.
func (l Limits) Layer() layer.Limits {
	return layer.Limits{MaxDecompressedBytes: l.MaxDecompressedBytes, MaxTarEntries: l.MaxTarEntries}
}

// Reader reads images for one architecture through one registry client.
// It is safe for concurrent use.
type Reader struct {
	reg  *registry.Client
	arch string
	lim  Limits
}

// New returns a Reader of images for arch (as the update graph names it:
// amd64, arm64, s390x, ppc64le; default amd64) within lim (DefaultLimits
// when zero).
func New(reg *registry.Client, arch string, lim Limits) *Reader {
	if arch == "" {
		arch = "amd64"
	}
	if lim == (Limits{}) {
		lim = DefaultLimits()
	}
	return &Reader{reg: reg, arch: arch, lim: lim}
}

// Limits are the reader's limits.
func (r *Reader) Limits() Limits { return r.lim }

// Image is one image narrowed to the reader's architecture: its manifest
// parsed, with at least one layer. Close it when done.
type Image struct {
	// Registry is the image as the registry answered for its reference (a
	// manifest list, or one image).
	Registry *registry.Image
	Manifest manifest.Manifest
	// Instance and Arch are set when Registry is a manifest list: the
	// digest of its instance for the reader's arch, and that arch.
	Instance digest.Digest
	Arch     string
}

// Close releases the image.
func (img *Image) Close() { img.Registry.Close() }

// Digest is the digest of the image read: its instance's for a manifest
// list.
func (img *Image) Digest() digest.Digest {
	if img.Instance != "" {
		return img.Instance
	}
	return img.Registry.Digest
}

// Layers are the image's layers, the base first.
func (img *Image) Layers() []manifest.LayerInfo { return img.Manifest.LayerInfos() }

// Open reads the manifest of the image at pullspec and narrows it to the
// reader's arch.
func (r *Reader) Open(ctx context.Context, pullspec string) (*Image, error) {
	reg, err := r.reg.Open(ctx, pullspec)
	if err != nil {
		return nil, err
	}
	img, err := r.Resolve(ctx, reg)
	if err != nil {
		reg.Close()
		return nil, fmt.Errorf("image %s: %w", pullspec, err)
	}
	return img, nil
}

// Resolve narrows an image the registry client opened to the reader's
// arch: the instance for it from a manifest list (one more manifest read),
// or a single image's manifest parsed as it is. A list without that
// instance, a list inside a list, a manifest that does not parse or an
// image without layers is a content error.
func (r *Reader) Resolve(ctx context.Context, reg *registry.Image) (*Image, error) {
	blob, mt := reg.Manifest, reg.MIMEType
	out := &Image{Registry: reg}
	if manifest.MIMETypeIsMultiImage(mt) {
		list, err := manifest.ListFromBlob(blob, mt)
		if err != nil {
			return nil, registry.Content(fmt.Errorf("parsing manifest list: %w", err))
		}
		inst, err := list.ChooseInstance(&types.SystemContext{ArchitectureChoice: r.arch, OSChoice: "linux"})
		if err != nil {
			return nil, registry.Content(fmt.Errorf("manifest list has no linux/%s image: %w", r.arch, err))
		}
		blob, mt, err = r.reg.Instance(ctx, reg, inst)
		if err != nil {
			return nil, err
		}
		if manifest.MIMETypeIsMultiImage(mt) {
			return nil, registry.Content(fmt.Errorf("manifest %s is a list inside a list", inst))
		}
		out.Instance, out.Arch = inst, r.arch
	}
	m, err := manifest.FromBlob(blob, mt)
	if err != nil {
		return nil, registry.Content(fmt.Errorf("parsing manifest: %w", err))
	}
	if len(m.LayerInfos()) == 0 {
		return nil, registry.Content(fmt.Errorf("image has no layers"))
	}
	out.Manifest = m
	return out, nil
}

// Instance is the image pullspec (by digest) is for the reader's arch:
// pullspec's own digest when it is one image (list false), or the digest
// of its linux/<arch> instance when it is a manifest list (list true). A
// list without that instance, one inside a list, or a manifest that does
// not parse is a content error (registry.IsContent): what is behind a
// digest cannot change.
func (r *Reader) Instance(ctx context.Context, pullspec string) (d digest.Digest, list bool, err error) {
	img, err := r.Open(ctx, pullspec)
	if err != nil {
		return "", false, err
	}
	defer img.Close()
	return img.Digest(), img.Instance != "", nil
}

// Config is the part of an image config dtkbot reads.
type Config struct {
	Architecture string `json:"architecture"`
	Config       struct {
		Labels map[string]string `json:"Labels"`
	} `json:"config"`
}

// Labels are the image's labels.
func (c *Config) Labels() map[string]string { return c.Config.Labels }

// Config reads the image's config (at most Limits.MaxConfigBytes), its
// digest verified.
func (r *Reader) Config(ctx context.Context, img *Image) (*Config, error) {
	info := img.Manifest.ConfigInfo()
	data, err := r.reg.ReadBlobBytes(ctx, img.Registry, info, r.lim.MaxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, registry.Content(fmt.Errorf("parsing config %s: %w", info.Digest, err))
	}
	return &cfg, nil
}

// Files reads one layer of img, if it is no larger than maxBytes, and
// returns the regular files whose names want accepts, each at most the
// size want gives it (layer.Files), once the layer's digest is
// verified. A layer over maxBytes is never downloaded (a content error).
func (r *Reader) Files(ctx context.Context, img *Image, l manifest.LayerInfo, maxBytes int64, want func(name string) (int64, bool)) (map[string][]byte, error) {
	var files map[string][]byte
	err := r.reg.ReadBlob(ctx, img.Registry, l.BlobInfo, maxBytes, func(rd io.Reader) error {
		var err error
		files, err = layer.Files(rd, want, r.lim.Layer())
		return err
	})
	return files, err
}

// File is a regular file of an image's merged filesystem, as a container
// started from the image sees it.
type File struct {
	Name        string // its path in the image, without the leading "/"
	Size        int64
	Layer       int // the index of the layer it comes from (0 is the base)
	LayerDigest digest.Digest
}

// Walk is what Reader.Walk read.
type Walk struct {
	// Digest is the image's manifest digest (the instance's, for a list).
	Digest digest.Digest
	Labels map[string]string
	// Layers is how many layers the image has, Walked how many were read
	// (from the top: below an opaque directory or a whiteout of the prefix
	// nothing can show).
	Layers, Walked int
	// Links are the symbolic and hard links under the prefix or in its
	// place (or its ancestors'), never followed: "name -> target".
	Links []string
	// Elsewhere are up to 10 files that elsewhere accepted but that lie
	// outside the prefix.
	Elsewhere []string
}

// Stop wraps an error a Walk's visit returns to end the walk for a reason
// of the caller's (a limit of its own, its context ending): Walk returns
// err itself, never as a fault of the image's content.
func Stop(err error) error { return stopped{err} }

type stopped struct{ err error }

func (s stopped) Error() string { return s.err.Error() }
func (s stopped) Unwrap() error { return s.err }

// Walk walks the merged filesystem of the image at pullspec under prefix
// (a directory such as opt/lib/modules/5.14.0-427.37.1.el9_4.x86_64/) and
// calls visit for each regular file there that a container would see: the
// layers are read from the top, digests verified, and a file a higher layer
// deleted (a whiteout, an opaque directory, a file or link put in the
// place of a directory) or replaced is never visited. Every layer is read,
// within the limits (at most Limits.MaxWalkLayers layers, each no larger
// than MaxWalkLayerBytes), except those below a layer that hides the whole
// prefix. elsewhere, if not nil, picks files outside the prefix worth
// naming in Walk.Elsewhere.
//
// visit may read the file's content and must not keep what it learnt from
// it unless Walk returns nil: a layer's digest is verified only once it
// has been read to its end. An error visit returns is a fault of the
// content, unless it wraps it with Stop. A layer's faults (not a tar, over
// a limit) are content errors (registry.IsContent); anything else can
// change.
func (r *Reader) Walk(ctx context.Context, pullspec, prefix string, elsewhere func(name string) bool, visit func(f File, content io.Reader) error) (Walk, error) {
	out := Walk{}
	prefix = strings.TrimPrefix(strings.TrimSuffix(prefix, "/")+"/", "/")
	if _, ok := layer.CleanName(prefix); !ok || prefix == "/" {
		return out, fmt.Errorf("walking %s: prefix %q is not a clean path inside the image", pullspec, prefix)
	}
	img, err := r.Open(ctx, pullspec)
	if err != nil {
		return out, err
	}
	defer img.Close()
	out.Digest = img.Digest()
	cfg, err := r.Config(ctx, img)
	if err != nil {
		return out, fmt.Errorf("image %s: %w", pullspec, err)
	}
	out.Labels = cfg.Labels()
	layers := img.Layers()
	out.Layers = len(layers)
	if len(layers) > r.lim.MaxWalkLayers {
		return out, registry.Content(fmt.Errorf("image %s has %d layers, over the limit of %d", pullspec, len(layers), r.lim.MaxWalkLayers))
	}
	fs := layer.NewMerged(prefix)
	for i := len(layers) - 1; i >= 0 && !fs.PrefixHidden(); i-- {
		l := layers[i]
		if l.Size < 0 || l.Size > r.lim.MaxWalkLayerBytes {
			return out, registry.Content(fmt.Errorf("image %s: layer %d (%s) is %d bytes, over the %d-byte limit", pullspec, i, l.Digest, l.Size, r.lim.MaxWalkLayerBytes))
		}
		out.Walked++
		var stop error
		err := r.reg.ReadBlob(ctx, img.Registry, l.BlobInfo, r.lim.MaxWalkLayerBytes, func(rd io.Reader) error {
			return fs.WalkLayer(rd, r.lim.Layer(), func(e layer.Entry, content io.Reader) error {
				switch {
				case e.IsLink():
					if fs.Concerns(e.Name) && len(out.Links) < 100 {
						out.Links = append(out.Links, e.Name+" -> "+e.Header.Linkname)
					}
				case !e.IsRegular():
				case !fs.Under(e.Name):
					if elsewhere != nil && len(out.Elsewhere) < 10 && elsewhere(e.Name) {
						out.Elsewhere = append(out.Elsewhere, e.Name)
					}
				default:
					err := visit(File{Name: e.Name, Size: e.Header.Size, Layer: i, LayerDigest: l.Digest}, content)
					if s := (stopped{}); errors.As(err, &s) {
						stop = s.err
					}
					return err
				}
				return nil
			})
		})
		if stop != nil {
			return out, stop
		}
		if err != nil {
			return out, fmt.Errorf("image %s: layer %d: %w", pullspec, i, err)
		}
	}
	return out, nil
}
