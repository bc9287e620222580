package verify

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"go.podman.io/storage/pkg/chunked/compressor"

	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/kmod"
	"github.com/dtkbot/dtkbot/registry"
)

// The real modules and kernel files of package kmod's tests (see
// kmod/testdata/README.md): the kernel the modules are checked against,
// the RT flavour of the same build, and the previous ABI of the same
// flavour.
const (
	kmodTestdata = "../kmod/testdata"
	cloud        = "6.1.0-57-cloud-amd64"
	rt           = "6.1.0-57-rt-amd64"
	older        = "6.1.0-56-cloud-amd64"
)

// committedModule returns a module file's bytes: variant "" is the
// unsigned build, else signed, signed-keyid, signed-ecdsa, signed-other,
// tampered.
func committedModule(t testing.TB, kernel, variant, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(kmodTestdata, "modules", kernel, variant, file))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func committedCerts(t testing.TB, names ...string) []*x509.Certificate {
	t.Helper()
	var paths []string
	for _, n := range names {
		paths = append(paths, filepath.Join(kmodTestdata, "certs", n))
	}
	c, err := kmod.LoadCertificates(paths...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// kernelFiles caches kernelFile: the whole Module.symvers takes a while to
// decompress.
var kernelFiles sync.Map

// kernelFile returns a file of kmod's testdata/kernels/<kernel>/,
// decompressed.
func kernelFile(t testing.TB, kernel, name string) []byte {
	t.Helper()
	if data, ok := kernelFiles.Load(kernel + "/" + name); ok {
		return data.([]byte)
	}
	p := filepath.Join(kmodTestdata, "kernels", kernel, name)
	data, err := os.ReadFile(p)
	if err != nil {
		raw, err := os.ReadFile(p + ".xz")
		if err != nil {
			t.Fatal(err)
		}
		r, err := xz.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if data, err = io.ReadAll(r); err != nil {
			t.Fatal(err)
		}
	}
	kernelFiles.Store(kernel+"/"+name, data)
	return data
}

// testKernel is a kernel of testdata with all its files.
func testKernel(t testing.TB, kernel string) *kmod.Kernel {
	t.Helper()
	k, err := kmod.NewKernel(kernel, kernelFile(t, kernel, "Module.symvers"), kernelFile(t, kernel, "modules.dep"),
		kernelFile(t, kernel, "modules.builtin"), kernelFile(t, kernel, "vermagic"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testChecker reads and checks kmod images as Kmod does, through one
// registry client within lim.
type testChecker struct {
	reg *registry.Client
	lim imageread.Limits
}

func newTestChecker(t testing.TB, lim imageread.Limits) *testChecker {
	t.Helper()
	f := false
	return &testChecker{reg: registry.New(registry.Options{TLSVerify: &f, RegistriesConf: "/dev/null", Attempts: 1, Timeout: 10 * time.Second}), lim: lim}
}

// readImage reads the modules under dir of the kmod image at pullspec.
func (c *testChecker) readImage(ctx context.Context, pullspec, dir string, opts kmod.ReadOptions) (*kmod.Image, error) {
	v := &Kmod{Registry: c.reg, Limits: c.lim, Read: opts}
	return v.readImage(ctx, imageread.New(c.reg, "amd64", c.lim), pullspec, dir)
}

// checkImage checks the kmod image at pullspec against k, as `dtkbot kmod
// check` does: the report when it could decide, an error when not.
func (c *testChecker) checkImage(ctx context.Context, pullspec, dir string, k *kmod.Kernel, opts kmod.CheckOptions, read kmod.ReadOptions) (*kmod.Report, error) {
	v := &Kmod{Registry: c.reg, Limits: c.lim, Read: read}
	o, err := v.Check(ctx, KmodCheck{Image: pullspec, Arch: "amd64", KernelFull: k.Release, ModulePath: dir, Kernel: k, Certs: opts.Certs, ModuleName: opts.Load})
	if err != nil {
		return nil, err
	}
	return o.Report, nil
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
