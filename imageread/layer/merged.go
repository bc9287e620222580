package layer

import (
	"archive/tar"
	"io"
	"path"
	"strings"
)

// Whiteout names of the OCI image layer format (image-spec layer.md,
// "Whiteouts"): a file ".wh.<name>" deletes <name> of the layers below; a
// file ".wh..wh..opq" in a directory hides everything the layers below have
// in it.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// Entry is an entry of a layer that a container started from the image
// would see.
type Entry struct {
	// Name is the entry's cleaned name (CleanName), without a leading "/".
	Name string
	// Header is the entry's tar header, its name as the layer has it.
	Header *tar.Header
}

// IsRegular says whether the entry is a regular file.
func (e Entry) IsRegular() bool { return IsRegular(e.Header) }

// IsLink says whether the entry is a symbolic or a hard link.
func (e Entry) IsLink() bool {
	return e.Header.Typeflag == tar.TypeSymlink || e.Header.Typeflag == tar.TypeLink
}

// Merged decides, while an image's layers are read from the top, which
// entries of each a container would see, as far as they concern one path
// of the image (the prefix: a directory such as
// opt/lib/modules/5.14.0-427.37.1.el9_4.x86_64/): under it, or in the
// place of it or of one of its ancestors. It keeps only what concerns the
// prefix, so a base layer of thousands of files costs no memory; whether
// an entry elsewhere shows is not known (WalkLayer visits it).
type Merged struct {
	prefix string // ends in "/"
	// Of the layers above the current one:
	removed map[string]bool // deleted by a whiteout
	opaque  map[string]bool // directories whose lower content is hidden
	present map[string]bool // entries: a lower entry of the same name is replaced
	nondir  map[string]bool // entries that are not directories: nothing lower shows under them
	// Of the current layer, merged into the above at its end:
	layer struct{ removed, opaque, present, nondir map[string]bool }
}

// NewMerged is the view of an image's merged filesystem at prefix (a clean
// directory path ending in "/"), before its top layer is read.
func NewMerged(prefix string) *Merged {
	v := &Merged{prefix: prefix, removed: map[string]bool{}, opaque: map[string]bool{}, present: map[string]bool{}, nondir: map[string]bool{}}
	v.resetLayer()
	return v
}

// WalkLayer reads the next layer down (gzip, zstd or plain tar, within
// the limits) and calls visit for each of its entries that shows through
// the layers above: never a whiteout, nor an entry of the prefix a higher
// layer deleted, hid or replaced, nor one with a name that is not clean.
// Then it records what the layer holds for the layers below. Nothing visit
// sees may be trusted before the caller has verified the layer's digest.
func (v *Merged) WalkLayer(r io.Reader, lim Limits, visit func(e Entry, content io.Reader) error) error {
	err := Walk(r, lim, func(hdr *tar.Header, content io.Reader) error {
		name, ok := CleanName(hdr.Name)
		if !ok || !v.add(name, hdr.Typeflag) {
			return nil
		}
		return visit(Entry{Name: name, Header: hdr}, content)
	})
	if err != nil {
		return err
	}
	v.endLayer()
	return nil
}

// Under says whether name is under the prefix.
func (v *Merged) Under(name string) bool { return strings.HasPrefix(name, v.prefix) }

// Concerns says whether name is under the prefix or one of its ancestors.
func (v *Merged) Concerns(name string) bool {
	return strings.HasPrefix(name+"/", v.prefix) || strings.HasPrefix(v.prefix, name+"/")
}

// PrefixHidden says whether nothing of the layers still below can show
// under the prefix: it, or one of its ancestors, was deleted, made opaque
// or replaced by something that is not a directory.
func (v *Merged) PrefixHidden() bool {
	for dir := strings.TrimSuffix(v.prefix, "/"); dir != "."; dir = path.Dir(dir) {
		if v.removed[dir] || v.opaque[dir] || v.nondir[dir] {
			return true
		}
	}
	return false
}

func (v *Merged) resetLayer() {
	v.layer.removed, v.layer.opaque, v.layer.present, v.layer.nondir = map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
}

// visible says whether an entry name of the current layer shows through
// the layers above.
func (v *Merged) visible(name string) bool {
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
func (v *Merged) add(name string, typ byte) bool {
	dir, base := path.Dir(name), path.Base(name)
	if base == whiteoutOpaque {
		if dir != "." && v.Concerns(dir) && v.visible(dir) {
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
		if v.Concerns(target) && v.visible(target) {
			v.layer.removed[target] = true
		}
		return false
	}
	if !v.visible(name) {
		return false
	}
	if v.Concerns(name) {
		v.layer.present[name] = true
		if typ != tar.TypeDir {
			v.layer.nondir[name] = true
		}
	}
	return true
}

// endLayer makes the current layer's entries part of what is above the next.
func (v *Merged) endLayer() {
	for _, m := range []struct{ from, to map[string]bool }{
		{v.layer.removed, v.removed}, {v.layer.opaque, v.opaque}, {v.layer.present, v.present}, {v.layer.nondir, v.nondir},
	} {
		for k := range m.from {
			m.to[k] = true
		}
	}
	v.resetLayer()
}
