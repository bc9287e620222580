package daemon

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/internal/kubetest"
	"github.com/dtkbot/dtkbot/kmm"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/state"
)

// TestKMMModuleTheAPIServerTakes: /api/v1/kmm/modules/{consumer} never
// serves a Module KMM's CRD refuses, as a real API server with KMM's
// Module CRD (kmm/testdata) decides: for a consumer with no verified image
// yet (no kernel mapping: minItems 1) it answers 404 with the reason; once
// one is promoted, the API server creates the Module it serves.
func TestKMMModuleTheAPIServerTakes(t *testing.T) {
	api := kubetest.Start(t)
	crd, err := os.ReadFile("../kmm/testdata/kmm.sigs.x-k8s.io_modules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	api.CreateCRD(t, crd)
	ns := api.Namespace(t)
	modules := "/apis/" + kmm.Group + "/v1beta1/namespaces/" + ns + "/modules"

	const kf = "5.14.0-570.19.1.el9_6.x86_64"
	dtk := ledger.Image{Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-570.19.1.el9_6", KernelFull: kf, Releases: []string{"4.19.0"},
		State: ledger.StatePromoted, Image: "quay.io/acme/dtk:" + kf, ImageDigest: "sha256:" + strings.Repeat("a", 64), Published: true}
	nic := ledger.Image{Consumer: "acme-nic", Stream: dtk.Stream, Arch: dtk.Arch, Kernel: dtk.Kernel, KernelFull: kf,
		State: ledger.StateBuildRequested, Image: "quay.io/acme/acme-nic:" + kf}
	put := func(d *Daemon, m ledger.Image) {
		if err := d.Store.Update(func(tx *state.Tx) error { return tx.PutImage(m) }); err != nil {
			t.Fatal(err)
		}
	}
	r := start(t, &fakePasser{}, "", func(d *Daemon) {
		d.KMMModules = map[string]kmm.ModuleOptions{"acme-nic": {Namespace: ns, ModuleName: "acme_nic"}, "beta": {Namespace: ns, ModuleName: "beta"}}
		put(d, dtk)
		put(d, nic)
	})

	code, body := get(t, r.url+"/api/v1/kmm/modules/acme-nic")
	switch {
	case code == http.StatusOK:
		err := api.Create(context.Background(), modules, []byte(body))
		t.Errorf("a consumer with no verified image yet: a Module served (the API server: %v):\n%s", err, body)
	case code != http.StatusNotFound || !strings.Contains(body, "no kernel mapping"):
		t.Errorf("a consumer with no verified image yet: %d %s", code, body)
	}

	nic.State, nic.ImageDigest, nic.Published = ledger.StatePromoted, "sha256:"+strings.Repeat("c", 64), true
	put(r.d, nic)
	code, body = get(t, r.url+"/api/v1/kmm/modules/acme-nic")
	if code != http.StatusOK {
		t.Fatalf("a consumer with a promoted image: %d %s", code, body)
	}
	if err := api.Create(context.Background(), modules, []byte(body)); err != nil {
		t.Errorf("the Module served: %v\n%s", err, body)
	}

	// A consumer built for the default and the RT kernel: its Module maps
	// each uname -r, and the API server takes it.
	const rt = kf + "+rt"
	dtk.KernelFilesRead(ledger.KernelFilesCheck{Variants: []ledger.VariantKernel{{Variant: ledger.VariantRT, KernelFull: rt}}}, dtk.UpdatedAt)
	put(r.d, dtk)
	for _, v := range []string{ledger.VariantDefault, ledger.VariantRT} {
		b := nic
		b.Consumer, b.Variant, b.Image = "beta", v, "quay.io/acme/beta:"+map[string]string{"": kf, "rt": strings.ReplaceAll(rt, "+", "_")}[v]
		if v == ledger.VariantRT {
			b.KernelFull = rt
		}
		put(r.d, b)
	}
	code, body = get(t, r.url+"/api/v1/kmm/modules/beta")
	if code != http.StatusOK || !strings.Contains(body, "- literal: "+kf+"\n") || !strings.Contains(body, "- literal: "+rt+"\n") {
		t.Fatalf("a Module for the default and the RT kernel: %d %s", code, body)
	}
	if err := api.Create(context.Background(), modules, []byte(body)); err != nil {
		t.Errorf("the Module served for two variants: %v\n%s", err, body)
	}
}
