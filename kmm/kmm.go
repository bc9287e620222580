// Package kmm writes the Kernel Module Management manifests dtkbot's
// images feed: for each release and OS stream a PreflightValidationOCP
// (the upcoming node kernel and the DTK image by digest, the values KMM's
// documentation has people dig out with `oc adm release info` and
// `podman run … cat /etc/driver-toolkit-release.json`), and for each
// consumer the kernel mappings pointing a Module at its kernel-tagged kmod
// images, or a whole Module once the consumer names its module.
//
// The types hold only the fields dtkbot sets, with the CRDs' names; tests
// validate what they produce against the CRD schemas
// (kmm.sigs.x-k8s.io, Module v1beta1 and PreflightValidationOCP v1beta2).
package kmm

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/dtkbot/dtkbot/ledger"
)

// Group is KMM's API group.
const Group = "kmm.sigs.x-k8s.io"

// API versions: the storage versions of each kind.
const (
	PreflightAPIVersion = Group + "/v1beta2"
	ModuleAPIVersion    = Group + "/v1beta1"
)

// ObjectMeta is the part of Kubernetes object metadata dtkbot sets.
type ObjectMeta struct {
	Name      string            `json:"name" yaml:"name"`
	Namespace string            `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
}

// PreflightValidationOCP asks KMM, before an upgrade, whether every Module
// has an image (or can build one) for the kernel the upgrade brings.
type PreflightValidationOCP struct {
	APIVersion string        `json:"apiVersion" yaml:"apiVersion"`
	Kind       string        `json:"kind" yaml:"kind"`
	Metadata   ObjectMeta    `json:"metadata" yaml:"metadata"`
	Spec       PreflightSpec `json:"spec" yaml:"spec"`
}

// PreflightSpec is a PreflightValidationOCP's spec.
type PreflightSpec struct {
	// KernelVersion is the node kernel after the upgrade (uname -r).
	KernelVersion string `json:"kernelVersion" yaml:"kernelVersion"`
	// DTKImage is the release's DTK by digest, for in-cluster builds.
	DTKImage string `json:"dtkImage,omitempty" yaml:"dtkImage,omitempty"`
	// PushBuiltImage is false: dtkbot's consumers are built outside the
	// cluster, and a preflight should only look.
	PushBuiltImage bool `json:"pushBuiltImage" yaml:"pushBuiltImage"`
}

// KernelMapping points the nodes running one kernel at one image.
type KernelMapping struct {
	// Literal is the kernel, matched exactly (uname -r).
	Literal        string `json:"literal" yaml:"literal"`
	ContainerImage string `json:"containerImage" yaml:"containerImage"`
}

// Module is a KMM Module loading one consumer's kernel module.
type Module struct {
	APIVersion string     `json:"apiVersion" yaml:"apiVersion"`
	Kind       string     `json:"kind" yaml:"kind"`
	Metadata   ObjectMeta `json:"metadata" yaml:"metadata"`
	Spec       ModuleSpec `json:"spec" yaml:"spec"`
}

// ModuleSpec is the part of a Module's spec dtkbot sets.
type ModuleSpec struct {
	ModuleLoader ModuleLoader      `json:"moduleLoader" yaml:"moduleLoader"`
	Selector     map[string]string `json:"selector" yaml:"selector"`
}

// ModuleLoader holds the container that loads the module.
type ModuleLoader struct {
	Container ModuleContainer `json:"container" yaml:"container"`
}

// ModuleContainer is the module loader's container.
type ModuleContainer struct {
	Modprobe       Modprobe        `json:"modprobe" yaml:"modprobe"`
	KernelMappings []KernelMapping `json:"kernelMappings" yaml:"kernelMappings"`
}

// Modprobe names the module to load.
type Modprobe struct {
	ModuleName string `json:"moduleName" yaml:"moduleName"`
}

// Preflight is the PreflightValidationOCP of one release, stream and
// kernel variant ("" the default kernel, rt, 64k): the kernel its nodes of
// that variant will run and the DTK image (by digest) for it. KMM takes one
// kernel per PreflightValidationOCP, so nodes booting a variant need one of
// their own.
func Preflight(release, stream, arch, variant, kernelFull, dtkImage string) PreflightValidationOCP {
	labels := map[string]string{"app.kubernetes.io/managed-by": "dtkbot", "dtkbot.io/release": label(release), "dtkbot.io/stream": label(stream)}
	if variant != ledger.VariantDefault {
		labels["dtkbot.io/kernel-variant"] = label(variant)
	}
	return PreflightValidationOCP{
		APIVersion: PreflightAPIVersion, Kind: "PreflightValidationOCP",
		Metadata: ObjectMeta{Name: Name("preflight", release, stream, arch, variant), Labels: labels},
		Spec:     PreflightSpec{KernelVersion: kernelFull, DTKImage: dtkImage},
	}
}

// ModuleOptions say what a consumer's Module loads, where and on which nodes.
type ModuleOptions struct {
	Name       string // the Module's name (default: the consumer's)
	Namespace  string
	ModuleName string            // the kernel module modprobe loads
	Selector   map[string]string // default: every worker node
}

// ErrNoKernelMapping means a Module would have no kernel mapping, which
// KMM's CRD refuses (kernelMappings: minItems 1): a consumer has none
// before one of its images is verified and promoted.
var ErrNoKernelMapping = errors.New("no kernel mapping: a consumer has one per verified and promoted kmod image, and KMM's Module needs at least one (kernelMappings: minItems 1)")

// ErrNoModuleName means a Module would name no module for modprobe to
// load (the consumer's kmm.module_name).
var ErrNoModuleName = errors.New("no module to load: set the consumer's kmm.module_name")

// NewModule is a Module loading the consumer's module with the kernel
// mappings given (one per kernel the consumer has an image for): never one
// KMM's CRD would refuse, so none without a mapping (ErrNoKernelMapping)
// or a module name (ErrNoModuleName).
func NewModule(consumer string, o ModuleOptions, mappings []KernelMapping) (Module, error) {
	switch {
	case o.ModuleName == "":
		return Module{}, fmt.Errorf("the Module of consumer %s: %w", consumer, ErrNoModuleName)
	case len(mappings) == 0:
		return Module{}, fmt.Errorf("the Module of consumer %s: %w", consumer, ErrNoKernelMapping)
	}
	name := o.Name
	if name == "" {
		name = Name(consumer)
	}
	sel := o.Selector
	if len(sel) == 0 {
		sel = map[string]string{"node-role.kubernetes.io/worker": ""}
	}
	return Module{
		APIVersion: ModuleAPIVersion, Kind: "Module",
		Metadata: ObjectMeta{Name: name, Namespace: o.Namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": "dtkbot"}},
		Spec: ModuleSpec{Selector: sel, ModuleLoader: ModuleLoader{Container: ModuleContainer{
			Modprobe: Modprobe{ModuleName: o.ModuleName}, KernelMappings: mappings}}},
	}, nil
}

var notName = regexp.MustCompile(`[^a-z0-9.-]+`)

// Name makes a DNS-1123 subdomain (what metadata.name of a custom resource
// must be) of its parts: lower case, anything else a dash, at most 253
// characters, starting and ending with a letter or digit.
func Name(parts ...string) string {
	var kept []string
	for _, p := range parts {
		if p != "" {
			kept = append(kept, p)
		}
	}
	s := notName.ReplaceAllString(strings.ToLower(strings.Join(kept, "-")), "-")
	if len(s) > 253 {
		s = s[:253]
	}
	s = strings.Trim(s, "-.")
	if s == "" {
		return "dtkbot"
	}
	return s
}

var notLabel = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// label makes a label value: at most 63 characters of [A-Za-z0-9._-],
// starting and ending with a letter or digit.
func label(s string) string {
	s = notLabel.ReplaceAllString(s, "-")
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.Trim(s, "-._")
}

// Kernel is what KMM needs of one kernel: its releases' preflights, and
// the kernel mapping of every consumer whose image for it is promoted.
type Kernel struct {
	Preflights []ReleasePreflight `json:"preflight_validations"`
	Mappings   []ConsumerMapping  `json:"kernel_mappings"`
}

// ReleasePreflight is the preflight of one release shipping the kernel,
// for one variant's kernel.
type ReleasePreflight struct {
	Release  string                 `json:"release"`
	Variant  string                 `json:"variant"`
	Manifest PreflightValidationOCP `json:"manifest"`
}

// ConsumerMapping is one consumer's kernel mapping for a kernel variant.
type ConsumerMapping struct {
	Consumer string        `json:"consumer"`
	Variant  string        `json:"variant"`
	Mapping  KernelMapping `json:"mapping"`
}

// ForKernel is the KMM view of a kernel: nothing until its DTK is
// promoted (a preflight must never name an unverified image), then a
// preflight per release shipping it (withdrawn ones left out) for each
// variant's kernel the DTK carries that a consumer is built for, and a
// mapping for each consumer image
// that is promoted too: one literal per variant's uname -r, since KMM maps
// a node by its exact kernel.
func ForKernel(k ledger.Image, builds []ledger.Image, withdrawn func(release string) bool) Kernel {
	out := Kernel{Preflights: []ReleasePreflight{}, Mappings: []ConsumerMapping{}}
	if k.State != ledger.StatePromoted || k.ImageDigest == "" || k.KernelFull == "" {
		return out
	}
	// A variant's kernel gets preflights once a consumer is built for it
	// (an image of it exists): with none, KMM would find no Module with an
	// image for it, and the preflight fails for nothing.
	kernels := []ledger.VariantKernel{{KernelFull: k.KernelFull}}
	for _, v := range []string{ledger.VariantRT, ledger.Variant64K} {
		wanted := slices.ContainsFunc(builds, func(b ledger.Image) bool { return b.Variant == v && b.DTKKey() == k.Key() })
		if vk, ok := k.Carries(v); ok && wanted {
			kernels = append(kernels, vk)
		}
	}
	for _, r := range k.Releases {
		if withdrawn != nil && withdrawn(r) {
			continue
		}
		for _, vk := range kernels {
			out.Preflights = append(out.Preflights, ReleasePreflight{Release: r, Variant: ledger.VariantName(vk.Variant),
				Manifest: Preflight(r, k.Stream, k.Arch, vk.Variant, vk.KernelFull, k.PinnedImage())})
		}
	}
	for _, b := range builds {
		if b.State == ledger.StatePromoted && b.DTKKey() == k.Key() && b.Image != "" {
			out.Mappings = append(out.Mappings, ConsumerMapping{Consumer: b.Consumer, Variant: ledger.VariantName(b.Variant),
				Mapping: KernelMapping{Literal: b.KernelFull, ContainerImage: b.Image}})
		}
	}
	sort.Slice(out.Mappings, func(i, j int) bool {
		a, b := out.Mappings[i], out.Mappings[j]
		if a.Consumer != b.Consumer {
			return a.Consumer < b.Consumer
		}
		return a.Mapping.Literal < b.Mapping.Literal
	})
	return out
}

// YAML writes objects as one YAML stream (documents separated by ---), as
// `oc apply -f` takes it.
func YAML(objs ...any) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	for _, o := range objs {
		if err := enc.Encode(o); err != nil {
			return nil, fmt.Errorf("encoding a KMM manifest: %w", err)
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// PreflightsYAML is a kernel's preflights as one YAML stream, with a
// comment saying what they are for.
func (k Kernel) PreflightsYAML() ([]byte, error) {
	if len(k.Preflights) == 0 {
		return nil, nil
	}
	objs := make([]any, len(k.Preflights))
	for i, p := range k.Preflights {
		objs[i] = p.Manifest
	}
	body, err := YAML(objs...)
	if err != nil {
		return nil, err
	}
	var kernels []string
	for _, p := range k.Preflights {
		if v := p.Manifest.Spec.KernelVersion; !slices.Contains(kernels, v) {
			kernels = append(kernels, v)
		}
	}
	head := fmt.Sprintf("# Written by dtkbot. Before upgrading to a release below, create its PreflightValidationOCPs:\n"+
		"# KMM checks that every Module has an image for kernel %s.\n", strings.Join(kernels, ", "))
	return append([]byte(head), body...), nil
}

// MappingsYAML is a kernel's consumer mappings: for each consumer, the
// item to add to spec.moduleLoader.container.kernelMappings of its Module.
func (k Kernel) MappingsYAML() ([]byte, error) {
	if len(k.Mappings) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	b.WriteString("# Written by dtkbot: add each consumer's items to spec.moduleLoader.container.kernelMappings of its Module\n" +
		"# (one per kernel variant it is built for: each its own uname -r).\n")
	// One key per consumer, its variants' items in one list (Mappings is
	// sorted by consumer): a key written twice is not YAML tools take.
	for i := 0; i < len(k.Mappings); {
		consumer := k.Mappings[i].Consumer
		var items []KernelMapping
		for ; i < len(k.Mappings) && k.Mappings[i].Consumer == consumer; i++ {
			items = append(items, k.Mappings[i].Mapping)
		}
		list, err := yaml.Marshal(items)
		if err != nil {
			return nil, fmt.Errorf("encoding the kernel mappings of %s: %w", consumer, err)
		}
		fmt.Fprintf(&b, "%s:\n", consumer)
		for _, line := range strings.SplitAfter(strings.TrimSuffix(string(list), "\n"), "\n") {
			b.WriteString("  " + line)
		}
		b.WriteString("\n")
	}
	return b.Bytes(), nil
}
