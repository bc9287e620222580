package verify

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/kmod"
	"github.com/dtkbot/dtkbot/registry"
	"github.com/dtkbot/dtkbot/releaseinfo"
)

// TestKmodCheckCost measures one kmod check as dtkbot makes it, cold (a
// new client: ping and tokens included), against a registry that wants
// bearer tokens as quay.io does: the kernel's files from the DTK's last
// layer (the standard kernel's whole Module.symvers, 14,415 symbols, 907
// KB, with modules.dep, modules.builtin and vermagic), then every layer of
// the kmod image. The DTK's content layers are never read. `make bench`
// prints the figures.
func TestKmodCheckCost(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	srv.RequireBearerAuth("", "")
	w := payloadtest.New(srv.Registry, srv.Host())

	release, _ := json.Marshal(map[string]string{"KERNEL_VERSION": cloud, "RT_KERNEL_VERSION": "package kernel-rt-core is not installed", "RHEL_VERSION": "9.4"})
	dir := releaseinfo.KernelFilesDir + cloud + "/"
	files := []payloadtest.TarEntry{payloadtest.File("etc/driver-toolkit-release.json", release)}
	raw := 0
	for _, f := range []string{releaseinfo.SymversFile, releaseinfo.ModulesDepFile, releaseinfo.ModulesBuiltinFile, releaseinfo.VermagicFile} {
		data := kernelFile(t, cloud, f)
		raw += len(data)
		files = append(files, payloadtest.File(dir+f, data))
	}
	last := payloadtest.TarGz(files...)
	const content = 8 << 20 // stand-ins for the DTK's 1-2 GB of packages: never read
	dtk := w.PushImage("acme/driver-toolkit", "", payloadtest.Image{OCI: true,
		Layers: [][]byte{payloadtest.NoiseLayer("ubi9", content), payloadtest.NoiseLayer("kernel-packages", content), last}})

	hello, user := committedModule(t, cloud, "signed", "dtkbot_hello.ko.xz"), committedModule(t, cloud, "signed", "dtkbot_user.ko.xz")
	modDir := kmod.DefaultModulePath(cloud)
	const base = 4 << 20 // stands in for ubi-minimal (about 38 MB compressed): a check reads it whole
	layers := [][]byte{
		payloadtest.NoiseLayer("ubi-minimal", base),
		payloadtest.NoiseLayer("microdnf-install-kmod", 256<<10),
		payloadtest.TarGz(modulesAt(modDir, map[string][]byte{"dtkbot_hello.ko.xz": hello, "dtkbot_user.ko.xz": user})...),
		payloadtest.TarGz(payloadtest.File(modDir+"modules.dep", []byte("dtkbot_user.ko.xz: dtkbot_hello.ko.xz\ndtkbot_hello.ko.xz:\n"))),
	}
	kmodImg := w.PushImage("acme/simple-kmod", cloud, payloadtest.Image{OCI: true, Layers: layers})
	kmodBytes := int64(0)
	for _, l := range layers {
		kmodBytes += int64(len(l))
	}

	f := false
	reg := registry.New(registry.Options{TLSVerify: &f, RegistriesConf: "/dev/null", Attempts: 1, Timeout: 10 * time.Second})
	c := &testChecker{reg: reg, lim: imageread.DefaultLimits()}
	v := &Kmod{Registry: reg, Limits: imageread.DefaultLimits()}
	certs := committedCerts(t, "trusted.pem")

	before := srv.Stats()
	k, missing, err := v.KernelOf(context.Background(), dtk.Pullspec, "amd64", cloud)
	if err != nil || len(missing) > 0 {
		t.Fatalf("%v, missing %v", err, missing)
	}
	dtkCost := srv.Stats().Sub(before)
	before = srv.Stats()
	r, err := c.checkImage(context.Background(), kmodImg.Pullspec, modDir, k, kmod.CheckOptions{Certs: certs, RequireABI: true}, kmod.ReadOptions{})
	if err != nil || !r.Accepted {
		t.Fatalf("%+v %v", r, err)
	}
	kmodCost := srv.Stats().Sub(before)

	t.Logf("kmod check, DTK files: %d requests (%d manifest, %d blob) + %d ping + %d token; %d bytes (the last layer: %d bytes gzip of %d bytes of files)",
		dtkCost.Requests, dtkCost.ManifestGETs, dtkCost.BlobGETs, dtkCost.Pings, dtkCost.Tokens, dtkCost.BytesServed, len(last), raw)
	t.Logf("kmod check, image: %d requests (%d manifest, %d blob) + %d ping + %d token; %d bytes (its %d layers: %d bytes)",
		kmodCost.Requests, kmodCost.ManifestGETs, kmodCost.BlobGETs, kmodCost.Pings, kmodCost.Tokens, kmodCost.BytesServed, len(kmodImg.Layers), kmodBytes)
	total := dtkCost.Requests + dtkCost.Pings + dtkCost.Tokens + kmodCost.Requests + kmodCost.Pings + kmodCost.Tokens
	t.Logf("kmod check, total: %d round trips, %d bytes", total, dtkCost.BytesServed+kmodCost.BytesServed)

	// The DTK: one manifest and its last layer, never a content layer.
	if dtkCost.ManifestGETs != 1 || dtkCost.BlobGETs != 1 || dtkCost.BytesServed > int64(len(last))+8<<10 {
		t.Errorf("DTK files: %+v; want one manifest and the %d-byte last layer", dtkCost, len(last))
	}
	// The kmod image: its manifest, config and every layer once.
	if kmodCost.ManifestGETs != 1 || kmodCost.BlobGETs != int64(1+len(kmodImg.Layers)) || kmodCost.BytesServed > kmodBytes+16<<10 {
		t.Errorf("kmod image: %+v; want its manifest, config and %d layers (%d bytes)", kmodCost, len(kmodImg.Layers), kmodBytes)
	}
	if dtkCost.Pings+kmodCost.Pings != 1 || dtkCost.Tokens+kmodCost.Tokens != 2 {
		t.Errorf("%d pings and %d tokens: want one ping and a token per repository", dtkCost.Pings+kmodCost.Pings, dtkCost.Tokens+kmodCost.Tokens)
	}
}
