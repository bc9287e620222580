package verify

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/releaseinfo"
)

const kmodKernel = "5.14.0-427.37.1.el9_4.x86_64"

// TestVerifyKmod: a kmod image passes only with a module under the
// kernel's module path (and, if asked, a label naming the kernel); every
// other image is ErrNoModules, with what was found instead, and an image
// that cannot be read is not (it may be there later). Verification reads
// the manifest, the config and the top layers: never the base.
func TestVerifyKmod(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	base := payloadtest.NoiseLayer("ubi-minimal", 4<<20)
	push := func(tag string, label string, top ...payloadtest.TarEntry) string {
		layers := [][]byte{base, payloadtest.TarGz(payloadtest.File("usr/bin/cp", []byte("cp")))}
		if len(top) > 0 {
			layers = append(layers, payloadtest.TarGz(top...))
		}
		w.PushImage("acme/kmod", tag, payloadtest.Image{OCI: true, Labels: map[string]string{"kernel-version": label}, Layers: layers})
		return srv.Host() + "/acme/kmod:" + tag
	}
	ko := func(kernel string) payloadtest.TarEntry {
		return payloadtest.File("opt/lib/modules/"+kernel+"/extra/acme_nic.ko", []byte("\x7fELF"))
	}
	v := &Kmod{Registry: testClient(), Limits: releaseinfo.DefaultLimits()}
	const path = "opt/lib/modules/" + kmodKernel + "/"
	good := push("good", kmodKernel, payloadtest.File("opt/lib/modules/"+kmodKernel+"/modules.dep", nil), ko(kmodKernel))
	before := srv.Stats()
	if err := v.VerifyKmod(context.Background(), good, "amd64", kmodKernel, path, "kernel-version"); err != nil {
		t.Fatalf("a good kmod image: %v", err)
	}
	cost := srv.Stats().Sub(before)
	t.Logf("verifying a kmod image (4 MiB base, module in the top layer): %d requests, %d bytes", cost.Requests, cost.BytesServed)
	if cost.BytesServed > 64<<10 {
		t.Errorf("verification read %d bytes: the base layer was read", cost.BytesServed)
	}
	if compressed := v.VerifyKmod(context.Background(), push("xz", kmodKernel, payloadtest.File("opt/lib/modules/"+kmodKernel+"/acme_nic.ko.xz", []byte("xz"))),
		"amd64", kmodKernel, path, ""); compressed != nil {
		t.Errorf("a compressed module: %v", compressed)
	}

	for name, tc := range map[string]struct {
		image, label, want string
	}{
		"no module":                 {push("none", kmodKernel, payloadtest.File("usr/share/doc/README", []byte("x"))), "", "no kernel module in its top"},
		"another kernel's":          {push("other", kmodKernel, ko("5.14.0-427.40.1.el9_4.x86_64")), "", "elsewhere (opt/lib/modules/5.14.0-427.40.1"},
		"a module, not a .ko":       {push("notko", kmodKernel, payloadtest.File(path+"acme_nic.o", []byte("x"))), "", "no kernel module"},
		"wrong label":               {push("label", "5.14.0-427.40.1.el9_4.x86_64", ko(kmodKernel)), "kernel-version", "its label kernel-version is"},
		"escaping the root":         {push("escape", kmodKernel, payloadtest.File("../../"+path+"acme_nic.ko", []byte("x"))), "", "no kernel module"},
		"a directory, not a module": {push("dir", kmodKernel, payloadtest.TarEntry{Name: path + "acme_nic.ko/", Type: '5'}), "", "no kernel module"},
	} {
		err := v.VerifyKmod(context.Background(), tc.image, "amd64", kmodKernel, path, tc.label)
		if !errors.Is(err, ErrNoModules) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrNoModules saying %q", name, err, tc.want)
		}
	}
	// A corrupt top layer: what is behind a digest cannot change.
	w.PushImage("acme/kmod", "corrupt", payloadtest.Image{OCI: true, Layers: [][]byte{base, []byte("this is not a tar stream at all, nor gzip, just bytes ......")}})
	if err := v.VerifyKmod(context.Background(), srv.Host()+"/acme/kmod:corrupt", "amd64", kmodKernel, path, ""); !errors.Is(err, ErrNoModules) {
		t.Errorf("a corrupt layer: %v", err)
	}
	// A layer over the limit is never read.
	small := v.Limits
	small.MaxKmodLayerBytes = 1 << 20
	big := &Kmod{Registry: v.Registry, Limits: small}
	w.PushImage("acme/kmod", "big", payloadtest.Image{OCI: true, Layers: [][]byte{payloadtest.NoiseLayer("big", 2<<20)}})
	before = srv.Stats()
	if err := big.VerifyKmod(context.Background(), srv.Host()+"/acme/kmod:big", "amd64", kmodKernel, path, ""); !errors.Is(err, ErrNoModules) ||
		!strings.Contains(err.Error(), "over the") {
		t.Errorf("a layer over the limit: %v", err)
	}
	if c := srv.Stats().Sub(before); c.BytesServed > 64<<10 {
		t.Errorf("a layer over the limit was downloaded: %d bytes", c.BytesServed)
	}
	// Missing: not a verdict on the image.
	if err := v.VerifyKmod(context.Background(), srv.Host()+"/acme/kmod:missing", "amd64", kmodKernel, path, ""); err == nil || errors.Is(err, ErrNoModules) {
		t.Errorf("a missing image: %v", err)
	}
}

func TestModulePath(t *testing.T) {
	if p, err := ModulePath("opt/lib/modules/{{.KernelFull}}", "5.14.0-427.37.1.el9_4", kmodKernel); err != nil || p != "opt/lib/modules/"+kmodKernel+"/" {
		t.Errorf("%q %v", p, err)
	}
	for _, bad := range []string{"/opt/lib/modules/{{.KernelFull}}/", "opt/lib/modules/", "opt/{{.KernelFull}}/../../etc/", "opt/{{.Kernal}}/", "opt/{{.KernelFull"} {
		if _, err := ModulePath(bad, "5.14.0-427.37.1.el9_4", kmodKernel); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}
