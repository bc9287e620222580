package daemon

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/dtkbot/dtkbot/kmm"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/state"
)

func TestKMMEndpoints(t *testing.T) {
	const kf = "5.14.0-570.19.1.el9_6.x86_64"
	dtk := ledger.Image{Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-570.19.1.el9_6", KernelFull: kf, Releases: []string{"4.19.0", "4.19.1"},
		State: ledger.StatePromoted, Image: "quay.io/acme/dtk:" + kf, ImageDigest: "sha256:" + strings.Repeat("a", 64), Published: true}
	nic := ledger.Image{Consumer: "acme-nic", Stream: dtk.Stream, Arch: dtk.Arch, Kernel: dtk.Kernel, KernelFull: kf,
		State: ledger.StatePromoted, Image: "quay.io/acme/acme-nic:" + kf, ImageDigest: "sha256:" + strings.Repeat("c", 64), Published: true}
	r := start(t, &fakePasser{}, "", func(d *Daemon) {
		d.KMMModules = map[string]kmm.ModuleOptions{"acme-nic": {Namespace: "acme", ModuleName: "acme_nic"}, "acme-fpga": {}}
		if err := d.Store.Update(func(tx *state.Tx) error {
			if err := tx.PutImage(dtk); err != nil {
				return err
			}
			return tx.PutImage(nic)
		}); err != nil {
			t.Fatal(err)
		}
	})

	resp, err := http.Get(r.url + "/api/v1/kmm/preflights?release=4.19.1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	docs := yamlDocs(t, body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/yaml" || len(docs) != 1 {
		t.Fatalf("%d %s:\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	spec := docs[0]["spec"].(map[string]any)
	if docs[0]["kind"] != "PreflightValidationOCP" || spec["kernelVersion"] != kf || spec["dtkImage"] != "quay.io/acme/dtk@sha256:"+strings.Repeat("a", 64) {
		t.Fatalf("preflight:\n%s", body)
	}
	if _, all := get(t, r.url+"/api/v1/kmm/preflights"); len(yamlDocs(t, []byte(all))) != 2 {
		t.Fatalf("all preflights:\n%s", all)
	}

	code, mod := get(t, r.url+"/api/v1/kmm/modules/acme-nic")
	if code != 200 || !strings.Contains(mod, "kind: Module") || !strings.Contains(mod, "moduleName: acme_nic") ||
		!strings.Contains(mod, "- literal: "+kf) || !strings.Contains(mod, "containerImage: quay.io/acme/acme-nic:"+kf) {
		t.Fatalf("module %d:\n%s", code, mod)
	}
	if code, maps := get(t, r.url+"/api/v1/kmm/kernel-mappings/acme-nic"); code != 200 || !strings.Contains(maps, "containerImage: quay.io/acme/acme-nic:"+kf) {
		t.Fatalf("mappings %d:\n%s", code, maps)
	}
	for path, want := range map[string]int{
		"/api/v1/kmm/modules/acme-fpga":          http.StatusNotFound, // names no module
		"/api/v1/kmm/modules/nobody":             http.StatusNotFound,
		"/api/v1/kmm/kernel-mappings/nobody":     http.StatusNotFound,
		"/api/v1/kmm/preflights?release=4.20.0":  http.StatusNotFound,
		"/api/v1/kmm/preflights?release=%3Cx%3E": http.StatusBadRequest,
		"/api/v1/kmm/preflights?arch=a%20b":      http.StatusBadRequest,
	} {
		if code, body := get(t, r.url+path); code != want {
			t.Errorf("%s: %d, want %d: %s", path, code, want, body)
		}
	}
	if code, st := get(t, r.url+"/status"); code != 200 || !strings.Contains(st, `"consumer_builds": [`) || !strings.Contains(st, `"consumer": "acme-nic"`) {
		t.Errorf("status %d:\n%s", code, st)
	}
}

func yamlDocs(t *testing.T, stream []byte) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(stream))
	var out []map[string]any
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%v:\n%s", err, stream)
		}
		out = append(out, m)
	}
}
