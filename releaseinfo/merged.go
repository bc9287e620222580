package releaseinfo

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/registry"
)

// Whiteout names of the OCI image layer format (image-spec layer.md,
// "Whiteouts"): a file ".wh.<name>" deletes <name> of the layers below; a
// file ".wh..wh..opq" in a directory hides everything the layers below have
// in it.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// ImageFile is a regular file of an image's merged filesystem, as a
// container started from the image sees it.
type ImageFile struct {
	Name        string // its path in the image, without the leading "/"
	Size        int64
	Layer       int // the index of the layer it comes from (0 is the base)
	LayerDigest digest.Digest
}

// ImageWalk is what WalkImage read.
type ImageWalk struct {
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

// WalkImage walks the merged filesystem of the image at pullspec (resolved
// for the inspector's arch) under prefix (a directory such as
// opt/lib/modules/5.14.0-427.37.1.el9_4.x86_64/) and calls visit for each
// regular file there that a container would see: the layers are read from
// the top, digests verified, and a file a higher layer deleted (a whiteout,
// an opaque directory, a file or link put in the place of a directory) or
// replaced is never visited. Every layer is read, within the limits (at most
// Limits.MaxKmodLayers layers, each no larger than MaxKmodLayerBytes), except
// those below a layer that hides the whole prefix. elsewhere, if not nil,
// picks files outside the prefix worth naming in ImageWalk.Elsewhere.
//
// visit may read the file's content and must not keep what it learnt from
// it unless WalkImage returns nil: a layer's digest is verified only once it
// has been read to its end. A layer's faults (not a tar, over a limit) are
// content errors (registry.IsContent); anything else can change.
func (in *Inspector) WalkImage(ctx context.Context, pullspec, prefix string, elsewhere func(name string) bool, visit func(f ImageFile, content io.Reader) error) (ImageWalk, error) {
	out := ImageWalk{}
	prefix = strings.TrimPrefix(strings.TrimSuffix(prefix, "/")+"/", "/")
	if _, ok := cleanEntryName(prefix); !ok || prefix == "/" {
		return out, fmt.Errorf("walking %s: prefix %q is not a clean path inside the image", pullspec, prefix)
	}
	r, err := in.open(ctx, pullspec)
	if err != nil {
		return out, err
	}
	defer r.img.Close()
	out.Digest = r.img.Digest
	if r.instance != "" {
		out.Digest = r.instance
	}
	cfg, err := in.readConfig(ctx, r)
	if err != nil {
		return out, fmt.Errorf("image %s: %w", pullspec, err)
	}
	out.Labels = cfg.Config.Labels
	lim := in.opts.Limits
	layers := r.manifest.LayerInfos()
	out.Layers = len(layers)
	if len(layers) > lim.MaxKmodLayers {
		return out, registry.Content(fmt.Errorf("image %s has %d layers, over the limit of %d", pullspec, len(layers), lim.MaxKmodLayers))
	}
	fs := newMergedView(prefix)
	for i := len(layers) - 1; i >= 0 && !fs.prefixHidden(); i-- {
		layer := layers[i]
		if layer.Size < 0 || layer.Size > lim.MaxKmodLayerBytes {
			return out, registry.Content(fmt.Errorf("image %s: layer %d (%s) is %d bytes, over the %d-byte limit", pullspec, i, layer.Digest, layer.Size, lim.MaxKmodLayerBytes))
		}
		out.Walked++
		err := in.reg.ReadBlob(ctx, r.img, layer.BlobInfo, lim.MaxKmodLayerBytes, func(rd io.Reader) error {
			return fs.walkLayer(rd, lim, i, layer.Digest, &out, elsewhere, visit)
		})
		if err != nil {
			return out, fmt.Errorf("image %s: layer %d: %w", pullspec, i, err)
		}
	}
	return out, nil
}

// walkLayer reads one layer (the next below those already walked) and
// visits the regular files under the prefix that show through the layers
// above, recording what it holds for the layers below.
func (v *mergedView) walkLayer(rd io.Reader, lim Limits, index int, d digest.Digest, out *ImageWalk, elsewhere func(string) bool, visit func(ImageFile, io.Reader) error) error {
	err := walkTar(rd, lim, func(hdr *tar.Header, content io.Reader) error {
		name, ok := cleanEntryName(hdr.Name)
		if !ok {
			return nil
		}
		if hdr.Typeflag == tar.TypeSymlink || hdr.Typeflag == tar.TypeLink {
			if v.concerns(name) && v.visible(name) && len(out.Links) < 100 {
				out.Links = append(out.Links, name+" -> "+hdr.Linkname)
			}
		}
		show := v.add(name, hdr.Typeflag)
		if !show || !isRegular(hdr) {
			return nil
		}
		if !strings.HasPrefix(name, v.prefix) {
			if elsewhere != nil && len(out.Elsewhere) < 10 && elsewhere(name) {
				out.Elsewhere = append(out.Elsewhere, name)
			}
			return nil
		}
		return visit(ImageFile{Name: name, Size: hdr.Size, Layer: index, LayerDigest: d}, content)
	})
	if err != nil {
		return err
	}
	v.endLayer()
	return nil
}

// mergedView decides, while layers are read from the top, which entries of
// the current layer a container would see. It keeps only what concerns the
// prefix (entries under it and its ancestors), so a base layer of thousands
// of files costs no memory.
type mergedView struct {
	prefix string // ends in "/"
	// Of the layers above the current one:
	removed map[string]bool // deleted by a whiteout
	opaque  map[string]bool // directories whose lower content is hidden
	present map[string]bool // entries: a lower entry of the same name is replaced
	nondir  map[string]bool // entries that are not directories: nothing lower shows under them
	// Of the current layer, merged into the above at its end:
	layer struct{ removed, opaque, present, nondir map[string]bool }
}

func newMergedView(prefix string) *mergedView {
	v := &mergedView{prefix: prefix, removed: map[string]bool{}, opaque: map[string]bool{}, present: map[string]bool{}, nondir: map[string]bool{}}
	v.resetLayer()
	return v
}

func (v *mergedView) resetLayer() {
	v.layer.removed, v.layer.opaque, v.layer.present, v.layer.nondir = map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
}

// concerns says whether name is under the prefix or one of its ancestors.
func (v *mergedView) concerns(name string) bool {
	return strings.HasPrefix(name+"/", v.prefix) || strings.HasPrefix(v.prefix, name+"/")
}

// visible says whether an entry name of the current layer shows through
// the layers above.
func (v *mergedView) visible(name string) bool {
	if v.removed[name] || v.present[name] {
		return false
	}
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if v.removed[dir] || v.opaque[dir] || v.nondir[dir] {
			return false
		}
	}
	return true
}

