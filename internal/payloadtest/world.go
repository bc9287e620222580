// Package payloadtest builds OpenShift release payloads, laid out as real
// ones are, into an in-process registry: the test world of dtkbot's tests,
// benchmarks and offline demo.
//
// A release image is base layers plus a last layer whose gzip tar starts with
// release-manifests/, image-references and release-metadata, then hundreds of
// manifests. Its image-references names ~40 components; the OS and Driver
// Toolkit images exist in the component repository with large content layers
// (incompressible noise, so downloading one shows in byte counts) and the
// labels, metadata layers and driver-toolkit-release.json of their era.
// Payloads with several arches are manifest lists, and so are their components.
package payloadtest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/internal/registrytest"
)

// World is a registry and the repositories payloads are pushed to.
type World struct {
	Reg           *registrytest.Registry
	Host          string
	ReleaseRepo   string // openshift-release-dev/ocp-release
	ComponentRepo string // openshift-release-dev/ocp-v4.0-art-dev
	// ContentSize is the size of each OS and DTK content layer, and half of
	// each release base layer. Real ones are hundreds of MB; tests need only
	// enough to make a download visible.
	ContentSize int
}

// New returns a world pushing to reg, reachable at host.
func New(reg *registrytest.Registry, host string) *World {
	return &World{
		Reg: reg, Host: host,
		ReleaseRepo:   "openshift-release-dev/ocp-release",
		ComponentRepo: "openshift-release-dev/ocp-v4.0-art-dev",
		ContentSize:   256 << 10,
	}
}

// Stream describes one OS stream of a release.
type Stream struct {
	Kernel    string // VERSION-RELEASE, e.g. 5.14.0-427.22.1.el9_4
	RTKernel  string // VERSION-RELEASE of kernel-rt, x86_64 only; "" for none
	RHCOS     string // RHCOS build id; derived from the kernel when empty
	DTKKernel string // the DTK's kernel when it differs (a broken payload)
}

// ReleaseSpec describes a release to build.
type ReleaseSpec struct {
	Version  string   // 4.16.15
	Arches   []string // amd64 by default; several make a manifest list
	Stream   Stream   // the main stream (RHEL 8 or 9)
	Stream10 *Stream  // the RHEL 10 stream of 4.21+ dual-stream payloads
	// Tweak, when set, may replace the release image's last-layer entries
	// (for bad-input tests).
	Tweak func(entries []TarEntry) []TarEntry
}

// Payload is a built release and what an inspection must find in it.
type Payload struct {
	Version     string
	Pullspec    string // by digest
	TagPullspec string // by tag <version>-<arch> or <version>-multi
	Digest      digest.Digest
	Image       Pushed
	Minor       int
	// Streams expected per arch, in report order.
	Expect map[string][]Expected
	// Heavy are the content layers that a cheap inspection must never read.
	Heavy []digest.Digest
	// ManualBytes and ManualRequests per arch: pulling the whole release
	// image and the DTK image(s) (manifest, config and every layer), as the
	// procedure dtkbot replaces does.
	ManualBytes    map[string]int64
	ManualRequests map[string]int
	OS, DTK        map[string]Pushed // by OS tag / DTK tag
}

// Expected is one stream as an inspection should report it.
type Expected struct {
	Stream, OSTag, DTKTag string
	Kernel, RTKernel      string // VERSION-RELEASE
	KernelFull            string
	RHEL                  string
	RHCOS                 string
	Source                string // a releaseinfo.Source* value
	Consistent            bool
}

// Minor returns the minor version of "4.16.15".
func Minor(version string) int {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(parts[1])
	return n
}

