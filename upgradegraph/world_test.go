package upgradegraph

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/version"
	"github.com/dtkbot/dtkbot/watcher"
)

// Kernels of the test world.
const (
	kOld  = "5.14.0-427.37.1.el9_4" // the kernel of the release clusters update from
	kNew  = "5.14.0-427.50.1.el9_4" // the kernel of the target
	kTen  = "6.12.0-55.9.1.el10_0"  // the target's RHEL 10 stream
	kNext = "5.14.0-427.55.1.el9_4" // another target's
	page  = "https://dtkbot.example.com/"
	kmod  = "simple-kmod"
	nic   = "acme-nic"
	t0    = "2026-08-01T10:00:00Z"
	issue = "https://github.com/acme/driver-ci/issues/7"
)

var at0, _ = time.Parse(time.RFC3339, t0)

// world is an upstream graph and a state snapshot, built up by a test.
type world struct {
	t        *testing.T
	doc      map[string]any
	nodes    []map[string]any
	snap     *state.Snapshot
	opts     Options
	unpinned map[string]bool
}

func newWorld(t *testing.T) *world {
	return &world{t: t, doc: map[string]any{"version": 1, "edges": [][2]int{}, "conditionalEdges": []any{}},
		snap:     &state.Snapshot{Tags: map[string]ledger.Promotion{}, Notices: map[string]ledger.Notice{}},
		opts:     Options{Channels: []string{"stable-4.16"}, Arches: []string{"amd64", "multi"}, Consumers: []string{kmod}, BuildKinds: []string{"rc"}},
		unpinned: map[string]bool{}}
}

func payloadOf(v string) string {
	return "quay.io/openshift-release-dev/ocp-release@" + digestOfVersion(v)
}

func digestOfVersion(v string) string {
	sum := sha256.Sum256([]byte("payload " + v))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// node adds a release to the upstream graph.
func (w *world) node(v string) int {
	p := payloadOf(v)
	if w.unpinned[v] {
		p = "quay.io/openshift-release-dev/ocp-release:" + v + "-x86_64"
	}
	w.nodes = append(w.nodes, map[string]any{"version": v, "payload": p, "metadata": map[string]string{
		"io.openshift.upgrades.graph.release.channels": "stable-4.16", "url": "https://access.redhat.com/errata/RHBA-2026:" + v}})
	return len(w.nodes) - 1
}

func (w *world) index(v string) int {
	for i, n := range w.nodes {
		if n["version"] == v {
			return i
		}
	}
	w.t.Fatalf("no node %s", v)
	return -1
}

// edge adds an update.
func (w *world) edge(from, to string) {
	w.doc["edges"] = append(w.doc["edges"].([][2]int), [2]int{w.index(from), w.index(to)})
}

// conditional adds an upstream conditional edge entry.
func (w *world) conditional(edges [][2]string, risks ...map[string]any) {
	var es []map[string]string
	for _, e := range edges {
		es = append(es, map[string]string{"from": e[0], "to": e[1]})
	}
	w.doc["conditionalEdges"] = append(w.doc["conditionalEdges"].([]any), map[string]any{"edges": es, "risks": risks})
}

func archSuffix(arch string) string {
	if arch == "arm64" {
		return ".aarch64"
	}
	return ".x86_64"
}

func ships(stream, kernel, arch string) ledger.ReleaseShips {
	return ledger.ReleaseShips{Stream: stream, Kernel: kernel, KernelFull: kernel + archSuffix(arch)}
}

// release records a payload read for arch, with its streams.
func (w *world) release(v, arch string, streams ...ledger.ReleaseShips) {
	w.snap.Releases = append(w.snap.Releases, ledger.Release{Version: v, Digest: digestOfVersion(v), Arch: arch, Kind: version.Kind(v),
		Pullspec: payloadOf(v), Streams: streams})
}

// image records an image of a kernel (consumer "" for the DTK).
func (w *world) image(consumer, stream, arch, kernel, st string, releases []string, mod ...func(*ledger.Image)) {
	m := ledger.Image{Consumer: consumer, Stream: stream, Arch: arch, Kernel: kernel, KernelFull: kernel + archSuffix(arch), State: st, Releases: releases}
	for _, f := range mod {
		f(&m)
	}
	if m.IsDTK() {
		w.snap.Kernels = append(w.snap.Kernels, m)
	} else {
		w.snap.Consumers = append(w.snap.Consumers, m)
	}
}

// ready records a kernel whose DTK and consumers' images are promoted.
func (w *world) ready(stream, arch, kernel string, releases ...string) {
	w.image("", stream, arch, kernel, ledger.StatePromoted, releases)
	for _, c := range w.opts.Consumers {
		w.image(c, stream, arch, kernel, ledger.StatePromoted, releases)
	}
}

func (w *world) upstream() *watcher.Graph {
	w.doc["nodes"] = w.nodes
	body, err := json.Marshal(w.doc)
	if err != nil {
		w.t.Fatal(err)
	}
	g, err := watcher.ReadGraph(body)
	if err != nil {
		w.t.Fatal(err)
	}
	return g
}

func (w *world) compute(arch string) *Served {
	w.t.Helper()
	s, err := Compute(Input{Options: w.opts, Channel: "stable-4.16", Arch: arch, Upstream: w.upstream(), Snapshot: w.snap, PageURL: page})
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

// body is the served document as a cluster reads it.
func body(t *testing.T, s *Served) []byte {
	t.Helper()
	b, err := json.Marshal(s.Graph)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
