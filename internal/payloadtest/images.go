package payloadtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"time"

	"github.com/opencontainers/go-digest"
	imgspecs "github.com/opencontainers/image-spec/specs-go"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of the Docker schema 2 format, which older payloads use.
const (
	DockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	DockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	DockerConfig   = "application/vnd.docker.container.image.v1+json"
	DockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// TarEntry is one entry of a layer built by TarGz. Type defaults to a
// regular file.
type TarEntry struct {
	Name     string
	Body     []byte
	Type     byte
	Linkname string
	Size     int64 // when set, the header's size (for hostile layers)
}

// File is a regular file entry.
func File(name string, body []byte) TarEntry { return TarEntry{Name: name, Body: body} }

// Tar builds an uncompressed tar stream.
func Tar(entries []TarEntry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2024, 9, 4, 0, 13, 0, 0, time.UTC)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Mode: 0o644, ModTime: mtime, Typeflag: e.Type, Linkname: e.Linkname}
		switch h.Typeflag {
		case 0, tar.TypeReg:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.Body))
		case tar.TypeDir:
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			panic(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.Body); err != nil {
				panic(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// Gzip compresses data.
func Gzip(data []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	_, _ = zw.Write(data)
	_ = zw.Close()
	return buf.Bytes()
}

// TarGz is Gzip(Tar(entries)), the usual layer.
func TarGz(entries ...TarEntry) []byte { return Gzip(Tar(entries)) }

// Noise returns n incompressible bytes determined by seed: stand-ins for OS
// and DTK content layers, which must never be downloaded.
func Noise(seed string, n int) []byte {
	h := fnv.New64a()
	_, _ = h.Write([]byte(seed))
	r := rand.New(rand.NewPCG(h.Sum64(), 0x9e3779b97f4a7c15))
	out := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			out[i+j] = byte(v >> (8 * j))
		}
	}
	return out
}

// NoiseLayer is a gzip tar layer holding one file of incompressible content.
func NoiseLayer(seed string, n int) []byte {
	return TarGz(File("usr/lib/"+seed+".bin", Noise(seed, n)))
}

// Image is what PushImage builds: one platform's image.
type Image struct {
	Arch   string // GOARCH style; amd64 by default
	Layers [][]byte
	Labels map[string]string
	OCI    bool // OCI media types instead of Docker schema 2
	// LayerMediaTypes, where set (by index), replace a layer's media type
	// (application/vnd.oci.image.layer.v1.tar+zstd, ...).
	LayerMediaTypes []string
}

// Pushed is an image or manifest list in the registry.
type Pushed struct {
	Repo      string
	Digest    digest.Digest
	Pullspec  string // host/repo@digest
	MediaType string
	Arch      string
	Config    digest.Digest
	Layers    []digest.Digest
	Size      int64 // manifest, config and layers (all instances for a list)
	Instances []Pushed
}

// PushImage stores img in repo (tagged if tag is not empty).
func (w *World) PushImage(repo, tag string, img Image) Pushed {
	arch := img.Arch
	if arch == "" {
		arch = "amd64"
	}
	cfg := imgspec.Image{
		Platform: imgspec.Platform{Architecture: arch, OS: "linux"},
		Config:   imgspec.ImageConfig{Labels: img.Labels},
		RootFS:   imgspec.RootFS{Type: "layers"},
	}
	for _, l := range img.Layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.FromBytes(l)) // not the real diff id; nothing here reads it
	}
	cfgBytes, _ := json.Marshal(cfg)
	p := Pushed{Repo: repo, Arch: arch}
	p.Config = w.Reg.PutBlob(repo, cfgBytes)
	p.Size += int64(len(cfgBytes))
	configMT, layerMT, manifestMT := DockerConfig, DockerLayer, DockerManifest
	if img.OCI {
		configMT, layerMT, manifestMT = imgspec.MediaTypeImageConfig, imgspec.MediaTypeImageLayerGzip, imgspec.MediaTypeImageManifest
	}
	m := imgspec.Manifest{
		Versioned: imgspecs.Versioned{SchemaVersion: 2},
		MediaType: manifestMT,
		Config:    imgspec.Descriptor{MediaType: configMT, Digest: p.Config, Size: int64(len(cfgBytes))},
	}
	for i, l := range img.Layers {
		d := w.Reg.PutBlob(repo, l)
		p.Layers = append(p.Layers, d)
		p.Size += int64(len(l))
		mt := layerMT
		if i < len(img.LayerMediaTypes) && img.LayerMediaTypes[i] != "" {
			mt = img.LayerMediaTypes[i]
		}
		m.Layers = append(m.Layers, imgspec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(l))})
	}
	body, _ := json.Marshal(m)
	p.MediaType = manifestMT
	p.Digest = w.Reg.PutManifest(repo, tag, manifestMT, body)
	p.Size += int64(len(body))
	p.Pullspec = fmt.Sprintf("%s/%s@%s", w.Host, repo, p.Digest)
	return p
}

// PushList stores a manifest list of instances (already pushed to repo).
func (w *World) PushList(repo, tag string, oci bool, instances ...Pushed) Pushed {
	mt := DockerList
	if oci {
		mt = imgspec.MediaTypeImageIndex
	}
	idx := imgspec.Index{Versioned: imgspecs.Versioned{SchemaVersion: 2}, MediaType: mt}
	p := Pushed{Repo: repo, MediaType: mt, Instances: instances}
	for _, in := range instances {
		body, _, _ := w.Reg.Manifest(repo, in.Digest.String())
		idx.Manifests = append(idx.Manifests, imgspec.Descriptor{
			MediaType: in.MediaType, Digest: in.Digest, Size: int64(len(body)),
			Platform: &imgspec.Platform{Architecture: in.Arch, OS: "linux"},
		})
		p.Size += in.Size
	}
	body, _ := json.Marshal(idx)
	p.Digest = w.Reg.PutManifest(repo, tag, mt, body)
	p.Size += int64(len(body))
	p.Pullspec = fmt.Sprintf("%s/%s@%s", w.Host, repo, p.Digest)
	return p
}

// ForArch returns the instance of a list for arch, or p itself.
func (p Pushed) ForArch(arch string) Pushed {
	for _, in := range p.Instances {
		if in.Arch == arch {
			return in
		}
	}
	return p
}

// DuplicateTag is a ReleaseSpec.Tweak listing component name a second time
// in image-references: the same entry again, or (image not empty) one
// naming another image.
func DuplicateTag(name, image string) func([]TarEntry) []TarEntry {
	return func(entries []TarEntry) []TarEntry {
		for i, e := range entries {
			if e.Name != "release-manifests/image-references" {
				continue
			}
			var is map[string]any
			if err := json.Unmarshal(e.Body, &is); err != nil {
				panic(err)
			}
			spec := is["spec"].(map[string]any)
			tags := spec["tags"].([]any)
			for _, tag := range tags {
				if tag.(map[string]any)["name"] != name {
					continue
				}
				dup := map[string]any{}
				for k, v := range tag.(map[string]any) {
					dup[k] = v
				}
				if image != "" {
					dup["from"] = map[string]any{"kind": "DockerImage", "name": image}
				}
				tags = append(tags, dup)
				break
			}
			spec["tags"] = tags
			entries[i].Body, _ = json.Marshal(is)
		}
		return entries
	}
}