func kernelArch(arch string) string {
	switch arch {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return arch
}

func rhelOf(kernelVR string) string {
	i := strings.LastIndex(kernelVR, ".el")
	if i < 0 {
		return ""
	}
	return strings.Replace(kernelVR[i+3:], "_", ".", 1)
}

// rhcosID derives a plausible RHCOS build id: 416.94.202409040013-0 up to
// 4.18, 9.6.20250530-0 after.
func rhcosID(minor int, rhel string, serial int) string {
	if minor >= 19 {
		return fmt.Sprintf("%s.%08d-0", rhel, 20250530+serial)
	}
	return fmt.Sprintf("4%d.%s.2024%08d-0", minor, strings.ReplaceAll(rhel, ".", ""), serial)
}

func rtFull(rtVR, arch string) string {
	full := rtVR + "." + kernelArch(arch)
	if !strings.Contains(rtVR, ".rt") {
		full += "+rt"
	}
	return full
}

// componentNames are the other ~40 images of a payload: present in
// image-references, never read by dtkbot.
var componentNames = []string{
	"cluster-version-operator", "cli", "installer", "etcd", "hyperkube", "pod", "haproxy-router",
	"cluster-network-operator", "ovn-kubernetes", "multus-cni", "coredns", "cluster-dns-operator",
	"cluster-ingress-operator", "console", "console-operator", "oauth-server", "oauth-proxy",
	"cluster-monitoring-operator", "prometheus", "alertmanager", "thanos", "kube-state-metrics",
	"node-exporter", "cluster-image-registry-operator", "docker-registry", "machine-config-operator",
	"machine-api-operator", "cluster-autoscaler", "cluster-kube-apiserver-operator",
	"cluster-kube-controller-manager-operator", "cluster-kube-scheduler-operator",
	"cluster-authentication-operator", "cluster-storage-operator", "csi-snapshot-controller",
	"must-gather", "tools", "tests", "baremetal-installer", "ironic", "keepalived-ipfailover",
}

// Release builds a release and pushes it, tagged <version>-<arch> (or -multi).
func (w *World) Release(spec ReleaseSpec) *Payload {
	arches := spec.Arches
	if len(arches) == 0 {
		arches = []string{"amd64"}
	}
	minor := Minor(spec.Version)
	oci := minor >= 16
	p := &Payload{
		Version: spec.Version, Minor: minor,
		Expect:      map[string][]Expected{},
		ManualBytes: map[string]int64{}, ManualRequests: map[string]int{},
		OS: map[string]Pushed{}, DTK: map[string]Pushed{},
	}

	type streamPlan struct {
		s              Stream
		osTags         []string // the first one is the stream's OS image for inspection
		dtkTag, stream string
	}
	var plans []streamPlan
	main := streamPlan{s: spec.Stream, dtkTag: "driver-toolkit", stream: "rhel-" + strings.SplitN(rhelOf(spec.Stream.Kernel), ".", 2)[0]}
	switch {
	case minor <= 7:
		main.osTags, main.dtkTag = []string{"machine-os-content"}, ""
	case minor <= 11:
		main.osTags = []string{"machine-os-content"}
	case minor == 12:
		main.osTags = []string{"rhel-coreos-8", "machine-os-content"}
	case minor <= 14:
		main.osTags = []string{"rhel-coreos", "machine-os-content"}
	default:
		main.osTags = []string{"rhel-coreos"}
	}
	plans = append(plans, main)
	if spec.Stream10 != nil {
		plans = append(plans, streamPlan{s: *spec.Stream10, osTags: []string{"rhel-coreos-10"}, dtkTag: "driver-toolkit-10", stream: "rhel-10"})
	}

	// Components: OS images (per OS tag) and DTKs, per arch, then lists.
	refs := map[string]string{} // tag -> pullspec
	annotations := map[string]map[string]string{}
	for si, plan := range plans {
		rhel := rhelOf(plan.s.Kernel)
		id := plan.s.RHCOS
		if id == "" {
			id = rhcosID(minor, rhel, minor*1000+si)
		}
		for _, osTag := range plan.osTags {
			var inst []Pushed
			for _, arch := range arches {
				inst = append(inst, w.pushOS(osTag, arch, minor, plan.s, oci))
			}
			img := w.maybeList(inst, oci)
			p.OS[osTag] = img
			refs[osTag] = img.Pullspec
			annotations[osTag] = map[string]string{"io.openshift.build.versions": "machine-os=" + id}
			if minor >= 19 {
				annotations[osTag]["io.openshift.os.streamclass"] = plan.stream
			}
			for _, in := range append(inst, img) {
				if len(in.Layers) > 0 {
					p.Heavy = append(p.Heavy, in.Layers[0])
				}
			}
		}
		if plan.dtkTag != "" {
			var inst []Pushed
			for _, arch := range arches {
				inst = append(inst, w.pushDTK(plan.dtkTag, arch, minor, plan.s, plan.stream, oci))
			}
			img := w.maybeList(inst, oci)
			p.DTK[plan.dtkTag] = img
			refs[plan.dtkTag] = img.Pullspec
			for _, in := range inst {
				p.Heavy = append(p.Heavy, in.Layers[0], in.Layers[1])
			}
		}
		for _, arch := range arches {
			// The kernel is the node's, read from the OS image as its era
			// writes it; a DTK of another kernel makes the stream inconsistent.
			e := Expected{
				Stream: plan.stream, OSTag: plan.osTags[0], DTKTag: plan.dtkTag, RHCOS: id, RHEL: rhel,
				Kernel: plan.s.Kernel, KernelFull: plan.s.Kernel + "." + kernelArch(arch),
				Source: osKernelSource(plan.osTags[0], minor), Consistent: plan.s.DTKKernel == "",
			}
			if plan.s.RTKernel != "" && arch == "amd64" {
				e.RTKernel = plan.s.RTKernel
			}
			if minor <= 7 {
				e.Kernel, e.KernelFull, e.RTKernel, e.Source, e.Consistent = "", "", "", "unknown", false
			}
			p.Expect[arch] = append(p.Expect[arch], e)
		}
	}
	// Filler components, pinned by digests nobody serves.
	for _, name := range componentNames {
		refs[name] = fmt.Sprintf("%s/%s@%s", w.Host, w.ComponentRepo, digest.FromString(spec.Version+"/"+name))
	}

	// Release images per arch.
	var inst []Pushed
	for _, arch := range arches {
		suffix := kernelArch(arch)
		if len(arches) > 1 {
			suffix = "multi"
		}
		entries := releaseEntries(spec, suffix, refs, annotations)
		if spec.Tweak != nil {
			entries = spec.Tweak(entries)
		}
		last := TarGz(entries...)
		img := w.PushImage(w.ReleaseRepo, "", Image{
			Arch: arch, OCI: oci,
			Labels: map[string]string{"io.openshift.release": spec.Version},
			Layers: [][]byte{
				NoiseLayer("rhel-base-"+arch, w.ContentSize),
				NoiseLayer("cvo-"+spec.Version+"-"+arch, w.ContentSize/2),
				last,
			},
		})
		inst = append(inst, img)
		p.Heavy = append(p.Heavy, img.Layers[0], img.Layers[1])
	}
	tag := spec.Version + "-" + kernelArch(arches[0])
	if len(arches) > 1 {
		tag = spec.Version + "-multi"
	}
	p.Image = w.maybeListTagged(inst, oci, tag)
	if len(arches) == 1 {
		w.Reg.PutManifest(w.ReleaseRepo, tag, p.Image.MediaType, mustManifest(w, w.ReleaseRepo, p.Image.Digest))
	}
	p.Digest, p.Pullspec = p.Image.Digest, p.Image.Pullspec
	p.TagPullspec = fmt.Sprintf("%s/%s:%s", w.Host, w.ReleaseRepo, tag)
	for _, arch := range arches {
		rel := p.Image.ForArch(arch)
		bytes, reqs := rel.Size, 2+len(rel.Layers)
		for _, d := range p.DTK {
			di := d.ForArch(arch)
			bytes += di.Size
			reqs += 2 + len(di.Layers)
		}
		p.ManualBytes[arch], p.ManualRequests[arch] = bytes, reqs
	}
	return p
}

func mustManifest(w *World, repo string, d digest.Digest) []byte {
	b, _, ok := w.Reg.Manifest(repo, d.String())
	if !ok {
		panic("manifest vanished: " + d.String())
	}
	return b
}

func (w *World) maybeList(inst []Pushed, oci bool) Pushed {
	return w.maybeListTagged(inst, oci, "")
}

func (w *World) maybeListTagged(inst []Pushed, oci bool, tag string) Pushed {
	if len(inst) == 1 {
		return inst[0]
	}
	return w.PushList(inst[0].Repo, tag, oci, inst...)
}

// releaseEntries is the last layer of a release image, in oc's order.
func releaseEntries(spec ReleaseSpec, suffix string, refs map[string]string, annotations map[string]map[string]string) []TarEntry {
	var tags []map[string]any
	names := make([]string, 0, len(refs))
	for _, n := range append([]string{"machine-os-content", "rhel-coreos-8", "rhel-coreos", "rhel-coreos-10", "driver-toolkit", "driver-toolkit-10"}, componentNames...) {
		if _, ok := refs[n]; ok {
			names = append(names, n)
		}
	}
	for _, n := range names {
		t := map[string]any{
			"name":            n,
			"from":            map[string]string{"kind": "DockerImage", "name": refs[n]},
			"importPolicy":    map[string]any{},
			"referencePolicy": map[string]string{"type": "Source"},
		}
		if a, ok := annotations[n]; ok {
			t["annotations"] = a
		} else {
			t["annotations"] = map[string]string{"io.openshift.build.commit.id": fmt.Sprintf("%x", digest.FromString(n).Encoded()[:40])}
		}
		tags = append(tags, t)
	}
	is := map[string]any{
		"kind": "ImageStream", "apiVersion": "image.openshift.io/v1",
		"metadata": map[string]any{
			"name":              spec.Version,
			"creationTimestamp": "2024-09-04T00:13:00Z",
			"annotations":       map[string]string{"release.openshift.io/from-image-stream": "ocp/" + spec.Version + "-art-latest"},
		},
		"spec": map[string]any{"lookupPolicy": map[string]bool{"local": false}, "tags": tags},
	}
	refsJSON, _ := json.Marshal(is)
	meta, _ := json.Marshal(map[string]any{
		"kind": "cincinnati-metadata-v0", "version": spec.Version,
		"previous": []string{}, "metadata": map[string]string{"url": "https://access.redhat.com/errata/RHBA-2024:0000"},
	})
	entries := []TarEntry{
		{Name: "release-manifests/", Type: '5'},
		File("release-manifests/image-references", refsJSON),
		File("release-manifests/release-metadata", meta),
	}
	for i := 0; i < 300; i++ {
		body := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: manifest-%03d\n  namespace: openshift-config\ndata:\n  release: %q\n  arch: %q\n", i, spec.Version, suffix)
		entries = append(entries, File(fmt.Sprintf("release-manifests/0000_%02d_component_%03d.yaml", i%90, i), []byte(body)))
	}
	return entries
}

// pushOS pushes one arch of an OS image with the labels of its era. Its
// content depends only on the kernel, so z-streams sharing a kernel share the
// image, as releases sharing an RHCOS build do.
func (w *World) pushOS(osTag, arch string, minor int, s Stream, oci bool) Pushed {
	full := s.Kernel + "." + kernelArch(arch)
	labels := map[string]string{"io.openshift.build.source-location": "https://github.com/openshift/os"}
	layers := [][]byte{NoiseLayer("os-"+osTag+"-"+s.Kernel+"-"+arch, w.ContentSize)}
	switch {
	case minor <= 7:
	case osTag == "machine-os-content":
		labels["com.coreos.rpm.kernel"] = full
		if s.RTKernel != "" && arch == "amd64" {
			labels["com.coreos.rpm.kernel-rt-core"] = rtFull(s.RTKernel, arch)
		}
	case minor <= 18:
		labels["ostree.linux"] = full
	default:
		labels["io.openshift.metalayer"] = "true"
		if minor >= 22 {
			labels["ostree.linux"] = "true"
		}
		layers = append(layers, metaLayer(s, arch))
	}
	return w.PushImage(w.ComponentRepo, "", Image{Arch: arch, Labels: labels, Layers: layers, OCI: oci})
}

// osKernelSource is where an inspection finds the kernel of an OS image of
// this era (releaseinfo's Source* values).
func osKernelSource(osTag string, minor int) string {
	switch {
	case osTag == "machine-os-content":
		return "os-label:com.coreos.rpm.kernel"
	case minor <= 18:
		return "os-label:ostree.linux"
	}
	return "os-metalayer:usr/share/openshift/base/meta.json"
}

// metaLayer is the 4.19+ RHCOS metadata layer.
func metaLayer(s Stream, arch string) []byte {
	pkg := func(name, vr string) []any {
		v, r, _ := strings.Cut(vr, "-")
		return []any{name, "0", v, r, kernelArch(arch)}
	}
	list := []any{pkg("bash", "5.1.8-9.el9"), pkg("kernel", s.Kernel), pkg("kernel-core", s.Kernel), pkg("kernel-modules", s.Kernel)}
	if s.RTKernel != "" && arch == "amd64" {
		list = append(list, pkg("kernel-rt-core", s.RTKernel))
	}
	list = append(list, pkg("kmod", "28-9.el9"), pkg("openssl", "3.0.7-27.el9"))
	meta, _ := json.Marshal(map[string]any{"rpmdb.pkglist": list, "ostree.linux": s.Kernel + "." + kernelArch(arch)})
	return TarGz(File("usr/share/openshift/base/meta.json", meta))
}

// pushDTK pushes one arch of a Driver Toolkit image: two content layers, the
// layer of its last RUN with driver-toolkit-release.json, and from 4.16 a
// small trailing layer (newer builds add one). Like the OS image, it is
// shared by releases with the same kernel.
func (w *World) pushDTK(dtkTag, arch string, minor int, s Stream, stream string, oci bool) Pushed {
	kernel := s.Kernel
	if s.DTKKernel != "" {
		kernel = s.DTKKernel
	}
	rt := rtNotInstalled
	if s.RTKernel != "" && arch == "amd64" {
		rt = rtFull(s.RTKernel, arch)
	}
	release, _ := json.Marshal(map[string]string{
		"KERNEL_VERSION":    kernel + "." + kernelArch(arch),
		"RT_KERNEL_VERSION": rt,
		"RHEL_VERSION":      rhelOf(s.Kernel),
	})
	layers := [][]byte{
		NoiseLayer("ubi-"+stream+"-"+arch, w.ContentSize),
		NoiseLayer("dtk-kernel-"+kernel+"-"+arch, w.ContentSize),
		TarGz(TarEntry{Name: "etc/", Type: '5'}, File("etc/driver-toolkit-release.json", release)),
	}
	if minor >= 16 {
		layers = append(layers, TarGz(File("usr/share/buildinfo/content-sets.json", []byte(`{"content_sets":["rhel-9-for-x86_64-baseos-rpms"]}`))))
	}
	labels := map[string]string{"kernel-version": "", "kernel-rt-version": ""}
	if minor >= 19 {
		labels["io.openshift.os.streamclass"] = stream
	}
	return w.PushImage(w.ComponentRepo, "", Image{Arch: arch, Labels: labels, Layers: layers, OCI: oci})
}

const rtNotInstalled = "package kernel-rt-core is not installed"
