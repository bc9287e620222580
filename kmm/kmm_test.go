package kmm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"

	"github.com/dtkbot/dtkbot/ledger"
)

// crdSchema is the openAPIV3Schema of one version of a CRD in testdata
// (copied from KMM, see testdata/SOURCES.md).
func crdSchema(t *testing.T, file, version string) *spec.Schema {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string `yaml:"name"`
				Schema struct {
					OpenAPIV3Schema map[string]any `yaml:"openAPIV3Schema"`
				} `yaml:"schema"`
			} `yaml:"versions"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	for _, v := range crd.Spec.Versions {
		if v.Name != version {
			continue
		}
		js, err := json.Marshal(v.Schema.OpenAPIV3Schema)
		if err != nil {
			t.Fatal(err)
		}
		s := new(spec.Schema)
		if err := json.Unmarshal(js, s); err != nil {
			t.Fatalf("%s %s: %v", file, version, err)
		}
		return s
	}
	t.Fatalf("%s has no version %s", file, version)
	return nil
}

// validateObject checks one object as the API server would: the CRD's
// schema, no field the schema does not know (a structural schema prunes
// them silently, so a typo would be lost on apply), and a metadata.name
// that is a DNS-1123 subdomain.
func validateObject(s *spec.Schema, obj map[string]any) error {
	if res := validate.NewSchemaValidator(s, nil, "", strfmt.Default).Validate(obj); !res.IsValid() {
		return errors.Join(res.Errors...)
	}
	if err := unknownFields(s, obj, ""); err != nil {
		return err
	}
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	if !dns1123.MatchString(name) || len(name) > 253 {
		return fmt.Errorf("metadata.name %q is not a DNS-1123 subdomain", name)
	}
	return nil
}

var dns1123 = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func unknownFields(s *spec.Schema, v any, path string) error {
	switch v := v.(type) {
	case map[string]any:
		if len(s.Properties) == 0 {
			return nil // metadata, or a map (additionalProperties)
		}
		for k, child := range v {
			ps, ok := s.Properties[k]
			if !ok {
				return fmt.Errorf("%s.%s: a field the CRD does not have", path, k)
			}
			if err := unknownFields(&ps, child, path+"."+k); err != nil {
				return err
			}
		}
	case []any:
		if s.Items == nil || s.Items.Schema == nil {
			return nil
		}
		for i, child := range v {
			if err := unknownFields(s.Items.Schema, child, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// documents decodes a YAML stream into JSON-shaped objects.
func documents(t *testing.T, stream []byte) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(stream))
	var out []map[string]any
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decoding %s: %v", stream, err)
		}
		out = append(out, jsonShaped(t, doc))
	}
}

func jsonShaped(t *testing.T, v any) map[string]any {
	t.Helper()
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func promotedKernel() (ledger.Image, []ledger.Image) {
	k := ledger.Image{Stream: "rhel9", Arch: "amd64", Kernel: "5.14.0-570.19.1.el9_6", KernelFull: "5.14.0-570.19.1.el9_6.x86_64",
		Releases: []string{"4.19.0", "4.19.1", "4.20.0-ec.2"}, State: ledger.StatePromoted, Image: "quay.io/acme/dtk:5.14.0-570.19.1.el9_6",
		ImageDigest: "sha256:" + strings.Repeat("ab", 32), Published: true}
	builds := []ledger.Image{
		{Consumer: "acme-nic", Stream: k.Stream, Arch: k.Arch, Kernel: k.Kernel, KernelFull: k.KernelFull,
			State: ledger.StatePromoted, Image: "quay.io/acme/acme-nic-kmod:5.14.0-570.19.1.el9_6.x86_64", ImageDigest: "sha256:" + strings.Repeat("cd", 32)},
		{Consumer: "acme-fpga", Stream: k.Stream, Arch: k.Arch, Kernel: k.Kernel, KernelFull: k.KernelFull,
			State: ledger.StateBuildRequested, Image: "quay.io/acme/acme-fpga:5.14.0-570.19.1.el9_6.x86_64"},
	}
	return k, builds
}

func TestPreflightsValidateAgainstTheCRD(t *testing.T) {
	schema := crdSchema(t, "kmm.sigs.x-k8s.io_preflightvalidationsocp.yaml", "v1beta2")
	k, builds := promotedKernel()
	kk := ForKernel(k, builds, func(r string) bool { return r == "4.20.0-ec.2" })
	if len(kk.Preflights) != 2 {
		t.Fatalf("preflights: %d, want one per release not withdrawn (2)", len(kk.Preflights))
	}
	stream, err := kk.PreflightsYAML()
	if err != nil {
		t.Fatal(err)
	}
	docs := documents(t, stream)
	if len(docs) != 2 {
		t.Fatalf("%d documents in\n%s", len(docs), stream)
	}
	for i, doc := range docs {
		if err := validateObject(schema, doc); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, stream)
		}
		sp := doc["spec"].(map[string]any)
		if sp["kernelVersion"] != k.KernelFull || sp["dtkImage"] != "quay.io/acme/dtk@"+k.ImageDigest || sp["pushBuiltImage"] != false {
			t.Fatalf("document %d spec: %v", i, sp)
		}
		if doc["apiVersion"] != "kmm.sigs.x-k8s.io/v1beta2" || doc["kind"] != "PreflightValidationOCP" {
			t.Fatalf("document %d: %v %v", i, doc["apiVersion"], doc["kind"])
		}
	}
	if name := docs[0]["metadata"].(map[string]any)["name"]; name != "preflight-4.19.0-rhel9-amd64" {
		t.Fatalf("name %v", name)
	}
}

// The schema check is only worth something if it can fail.
func TestValidationCatchesBrokenManifests(t *testing.T) {
	pre := crdSchema(t, "kmm.sigs.x-k8s.io_preflightvalidationsocp.yaml", "v1beta2")
	mod := crdSchema(t, "kmm.sigs.x-k8s.io_modules.yaml", "v1beta1")
	good := jsonShaped(t, Preflight("4.19.0", "rhel9", "amd64", "", "5.14.0-570.19.1.el9_6.x86_64", "quay.io/x/dtk@sha256:00"))
	if err := validateObject(pre, good); err != nil {
		t.Fatal(err)
	}
	noKernel := jsonShaped(t, Preflight("4.19.0", "rhel9", "amd64", "", "", ""))
	delete(noKernel["spec"].(map[string]any), "kernelVersion")
	typo := jsonShaped(t, good)
	typo["spec"].(map[string]any)["dtkimage"] = "x"
	wrongType := jsonShaped(t, good)
	wrongType["spec"].(map[string]any)["pushBuiltImage"] = "no"
	mapping := []KernelMapping{{Literal: "5.14.0", ContainerImage: "quay.io/acme/acme:5.14.0"}}
	noSelector := jsonShaped(t, mustModule(t, "acme", ModuleOptions{ModuleName: "acme"}, mapping))
	delete(noSelector["spec"].(map[string]any), "selector")
	noMapping := jsonShaped(t, mustModule(t, "acme", ModuleOptions{ModuleName: "acme"}, mapping))
	noMapping["spec"].(map[string]any)["moduleLoader"].(map[string]any)["container"].(map[string]any)["kernelMappings"] = []any{}
	noImage := jsonShaped(t, mustModule(t, "acme", ModuleOptions{ModuleName: "acme"}, mapping))
	delete(noImage["spec"].(map[string]any)["moduleLoader"].(map[string]any)["container"].(map[string]any)["kernelMappings"].([]any)[0].(map[string]any), "containerImage")
	badName := jsonShaped(t, good)
	badName["metadata"].(map[string]any)["name"] = "Preflight_4.19"
	for name, c := range map[string]struct {
		s   *spec.Schema
		obj map[string]any
	}{"no kernelVersion": {pre, noKernel}, "unknown field": {pre, typo}, "wrong type": {pre, wrongType},
		"Module without selector": {mod, noSelector}, "mapping without image": {mod, noImage}, "bad name": {pre, badName},
		"Module without mappings": {mod, noMapping}} {
		if err := validateObject(c.s, c.obj); err == nil {
			t.Errorf("%s: validated", name)
		}
	}
}

func TestKernelMappingsValidateInAModule(t *testing.T) {
	schema := crdSchema(t, "kmm.sigs.x-k8s.io_modules.yaml", "v1beta1")
	k, builds := promotedKernel()
	kk := ForKernel(k, builds, nil)
	if len(kk.Mappings) != 1 || kk.Mappings[0].Consumer != "acme-nic" {
		t.Fatalf("mappings %+v: want acme-nic's only (acme-fpga is not promoted)", kk.Mappings)
	}
	snippet, err := kk.MappingsYAML()
	if err != nil {
		t.Fatal(err)
	}
	// The snippet is, per consumer, items for a Module's kernelMappings:
	// pasted into one, the Module validates.
	var byConsumer map[string][]KernelMapping
	if err := yaml.Unmarshal(snippet, &byConsumer); err != nil {
		t.Fatalf("%v\n%s", err, snippet)
	}
	items := byConsumer["acme-nic"]
	if len(items) != 1 || items[0].Literal != k.KernelFull || items[0].ContainerImage != builds[0].Image {
		t.Fatalf("snippet %+v\n%s", byConsumer, snippet)
	}
	m := mustModule(t, "acme-nic", ModuleOptions{Namespace: "acme", ModuleName: "acme_nic"}, items)
	out, err := YAML(m)
	if err != nil {
		t.Fatal(err)
	}
	docs := documents(t, out)
	if err := validateObject(schema, docs[0]); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if docs[0]["spec"].(map[string]any)["selector"].(map[string]any)["node-role.kubernetes.io/worker"] != "" {
		t.Fatalf("default selector: %v", docs[0]["spec"])
	}
}

func TestModuleOfEveryPromotedKernel(t *testing.T) {
	schema := crdSchema(t, "kmm.sigs.x-k8s.io_modules.yaml", "v1beta1")
	k, builds := promotedKernel()
	k2 := k
	k2.Kernel, k2.KernelFull = "5.14.0-427.50.1.el9_4", "5.14.0-427.50.1.el9_4.x86_64"
	other := builds[0]
	other.Kernel, other.KernelFull, other.Image = k2.Kernel, k2.KernelFull, "quay.io/acme/acme-nic-kmod:"+k2.KernelFull
	builds = append(builds, other)
	var mappings []KernelMapping
	for _, kk := range []ledger.Image{k, k2} {
		for _, m := range ForKernel(kk, builds, nil).Mappings {
			mappings = append(mappings, m.Mapping)
		}
	}
	if len(mappings) != 2 || mappings[1].Literal != other.KernelFull {
		t.Fatalf("mappings %+v", mappings)
	}
	m := mustModule(t, "acme-nic", ModuleOptions{Name: "acme-nic", Namespace: "acme", ModuleName: "acme_nic",
		Selector: map[string]string{"feature.node.kubernetes.io/pci-15b3.present": "true"}}, mappings)
	out, err := YAML(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateObject(schema, documents(t, out)[0]); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestNothingBeforeTheDTKIsPromoted(t *testing.T) {
	k, builds := promotedKernel()
	for _, st := range []string{ledger.StateNew, ledger.StateBuildRequested, ledger.StateBuilt, ledger.StateVerified, ledger.StateFailed} {
		k.State = st
		if kk := ForKernel(k, builds, nil); len(kk.Preflights)+len(kk.Mappings) != 0 {
			t.Fatalf("%s: %+v", st, kk)
		}
	}
	if out, err := (Kernel{}).PreflightsYAML(); out != nil || err != nil {
		t.Fatalf("empty: %q %v", out, err)
	}
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{
		"4.19.0|rhel9|amd64":                              "preflight-4.19.0-rhel9-amd64",
		"4.22.0-0.nightly-2026-11-30-101010|rhel10|arm64": "preflight-4.22.0-0.nightly-2026-11-30-101010-rhel10-arm64",
		"4.19.0_RC|RHEL 9|":                               "preflight-4.19.0-rc-rhel-9",
	} {
		if got := Name(append([]string{"preflight"}, strings.Split(in, "|")...)...); got != want || !dns1123.MatchString(got) {
			t.Errorf("Name(%s) = %q, want %q", in, got, want)
		}
	}
	if got := Name(strings.Repeat("a", 300)); len(got) != 253 {
		t.Errorf("long name: %d characters", len(got))
	}
	if got := Name("--"); got != "dtkbot" {
		t.Errorf("empty name: %q", got)
	}
}

func mustModule(t *testing.T, consumer string, o ModuleOptions, mappings []KernelMapping) Module {
	t.Helper()
	m, err := NewModule(consumer, o, mappings)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestNoModuleTheCRDWouldRefuse: no Module without a kernel mapping
// (kernelMappings: minItems 1) or a module to load.
func TestNoModuleTheCRDWouldRefuse(t *testing.T) {
	if _, err := NewModule("acme", ModuleOptions{ModuleName: "acme"}, nil); !errors.Is(err, ErrNoKernelMapping) {
		t.Errorf("no mapping: %v", err)
	}
	if _, err := NewModule("acme", ModuleOptions{}, []KernelMapping{{Literal: "5.14.0", ContainerImage: "x"}}); !errors.Is(err, ErrNoModuleName) {
		t.Errorf("no module name: %v", err)
	}
}
