package verify

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/internal/citest"
	"github.com/dtkbot/dtkbot/internal/kmodtest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
)

const kmodKernel = "5.14.0-427.37.1.el9_4.x86_64"

// TestVerifyKmod: a kmod image passes only with modules under the
// kernel's module path that would load on the kernel of the DTK it was
// built FROM (and, if asked, a label naming the kernel); an image without
// is ErrNoModules, with what was found instead, one whose modules would
// not load ErrWontLoad; an image that cannot be read is neither (it may be
// there later). Every layer is read (a module in a lower layer counts);
// none over the limit.
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
		return payloadtest.File("opt/lib/modules/"+kernel+"/extra/dtkbot_hello.ko", kmodtest.Modules(kmodtest.FlavourCloud, kernel)["dtkbot_hello.ko"])
	}
	dtkFiles := append([]payloadtest.TarEntry{payloadtest.File("etc/driver-toolkit-release.json", []byte(`{"KERNEL_VERSION":"`+kmodKernel+`"}`))},
		citest.DTKKernelFiles(kmodKernel, "", false)...)
	w.PushImage("acme/dtk", "dtk", payloadtest.Image{OCI: true, Layers: [][]byte{payloadtest.TarGz(dtkFiles...)}})
	dtkDigest, _ := srv.TagDigest("acme/dtk", "dtk")
	dtk := srv.Host() + "/acme/dtk@" + dtkDigest.String()
	v := &Kmod{Registry: testClient(), Limits: imageread.DefaultLimits()}
	const path = "opt/lib/modules/" + kmodKernel + "/"
	check := func(v *Kmod, image, label string) error {
		_, err := v.VerifyKmod(context.Background(), KmodCheck{Image: image, Arch: "amd64", KernelFull: kmodKernel, ModulePath: path, Label: label, DTK: dtk})
		return err
	}
	good := push("good", kmodKernel, payloadtest.File("opt/lib/modules/"+kmodKernel+"/modules.dep", nil), ko(kmodKernel))
	before := srv.Stats()
	if err := check(v, good, "kernel-version"); err != nil {
		t.Fatalf("a good kmod image: %v", err)
	}
	cost := srv.Stats().Sub(before)
	t.Logf("verifying a kmod image (4 MiB base, module in the top layer; the DTK's kernel files read too): %d requests, %d bytes", cost.Requests, cost.BytesServed)
	if cost.BytesServed > 4<<20+256<<10 {
		t.Errorf("verification read %d bytes: a layer twice?", cost.BytesServed)
	}

	for name, tc := range map[string]struct {
		image, label, want string
	}{
		"no module":                 {push("none", kmodKernel, payloadtest.File("usr/share/doc/README", []byte("x"))), "", "no kernel module in its 3 layers"},
		"another kernel's":          {push("other", kmodKernel, ko("5.14.0-427.40.1.el9_4.x86_64")), "", "elsewhere (opt/lib/modules/5.14.0-427.40.1"},
		"a module, not a .ko":       {push("notko", kmodKernel, payloadtest.File(path+"acme_nic.o", []byte("x"))), "", "no kernel module"},
		"wrong label":               {push("label", "5.14.0-427.40.1.el9_4.x86_64", ko(kmodKernel)), "kernel-version", "its label kernel-version is"},
		"escaping the root":         {push("escape", kmodKernel, payloadtest.File("../../"+path+"acme_nic.ko", []byte("x"))), "", "no kernel module"},
		"a directory, not a module": {push("dir", kmodKernel, payloadtest.TarEntry{Name: path + "acme_nic.ko/", Type: '5'}), "", "no kernel module"},
	} {
		err := check(v, tc.image, tc.label)
		if !errors.Is(err, ErrNoModules) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrNoModules saying %q", name, err, tc.want)
		}
	}
	// Modules that would not load: named, and why.
	for name, tc := range map[string]struct {
		image, want string
	}{
		"not a module":        {push("elf", kmodKernel, payloadtest.File(path+"acme_nic.ko", []byte("\x7fELF"))), "acme_nic.ko: not a module the kernel can read"},
		"another vermagic":    {push("vermagic", kmodKernel, payloadtest.File(path+"dtkbot_hello.ko", kmodtest.Modules(kmodtest.FlavourCloud, "5.14.0-427.40.1.el9_4.x86_64")["dtkbot_hello.ko"])), "dtkbot_hello.ko: vermagic"},
		"for kernel-rt":       {push("rt", kmodKernel, payloadtest.File(path+"dtkbot_hello.ko", kmodtest.Modules(kmodtest.FlavourRT, kmodKernel)["dtkbot_hello.ko"])), "6 symbol versions differ"},
		"its dependency gone": {push("dep", kmodKernel, payloadtest.File(path+"dtkbot_user.ko", kmodtest.Modules(kmodtest.FlavourCloud, kmodKernel)["dtkbot_user.ko"])), "dtkbot_user.ko: "},
	} {
		err := check(v, tc.image, "")
		if !errors.Is(err, ErrWontLoad) || !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrWontLoad saying %q", name, err, tc.want)
		}
	}
	// A corrupt top layer: what is behind a digest cannot change.
	w.PushImage("acme/kmod", "corrupt", payloadtest.Image{OCI: true, Layers: [][]byte{base, []byte("this is not a tar stream at all, nor gzip, just bytes ......")}})
	if err := check(v, srv.Host()+"/acme/kmod:corrupt", ""); !errors.Is(err, ErrNoModules) {
		t.Errorf("a corrupt layer: %v", err)
	}
	// A layer over the limit is never read.
	small := v.Limits
	small.MaxWalkLayerBytes = 1 << 20
	big := &Kmod{Registry: v.Registry, Limits: small}
	w.PushImage("acme/kmod", "big", payloadtest.Image{OCI: true, Layers: [][]byte{payloadtest.NoiseLayer("big", 2<<20)}})
	before = srv.Stats()
	if err := check(big, srv.Host()+"/acme/kmod:big", ""); !errors.Is(err, ErrNoModules) || !strings.Contains(err.Error(), "over the") {
		t.Errorf("a layer over the limit: %v", err)
	}
	if c := srv.Stats().Sub(before); c.BytesServed > 256<<10 {
		t.Errorf("a layer over the limit was downloaded: %d bytes", c.BytesServed)
	}
	// Missing: not a verdict on the image.
	if err := check(v, srv.Host()+"/acme/kmod:missing", ""); err == nil || errors.Is(err, ErrRejected) {
		t.Errorf("a missing image: %v", err)
	}
	// A DTK without the kernel's files: rejected, unless SkipABI.
	w.PushImage("acme/dtk", "bare", payloadtest.Image{OCI: true, Layers: [][]byte{payloadtest.TarGz(dtkFiles[0])}})
	bare, _ := srv.TagDigest("acme/dtk", "bare")
	c := KmodCheck{Image: good, Arch: "amd64", KernelFull: kmodKernel, ModulePath: path, DTK: srv.Host() + "/acme/dtk@" + bare.String()}
	if _, err := v.VerifyKmod(context.Background(), c); !errors.Is(err, ErrWontLoad) || !strings.Contains(err.Error(), "has no etc/driver-toolkit/"+kmodKernel+"/Module.symvers") {
		t.Errorf("a DTK without the kernel's files: %v", err)
	}
	c.SkipABI = true
	if res, err := v.VerifyKmod(context.Background(), c); err != nil || !strings.Contains(res.Checked, "ABI not checked") {
		t.Errorf("a DTK without the kernel's files, SkipABI: %+v %v", res, err)
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

// TestOneCheckForThePassAndTheCLI: what the pass decides (VerifyKmod) and
// what `dtkbot kmod check` prints (Check's report) are one verdict: the
// report accepts exactly the images the pass accepts, for every kind of
// image and DTK; a DTK that lacks any of the kernel's files rejects the
// image unless verify.abi is false, saying which.
func TestOneCheckForThePassAndTheCLI(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	const path = "opt/lib/modules/" + kmodKernel + "/"
	mods := kmodtest.Modules(kmodtest.FlavourCloud, kmodKernel)
	rtMods := kmodtest.Modules(kmodtest.FlavourRT, kmodKernel)
	push := func(tag string, entries ...payloadtest.TarEntry) string {
		w.PushImage("acme/kmod", tag, payloadtest.Image{OCI: true, Layers: [][]byte{payloadtest.TarGz(append(entries, payloadtest.File("usr/bin/cp", []byte("cp")))...)}})
		return srv.Host() + "/acme/kmod:" + tag
	}
	images := map[string]string{
		"good":      push("good", payloadtest.File(path+"dtkbot_hello.ko", mods["dtkbot_hello.ko"]), payloadtest.File(path+"dtkbot_user.ko", mods["dtkbot_user.ko"])),
		"kernel-rt": push("rt", payloadtest.File(path+"dtkbot_hello.ko", rtMods["dtkbot_hello.ko"])),
		"empty":     push("empty"),
		"elsewhere": push("elsewhere", payloadtest.File("lib/modules/x/dtkbot_hello.ko", mods["dtkbot_hello.ko"])),
		"garbage":   push("garbage", payloadtest.File(path+"acme.ko", []byte("\x7fELF"))),
	}
	release := payloadtest.File("etc/driver-toolkit-release.json", []byte(`{"KERNEL_VERSION":"`+kmodKernel+`"}`))
	files := citest.DTKKernelFiles(kmodKernel, "", false)
	var symversOnly []payloadtest.TarEntry
	for _, f := range files {
		if strings.HasSuffix(f.Name, "/Module.symvers") || strings.HasSuffix(f.Name, "/vermagic") {
			symversOnly = append(symversOnly, f)
		}
	}
	dtks := map[string][]payloadtest.TarEntry{"whole": append([]payloadtest.TarEntry{release}, files...), "symvers only": append([]payloadtest.TarEntry{release}, symversOnly...), "bare": {release}}
	v := &Kmod{Registry: testClient(), Limits: imageread.DefaultLimits()}
	for dtkName, entries := range dtks {
		p := w.PushImage("acme/dtk", "", payloadtest.Image{OCI: true, Layers: [][]byte{payloadtest.TarGz(entries...)}})
		for name, image := range images {
			for _, skipABI := range []bool{false, true} {
				c := KmodCheck{Image: image, Arch: "amd64", KernelFull: kmodKernel, ModulePath: path, DTK: p.Pullspec, SkipABI: skipABI}
				o, err := v.Check(context.Background(), c)
				if err != nil {
					t.Fatalf("%s on DTK %s: %v", name, dtkName, err)
				}
				_, verr := v.VerifyKmod(context.Background(), c)
				if verr != nil && !errors.Is(verr, ErrRejected) {
					t.Fatalf("%s on DTK %s: %v", name, dtkName, verr)
				}
				if o.Report.Accepted != (verr == nil) {
					t.Errorf("%s on DTK %s (skip ABI %v): the report says accepted %v (%s), the pass %v", name, dtkName, skipABI, o.Report.Accepted, o.Report.Reason, verr)
				}
				wantAccepted := name == "good" && (dtkName == "whole" || skipABI)
				if o.Report.Accepted != wantAccepted {
					t.Errorf("%s on DTK %s (skip ABI %v): accepted %v (%s)", name, dtkName, skipABI, o.Report.Accepted, o.Report.Reason)
				}
				if name == "good" && dtkName == "symvers only" && !skipABI && !strings.Contains(verr.Error(), "has no etc/driver-toolkit/"+kmodKernel+"/modules.dep") {
					t.Errorf("a DTK without modules.dep: %v", verr)
				}
			}
		}
	}
}
