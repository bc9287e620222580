package kmod

import (
	"bytes"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ulikunitz/xz"
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
