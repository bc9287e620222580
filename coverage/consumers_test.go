package coverage

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/state"
)

// withConsumers adds a consumer image to the world's kernels: promoted for
// the promoted kernel, building for the building one.
func withConsumers() *state.Snapshot {
	snap := world()
	const nic = "quay.io/acme/acme-nic"
	for _, k := range snap.Kernels {
		c := ledger.Image{Consumer: "acme-nic", Stream: k.Stream, Arch: k.Arch, Kernel: k.Kernel, KernelFull: k.KernelFull,
			Image: nic + ":" + k.KernelFull, DTKImage: k.PinnedImage(), State: ledger.StateBuildRequested, BuildRequestedAt: now}
		switch k.State {
		case ledger.StatePromoted:
			c.State, c.ImageDigest, c.Published = ledger.StatePromoted, "sha256:"+strings.Repeat("c", 64), true
			snap.Tags[c.Image] = ledger.Promotion{Ref: c.Image, Digest: c.ImageDigest, Kind: ledger.TagKernel, KernelKey: k.Key(), Consumer: "acme-nic"}
		case ledger.StateFailed:
			continue // never built: the DTK is not promoted
		}
		snap.Consumers = append(snap.Consumers, c)
	}
	return snap
}

func TestIndexShowsConsumersAndKMM(t *testing.T) {
	ix := Build(withConsumers(), now, Options{})
	byKernel := map[string]Kernel{}
	for _, k := range ix.Kernels {
		byKernel[k.Kernel] = k
	}
	promoted := byKernel["5.14.0-427.37.1.el9_4"]
	if len(promoted.Consumers) != 1 || promoted.Consumers[0].State != StatePromoted ||
		promoted.Consumers[0].Image != "quay.io/acme/acme-nic@sha256:"+strings.Repeat("c", 64) || len(promoted.Consumers[0].Tags) != 1 {
		t.Fatalf("consumers of the promoted kernel: %+v", promoted.Consumers)
	}
	for _, tag := range promoted.Tags {
		if strings.Contains(tag, "acme-nic") {
			t.Fatalf("a consumer's tag among the DTK's: %v", promoted.Tags)
		}
	}
	if len(promoted.KMM.Preflights) != 2 || promoted.KMM.Preflights[0].Manifest.Spec.KernelVersion != promoted.KernelFull ||
		promoted.KMM.Preflights[0].Manifest.Spec.DTKImage != promoted.Image {
		t.Fatalf("preflights: %+v", promoted.KMM.Preflights)
	}
	if len(promoted.KMM.Mappings) != 1 || promoted.KMM.Mappings[0].Mapping.ContainerImage != "quay.io/acme/acme-nic:"+promoted.KernelFull {
		t.Fatalf("mappings: %+v", promoted.KMM.Mappings)
	}
	building := byKernel["5.14.0-427.40.1.el9_4"]
	if len(building.KMM.Preflights)+len(building.KMM.Mappings) != 0 || building.Consumers[0].State != StateBuilding {
		t.Fatalf("a kernel not promoted: %+v %+v", building.KMM, building.Consumers)
	}
	if s := streamOfRelease(t, ix, "4.16.15"); len(s.Consumers) != 1 || s.Consumers[0].Consumer != "acme-nic" {
		t.Fatalf("stream consumers: %+v", s.Consumers)
	}

	var page bytes.Buffer
	if err := WritePage(&page, ix, PageOptions{}); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	for _, want := range []string{`<th scope="col">Consumers</th>`, `<li data-consumer="acme-nic" data-variant="default" data-state="promoted">acme-nic <span class="state state-promoted">promoted</span>`,
		`<li data-consumer="acme-nic" data-variant="default" data-state="building">`, `<span class="covered">covered</span>`} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	// Without consumers, no column.
	page.Reset()
	if err := WritePage(&page, Build(world(), now, Options{}), PageOptions{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(page.String(), "Consumers</th>") {
		t.Error("a consumers column with no consumers")
	}
}

// TestIndexShowsABIVerdicts: a kernel's ABI verdicts are in the kernels
// document (/api/v1/kernels), its streams' and on the page, terse.
func TestIndexShowsABIVerdicts(t *testing.T) {
	snap := withConsumers()
	for i, k := range snap.Kernels {
		if k.Kernel == "5.14.0-427.37.1.el9_4" {
			snap.Kernels[i].ABI = []ledger.ABIVerdict{{Consumer: "acme-nic", From: "5.14.0-427.22.1.el9_4.x86_64", Changed: []string{"mutex_lock", "kmalloc_trace"}}}
		}
	}
	ix := Build(snap, now, Options{})
	var got []ABIVerdict
	for _, k := range ix.Kernels {
		if k.Kernel == "5.14.0-427.37.1.el9_4" {
			got = k.ABI
		}
	}
	const want = "acme-nic: the modules for 5.14.0-427.22.1.el9_4.x86_64 would not load: 2 symbol versions changed (mutex_lock, kmalloc_trace)"
	if len(got) != 1 || got[0].Loads || got[0].Verdict != want {
		t.Fatalf("the kernel's verdicts: %+v", got)
	}
	if s := streamOfRelease(t, ix, "4.16.15"); len(s.ABI) != 1 || s.ABI[0].Verdict != want {
		t.Fatalf("the stream's verdicts: %+v", s.ABI)
	}
	var page bytes.Buffer
	if err := WritePage(&page, ix, PageOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page.String(), `<li data-consumer="acme-nic" data-loads="false">ABI: `+want+`</li>`) {
		t.Errorf("the page lacks the verdict")
	}
}
