package kmod

import (
	"bytes"
	"crypto/x509"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"go.podman.io/storage/pkg/chunked/compressor"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
)

// The kernels of testdata (see testdata/README.md): the one the modules are
// checked against, the RT flavour of the same build, and the previous ABI
// of the same flavour.
const (
	cloud = "6.1.0-57-cloud-amd64"
	rt    = "6.1.0-57-rt-amd64"
	older = "6.1.0-56-cloud-amd64"
)

// material is a directory laid out as make-modules.sh writes it: the
// committed testdata, or a fresh run of the script.
type material struct{ dir string }

var committed = material{dir: "testdata"}

// module returns a module file's bytes: variant "" is the unsigned build,
// else signed, signed-keyid, signed-ecdsa, signed-other, tampered.
func (m material) module(t testing.TB, kernel, variant, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(m.dir, "modules", kernel, variant, file))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (m material) parsed(t testing.TB, kernel, variant, file string) *Module {
	t.Helper()
	c, _ := IsModuleFile(file)
	mod, err := ParseFile(DefaultModulePath(kernel)+file, m.module(t, kernel, variant, file), c, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	return mod
}

func (m material) certs(t testing.TB, names ...string) []*x509.Certificate {
	t.Helper()
	var paths []string
	for _, n := range names {
		paths = append(paths, filepath.Join(m.dir, "certs", n))
	}
	c, err := LoadCertificates(paths...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// kernelFile returns a file of testdata/kernels/<kernel>/, decompressed.
func kernelFile(t testing.TB, kernel, name string) []byte {
	t.Helper()
	if data, ok := kernelFiles.Load(kernel + "/" + name); ok {
		return data.([]byte)
	}
	data := readKernelFile(t, kernel, name)
	kernelFiles.Store(kernel+"/"+name, data)
	return data
}

// kernelFiles caches kernelFile: the whole Module.symvers takes a while to
// decompress.
var kernelFiles sync.Map

func readKernelFile(t testing.TB, kernel, name string) []byte {
	t.Helper()
	if data, err := os.ReadFile(filepath.Join("testdata", "kernels", kernel, name)); err == nil {
		return data
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "kernels", kernel, name+".xz"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := xz.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// testKernel is a kernel of testdata with all its files.
func testKernel(t testing.TB, kernel string) *Kernel {
	t.Helper()
	k, err := NewKernel(kernel, kernelFile(t, kernel, "Module.symvers"), kernelFile(t, kernel, "modules.dep"),
		kernelFile(t, kernel, "modules.builtin"), kernelFile(t, kernel, "vermagic"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// layer compressions for test images.
const (
	layerGzip      = "gzip"
	layerZstd      = "zstd"
	layerChunked   = "zstd:chunked"
	layerPlain     = "none"
	mediaTypeZstd  = "application/vnd.oci.image.layer.v1.tar+zstd"
	mediaTypePlain = "application/vnd.oci.image.layer.v1.tar"
)

// compressLayer compresses a tar stream as podman would push it.
func compressLayer(t testing.TB, tarball []byte, how string) (blob []byte, mediaType string) {
	t.Helper()
	var buf bytes.Buffer
	switch how {
	case layerGzip:
		return payloadtest.Gzip(tarball), ""
	case layerPlain:
		return tarball, mediaTypePlain
	case layerZstd:
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = zw.Write(tarball)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes(), mediaTypeZstd
	case layerChunked:
		// What podman push --compression-format zstd:chunked writes
		// (containers/storage's chunked compressor: a frame per file, the
		// table of contents in skippable frames at the end).
		zw, err := compressor.ZstdCompressor(&buf, map[string]string{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = zw.Write(tarball)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes(), mediaTypeZstd
	}
	t.Fatalf("unknown layer compression %q", how)
	return nil, ""
}

// kmodImage is a test kmod image: a base layer (standing in for
// ubi-minimal, with a cp) and layers of entries on top.
type kmodImage struct {
	layers [][]payloadtest.TarEntry
	how    []string // compression per layer on top of the base; gzip when not set
}

func (w kmodImage) push(t testing.TB, world *payloadtest.World, repo, tag string) payloadtest.Pushed {
	t.Helper()
	img := payloadtest.Image{OCI: true,
		Layers:          [][]byte{payloadtest.TarGz(payloadtest.File("usr/bin/cp", payloadtest.Noise("cp", 4096)))},
		LayerMediaTypes: []string{""}}
	for i, entries := range w.layers {
		how := layerGzip
		if i < len(w.how) && w.how[i] != "" {
			how = w.how[i]
		}
		blob, mt := compressLayer(t, payloadtest.Tar(entries), how)
		img.Layers = append(img.Layers, blob)
		img.LayerMediaTypes = append(img.LayerMediaTypes, mt)
	}
	return world.PushImage(repo, tag, img)
}

// modulesAt are tar entries putting files (name -> content) under dir.
func modulesAt(dir string, files map[string][]byte) []payloadtest.TarEntry {
	entries := []payloadtest.TarEntry{}
	for _, d := range parents(dir) {
		entries = append(entries, payloadtest.TarEntry{Name: d + "/", Type: '5'})
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		entries = append(entries, payloadtest.File(strings.TrimSuffix(dir, "/")+"/"+name, files[name]))
	}
	return entries
}

func parents(dir string) []string {
	var out []string
	parts := strings.Split(strings.Trim(dir, "/"), "/")
	for i := range parts {
		out = append(out, strings.Join(parts[:i+1], "/"))
	}
	return out
}