// add records an entry of the current layer and says whether it shows
// (whiteouts themselves never do).
func (v *mergedView) add(name string, typ byte) bool {
	dir, base := path.Dir(name), path.Base(name)
	if base == whiteoutOpaque {
		if dir != "." && v.concerns(dir) && v.visible(dir) {
			v.layer.opaque[dir] = true
		}
		return false
	}
	if target, ok := strings.CutPrefix(base, whiteoutPrefix); ok {
		if strings.HasPrefix(target, whiteoutPrefix) {
			return false // aufs metadata (.wh..wh.plnk, ...): not part of the filesystem
		}
		if dir != "." {
			target = dir + "/" + target
		}
		if v.concerns(target) && v.visible(target) {
			v.layer.removed[target] = true
		}
		return false
	}
	if !v.visible(name) {
		return false
	}
	if v.concerns(name) {
		v.layer.present[name] = true
		if typ != tar.TypeDir {
			v.layer.nondir[name] = true
		}
	}
	return true
}

// endLayer makes the current layer's entries part of what is above the next.
func (v *mergedView) endLayer() {
	for _, m := range []struct{ from, to map[string]bool }{
		{v.layer.removed, v.removed}, {v.layer.opaque, v.opaque}, {v.layer.present, v.present}, {v.layer.nondir, v.nondir},
	} {
		for k := range m.from {
			m.to[k] = true
		}
	}
	v.resetLayer()
}

// prefixHidden says whether nothing of the layers still below can show
// under the prefix: it, or one of its ancestors, was deleted, made opaque
// or replaced by something that is not a directory.
func (v *mergedView) prefixHidden() bool {
	for dir := strings.TrimSuffix(v.prefix, "/"); dir != "."; dir = path.Dir(dir) {
		if v.removed[dir] || v.opaque[dir] || v.nondir[dir] {
			return true
		}
	}
	return false
}
