package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/coverage"
	"github.com/dtkbot/dtkbot/internal/need"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/state"
)

// The kernels of variantWorld: 4.18.5 ships kernelNew (amd64 and arm64),
// 4.18.2 kernelOld (amd64).
const (
	kernelNew = "5.14.0-570.12.1.el9_6"
	kernelOld = "5.14.0-570.10.1.el9_6"
)

// variantWorld writes a config whose consumer asks for every kernel
// variant, and a state file where:
//   - 4.18.5 amd64: the DTK carries the RT kernel; the consumer's default
//     and RT images are promoted: covered;
//   - 4.18.5 arm64: the DTK carries the 64k kernel; the default image is
//     promoted, the 64k one not built yet (pending): not covered;
//   - 4.18.2 amd64: the payload ships an RT kernel its DTK (read) does not
//     carry: the RT image is missing; not covered.
func variantWorld(t *testing.T) (configPath string) {
	t.Helper()
	dir := t.TempDir()
	configPath = filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configPath, []byte(`state: dtkbot.db
graph:
  url: http://127.0.0.1:1/
  channels: [stable-4.18]
  arches: [amd64, arm64]
verify: {mode: off}
target:
  repository: quay.io/acme/driver-toolkit
consumers:
  - name: simple-kmod
    variants: [default, rt, 64k]
    build: {backend: none}
    target:
      repository: quay.io/acme/simple-kmod
`), 0o600); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	digest := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	dtk := func(arch, kernel, full, rt, d string, variants ...ledger.VariantKernel) ledger.Image {
		return ledger.Image{Stream: "rhel-9", Arch: arch, Kernel: kernel, KernelFull: full, RTKernel: rt, RHEL: "9.6",
			Releases: []string{"4.18.5"}, State: ledger.StatePromoted, Image: "quay.io/acme/driver-toolkit:" + full,
			ImageDigest: d, Published: true, FirstSeen: at, UpdatedAt: at, PromotedAt: at,
			KernelFiles: &ledger.KernelFilesCheck{Digest: d, Variants: variants, VariantsRead: true}}
	}
	image := func(k ledger.Image, variant, full, d string) ledger.Image {
		return ledger.Image{Consumer: "simple-kmod", Stream: k.Stream, Arch: k.Arch, Kernel: k.Kernel, Variant: variant, KernelFull: full,
			RTKernel: k.RTKernel, RHEL: k.RHEL, Releases: k.Releases, State: ledger.StatePromoted,
			Image: "quay.io/acme/simple-kmod:" + strings.ReplaceAll(full, "+", "_"), ImageDigest: d, Published: true,
			DTKImage: k.PinnedImage(), FirstSeen: at, UpdatedAt: at, PromotedAt: at}
	}
	amd := dtk("amd64", kernelNew, kernelNew+".x86_64", kernelNew, digest("a"), ledger.VariantKernel{Variant: ledger.VariantRT, KernelFull: kernelNew + ".x86_64+rt"})
	arm := dtk("arm64", kernelNew, kernelNew+".aarch64", "", digest("b"), ledger.VariantKernel{Variant: ledger.Variant64K, KernelFull: kernelNew + ".aarch64+64k"})
	old := dtk("amd64", kernelOld, kernelOld+".x86_64", kernelOld, digest("c"))
	old.Releases = []string{"4.18.2"}
	release := func(v, arch string, k ledger.Image) ledger.Release {
		d := digest(map[string]string{"4.18.5/amd64": "d", "4.18.5/arm64": "e", "4.18.2/amd64": "f"}[v+"/"+arch])
		return ledger.Release{Version: v, Arch: arch, Digest: d, Pullspec: "quay.io/openshift-release-dev/ocp-release@" + d,
			Channels: []string{"stable-4.18"}, FirstSeen: at,
			Streams: []ledger.ReleaseShips{{Stream: "rhel-9", Kernel: k.Kernel, KernelFull: k.KernelFull, RTKernel: k.RTKernel, RHEL: "9.6"}}}
	}
	s, err := state.Open(filepath.Join(dir, "dtkbot.db"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(func(tx *state.Tx) error {
		for _, r := range []ledger.Release{release("4.18.5", "amd64", amd), release("4.18.5", "arm64", arm), release("4.18.2", "amd64", old)} {
			if err := tx.PutRelease(r); err != nil {
				return err
			}
		}
		for _, m := range []ledger.Image{amd, arm, old,
			image(amd, ledger.VariantDefault, amd.KernelFull, digest("1")), image(amd, ledger.VariantRT, kernelNew+".x86_64+rt", digest("2")),
			image(arm, ledger.VariantDefault, arm.KernelFull, digest("3")), image(old, ledger.VariantDefault, old.KernelFull, digest("4"))} {
			if err := tx.PutImage(m); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return configPath
}

// TestReportCountsVariants: `dtkbot report` counts each consumer's images
// per kernel variant, promoted of those wanted (a missing RT image and a
// pending 64k one are wanted, not promoted), in its table, JSON and YAML,
// and says which streams are covered: only the one whose every variant's
// image is promoted.
func TestReportCountsVariants(t *testing.T) {
	config := variantWorld(t)
	code, stdout, stderr := runCLI(t, "report", "--config", config)
	if code != exitOK {
		t.Fatalf("report: %d %s", code, stderr)
	}
	var lines []string
	for _, l := range strings.Split(stdout, "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	table := strings.Join(lines, "\n")
	for _, want := range []string{
		"CONSUMER VARIANT PROMOTED WANTED OTHERS\nsimple-kmod default 3 3 -\nsimple-kmod rt 1 2 1 missing\nsimple-kmod 64k 0 1 1 pending\n",
		"1 of 3 streams covered",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q:\n%s", want, stdout)
		}
	}

	code, stdout, stderr = runCLI(t, "report", "--config", config, "-o", "json")
	if code != exitOK {
		t.Fatalf("report -o json: %d %s", code, stderr)
	}
	var doc struct {
		coverage.Index
		ConsumerVariants []coverage.VariantCount `json:"consumer_variants"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	want := []coverage.VariantCount{
		{Consumer: "simple-kmod", Variant: "default", Wanted: 3, Promoted: 3, States: map[string]int{"promoted": 3}},
		{Consumer: "simple-kmod", Variant: "rt", Wanted: 2, Promoted: 1, States: map[string]int{"promoted": 1, "missing": 1}},
		{Consumer: "simple-kmod", Variant: "64k", Wanted: 1, Promoted: 0, States: map[string]int{"pending": 1}},
	}
	if !reflect.DeepEqual(doc.ConsumerVariants, want) {
		t.Errorf("consumer_variants %+v, want %+v", doc.ConsumerVariants, want)
	}
	covered := map[string]bool{}
	for _, r := range doc.Releases {
		for _, s := range r.Streams {
			covered[r.Release+"/"+r.Arch] = s.Covered
		}
	}
	if !reflect.DeepEqual(covered, map[string]bool{"4.18.5/amd64": true, "4.18.5/arm64": false, "4.18.2/amd64": false}) {
		t.Errorf("covered: %v", covered)
	}
	// A filter narrows the counts as it narrows the releases.
	code, stdout, _ = runCLI(t, "report", "--config", config, "-o", "yaml", "--channel", "stable-4.18")
	if code != exitOK || !strings.Contains(stdout, "consumer_variants:\n- consumer: simple-kmod\n  promoted: 3\n") ||
		!strings.Contains(stdout, "  variant: 64k\n  wanted: 1\n") {
		t.Errorf("-o yaml: %d\n%s", code, stdout)
	}
}

// TestCoveragePageShowsVariants renders the coverage page of variantWorld
// (`report -o html`) in headless Chromium and reads what it shows: each
// consumer image's variant and uname -r, each stream's variant kernels with
// promoted/wanted, "covered" only where every variant's image is promoted,
// the missing RT image styled as such (not as pending); and the page still
// fits 1366 px.
func TestCoveragePageShowsVariants(t *testing.T) {
	need.Long(t, "starts a browser")
	config := variantWorld(t)
	out := filepath.Join(t.TempDir(), "coverage.html")
	if code, _, stderr := runCLI(t, "report", "--config", config, "-o", "html", "--out", out); code != exitOK {
		t.Fatalf("report -o html: %s", stderr)
	}
	b := startBrowser(t, 1366, 900)
	b.open(t, "file://"+out)
	type row struct {
		Text     string              `json:"text"`
		Covered  string              `json:"covered"`
		Images   map[string]string   `json:"images"`   // consumer/variant -> state
		Variants map[string][]string `json:"variants"` // variant -> wanted, promoted
	}
	var got struct {
		Rows    map[string]row `json:"rows"`
		Missing struct {
			Color, Pending, Decoration string
		} `json:"missing"`
		Counts string `json:"counts"`
	}
	b.eval(t, `JSON.stringify((() => {
  const rows = {};
  for (const tr of document.querySelectorAll('tr[data-stream]')) {
    const images = {}, variants = {};
    for (const li of tr.querySelectorAll('.consumers li')) images[li.dataset.consumer + '/' + li.dataset.variant] = li.dataset.state;
    for (const li of tr.querySelectorAll('.variants li')) variants[li.dataset.variant] = [li.dataset.wanted, li.dataset.promoted];
    rows[tr.dataset.release + '/' + tr.dataset.arch] = {text: tr.innerText.replace(/\s+/g, ' '), covered: tr.dataset.covered || '', images, variants};
  }
  const missing = document.querySelector('.consumers .state-missing'), pending = document.querySelector('.consumers .state-pending');
  return {rows, counts: (document.getElementById('consumer-counts') || {innerText: ''}).innerText.replace(/\s+/g, ' '),
    missing: missing ? {Color: getComputedStyle(missing).color, Decoration: getComputedStyle(missing).textDecorationLine,
      Pending: pending ? getComputedStyle(pending).color : ''} : {}};
})())`, &got)

	for key, want := range map[string]struct {
		covered  string
		images   map[string]string
		variants map[string][]string
		shows    []string
	}{
		"4.18.5/amd64": {"true", map[string]string{"simple-kmod/default": "promoted", "simple-kmod/rt": "promoted"},
			map[string][]string{"default": {"1", "1"}, "rt": {"1", "1"}},
			[]string{"covered", "rt 1/1 promoted " + kernelNew + ".x86_64+rt", "simple-kmod rt promoted " + kernelNew + ".x86_64+rt"}},
		"4.18.5/arm64": {"false", map[string]string{"simple-kmod/default": "promoted", "simple-kmod/64k": "pending"},
			map[string][]string{"default": {"1", "1"}, "64k": {"1", "0"}},
			[]string{"not covered: 1 of 2 images promoted", "64k 0/1 promoted " + kernelNew + ".aarch64+64k", "simple-kmod 64k pending " + kernelNew + ".aarch64+64k"}},
		"4.18.2/amd64": {"false", map[string]string{"simple-kmod/default": "promoted", "simple-kmod/rt": "missing"},
			map[string][]string{"default": {"1", "1"}, "rt": {"1", "0"}},
			[]string{"not covered: 1 of 2 images promoted", "rt 0/1 promoted not carried by its DTK", "simple-kmod rt missing",
				"its DTK does not carry it"}},
	} {
		r, ok := got.Rows[key]
		if !ok {
			t.Errorf("no row for %s (%v)", key, got.Rows)
			continue
		}
		if r.Covered != want.covered || !reflect.DeepEqual(r.Images, want.images) || !reflect.DeepEqual(r.Variants, want.variants) {
			t.Errorf("%s: covered %q, images %v, variants %v; want %q, %v, %v", key, r.Covered, r.Images, r.Variants, want.covered, want.images, want.variants)
		}
		for _, w := range want.shows {
			if !strings.Contains(r.Text, w) {
				t.Errorf("%s shows %q, not %q", key, r.Text, w)
			}
		}
		if want.covered == "false" && strings.Contains(strings.ReplaceAll(r.Text, "not covered", ""), "covered") {
			t.Errorf("%s says covered: %q", key, r.Text)
		}
	}
	if m := got.Missing; m.Color == "" || m.Color == m.Pending || m.Decoration != "underline" {
		t.Errorf("the missing state is not styled apart from pending: %+v", m)
	}
	if !strings.Contains(got.Counts, "missing 1") || !strings.Contains(got.Counts, "pending 1") || !strings.Contains(got.Counts, "promoted 4") {
		t.Errorf("the header's consumer image counts: %q", got.Counts)
	}
	checkLayout(t, "file://"+out, 1366)
}
