package coverage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/watcher"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const repo = "quay.io/acme/driver-toolkit"

// kernel makes a ledger entry shipped by releases.
func kernel(vr, st string, releases ...string) ledger.Image {
	k := ledger.Image{Stream: "rhel-9", Arch: "amd64", Kernel: vr, KernelFull: vr + ".x86_64", RTKernel: vr, RHEL: "9.4",
		Releases: releases, State: st, Image: repo + ":" + vr + ".x86_64", FirstSeen: now, UpdatedAt: now}
	switch st {
	case ledger.StatePromoted, ledger.StateVerified:
		k.ImageDigest, k.Published = "sha256:"+strings.Repeat("b", 64), st == ledger.StatePromoted
	case ledger.StateBuildRequested:
		k.BuildRequestedAt, k.Attempts = now.Add(-time.Hour), 2
	case ledger.StateFailed:
		k.Reason, k.Attempts = "verification failed (3 attempts): it carries 5.14.0-427.99.1.el9_4.x86_64", 3
	}
	return k
}

func release(v, vr string, channels ...string) ledger.Release {
	return ledger.Release{Version: v, Arch: "amd64", Digest: "sha256:" + fmt.Sprintf("%064x", len(v)*7919+int(v[len(v)-1])), Channels: channels,
		Pullspec: "quay.io/openshift-release-dev/ocp-release@sha256:x", Signature: "verified by OpenPGP key 567E",
		Streams: []ledger.ReleaseShips{{Stream: "rhel-9", Kernel: vr, KernelFull: vr + ".x86_64", RHEL: "9.4", RHCOS: "416.94.202409040013-0"}}}
}

// world is a snapshot with a kernel in every state.
func world() *state.Snapshot {
	const promoted, building, failed = "5.14.0-427.37.1.el9_4", "5.14.0-427.40.1.el9_4", "5.14.0-427.44.1.el9_4"
	inconsistent := release("4.16.18", "5.14.0-427.42.1.el9_4", "stable-4.16")
	inconsistent.Streams[0].Held = "inconsistent payload: driver-toolkit kernel 5.14.0-427.43.1.el9_4.x86_64 differs"
	old := release("4.6.13", "", "stable-4.6")
	old.Streams[0] = ledger.ReleaseShips{Stream: "rhel-8", Held: "kernel unknown: this payload has no driver-toolkit image"}
	return &state.Snapshot{
		Releases: []ledger.Release{release("4.16.15", promoted, "stable-4.16", "fast-4.16"), release("4.16.16", promoted, "stable-4.16"),
			release("4.16.17", building, "fast-4.16"), inconsistent, release("4.17.2", failed, "stable-4.17"), old},
		Kernels: []ledger.Image{kernel(promoted, ledger.StatePromoted, "4.16.15", "4.16.16"), kernel(building, ledger.StateBuildRequested, "4.16.17"),
			kernel(failed, ledger.StateFailed, "4.17.2")},
		Tags: map[string]ledger.Promotion{
			repo + ":" + promoted + ".x86_64": {Ref: repo + ":" + promoted + ".x86_64", Digest: "sha256:" + strings.Repeat("b", 64), Kind: ledger.TagKernel, KernelKey: "rhel-9/amd64/" + promoted},
			repo + ":4.16.15":                 {Ref: repo + ":4.16.15", Digest: "sha256:" + strings.Repeat("b", 64), Release: "4.16.15", Kind: ledger.TagRelease, KernelKey: "rhel-9/amd64/" + promoted},
			repo + ":4.16.16":                 {Ref: repo + ":4.16.16", Digest: "sha256:" + strings.Repeat("b", 64), Release: "4.16.16", Kind: ledger.TagRelease},
		},
		Held: []ledger.HeldRelease{{Version: "4.16.19", Arch: "amd64", Digest: "sha256:" + strings.Repeat("c", 64), Kind: "content", Channels: []string{"stable-4.16"},
			Reason: `tag "driver-toolkit" appears twice with different images: ambiguous`, Since: now}},
		Notices: map[string]ledger.Notice{"rhel-9/amd64/" + promoted: {IssueURL: "https://github.com/acme/driver-ci/issues/3", PRURL: "https://github.com/acme/driver-ci/pull/4"}},
		LastPass: &ledger.PassRecord{Finished: now, Duration: 2 * time.Second, Releases: 6, SignatureMode: "warn", SignatureTrust: "OpenPGP 567E347A (Red Hat)",
			Errors: []string{"checking the staging image of x: HTTP 503"}},
	}
}

func streamOfRelease(t *testing.T, ix *Index, version string) Stream {
	t.Helper()
	for _, r := range ix.Releases {
		if r.Release == version && len(r.Streams) > 0 {
			return r.Streams[0]
		}
	}
	t.Fatalf("no release %s", version)
	return Stream{}
}

func TestIndexSaysWhatEachStreamIs(t *testing.T) {
	ix := Build(world(), now, Options{})
	var versions []string
	for _, r := range ix.Releases {
		versions = append(versions, r.Release)
	}
	if got := strings.Join(versions, " "); got != "4.17.2 4.16.19 4.16.18 4.16.17 4.16.16 4.16.15 4.6.13" {
		t.Errorf("releases in order %s, want newest first", got)
	}
	p := streamOfRelease(t, ix, "4.16.15")
	if p.State != StatePromoted || p.Image != repo+"@sha256:"+strings.Repeat("b", 64) || p.RTKernel == "" || p.RHCOSVersion != "416.94.202409040013-0" ||
		p.IssueURL == "" || p.PRURL == "" || strings.Join(p.Tags, ",") != repo+":4.16.15,"+repo+":5.14.0-427.37.1.el9_4.x86_64" {
		t.Errorf("promoted: %+v", p)
	}
	// A tag recorded before promotions named their kernel is found by digest.
	if p := streamOfRelease(t, ix, "4.16.16"); !slices.Contains(p.Tags, repo+":4.16.16") {
		t.Errorf("4.16.16 tags %v", p.Tags)
	}
	if b := streamOfRelease(t, ix, "4.16.17"); b.State != StateBuilding || b.Attempts != 2 || !b.Since.Equal(now.Add(-time.Hour)) || b.Image != "" {
		t.Errorf("building: %+v", b)
	}
	if f := streamOfRelease(t, ix, "4.17.2"); f.State != StateFailed || !strings.Contains(f.Reason, "verification failed") {
		t.Errorf("failed: %+v", f)
	}
	if h := streamOfRelease(t, ix, "4.16.18"); h.State != StateHeld || !strings.Contains(h.Reason, "inconsistent") {
		t.Errorf("held stream: %+v", h)
	}
	if u := streamOfRelease(t, ix, "4.6.13"); u.State != StateUnknown {
		t.Errorf("unknown: %+v", u)
	}
	var held Release
	for _, r := range ix.Releases {
		if r.Release == "4.16.19" {
			held = r
		}
	}
	if held.State != StateHeld || !strings.Contains(held.Reason, "content: tag") || len(held.Streams) != 0 {
		t.Errorf("held release: %+v", held)
	}
	if len(ix.Kernels) != 3 || ix.Kernels[0].Kernel != "5.14.0-427.44.1.el9_4" || ix.Kernels[0].State != StateFailed {
		t.Errorf("kernels %+v", ix.Kernels)
	}
}

// TestDocumentsKeepTheirFieldNames: the API's field names are a contract.
func TestDocumentsKeepTheirFieldNames(t *testing.T) {
	ix := Build(world(), now, Options{})
	keys := func(v any) string {
		b, _ := json.Marshal(v)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		var out []string
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	if got, want := keys(streamOfRelease(t, ix, "4.16.17")), "attempts consumers? covered image? issue_url? kernel kernel_full pr_url? reason? rhcos_version rhel_version rt_kernel since state stream tags variants?"; !fieldsMatch(got, want) {
		t.Errorf("stream fields %q, want %q", got, want)
	}
	if got, want := keys(ix.Releases[0]), "arch channels digest first_seen? kind pullspec reason? release signature sources state? streams tagged_at? withdrawn?"; !fieldsMatch(got, want) {
		t.Errorf("release fields %q, want %q", got, want)
	}
	if got, want := keys(ix.Kernels[0]), "arch attempts consumers first_seen first_source? ga_first_seen? image? issue_url? kernel kernel_full kernel_tag kmm pr_url? promoted_at? reason rejected? releases rhel_version rt_kernel since? state stream tags updated_at"; !fieldsMatch(got, want) {
		t.Errorf("kernel fields %q, want %q", got, want)
	}
}

// fieldsMatch compares a key list with a wanted one whose "name?" keys
// may be absent (omitempty).
func fieldsMatch(got, want string) bool {
	have := map[string]bool{}
	for _, k := range strings.Fields(got) {
		have[k] = true
	}
	for _, w := range strings.Fields(want) {
		name, optional := strings.CutSuffix(w, "?")
		if !have[name] && !optional {
			return false
		}
		delete(have, name)
	}
	return len(have) == 0
}

func TestFilters(t *testing.T) {
	ix := Build(world(), now, Options{})
	count := func(f Filter) int {
		n := 0
		for _, r := range ix.Releases {
			if f.Match(r) {
				n++
			}
		}
		return n
	}
	for f, want := range map[Filter]int{
		{}: 7, {Channel: "fast-4.16"}: 2, {Minor: "4.16"}: 5, {State: StateHeld}: 2, {State: StatePromoted, Channel: "stable-4.16"}: 2, {Minor: "4.99"}: 0,
	} {
		if got := count(f); got != want {
			t.Errorf("%+v: %d releases, want %d", f, got, want)
		}
	}
}

func TestPageIsSelfContainedAndAccessible(t *testing.T) {
	var buf bytes.Buffer
	if err := WritePage(&buf, Build(world(), now, Options{}), PageOptions{NextPass: now.Add(30 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	html := buf.String()
	for _, want := range []string{`<html lang="en">`, "<caption>", `<th scope="col">Kernel</th>`, `<th scope="row" rowspan="1">4.16.15<span class="arch">amd64</span></th>`,
		`data-state="building"`, "since 2026-11-25 11:00 UTC, attempt 2", `data-state="failed"`, "verification failed", `data-release="4.16.19"`,
		"ambiguous", `aria-label="GitHub issue of kernel 5.14.0-427.37.1.el9_4"`, "2026-11-25 12:30 UTC", "trusting OpenPGP 567E347A (Red Hat)",
		"HTTP 503", "<style>"} {
		if !strings.Contains(html, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// Nothing from elsewhere: no script, no stylesheet or image by URL.
	if m := regexp.MustCompile(`<script|<link|<img|src=|url\(`).FindString(html); m != "" {
		t.Errorf("the page loads an outside asset or script: %q", m)
	}
	buf.Reset()
	_ = WritePage(&buf, Build(world(), now, Options{}), PageOptions{Filter: Filter{State: StateFailed}})
	if html := buf.String(); !strings.Contains(html, "1 of 7 releases shown") || strings.Contains(html, `data-release="4.16.15"`) ||
		!strings.Contains(html, `<option selected>failed</option>`) {
		t.Errorf("filtered page:\n%s", html)
	}
}

// bigWorld is a snapshot of n releases, two streams each, 5 per kernel.
func bigWorld(n int) *state.Snapshot {
	snap := &state.Snapshot{Tags: map[string]ledger.Promotion{}, Notices: map[string]ledger.Notice{}}
	for i := 0; i < n; i++ {
		v := fmt.Sprintf("4.%d.%d", 10+i/100, i%100)
		vr := fmt.Sprintf("5.14.0-%d.%d.1.el9_4", 400+i/100, (i%100)/5)
		r := release(v, vr, fmt.Sprintf("stable-4.%d", 10+i/100))
		r.Digest = fmt.Sprintf("sha256:%064x", i)
		r.Streams = append(r.Streams, ledger.ReleaseShips{Stream: "rhel-10", Kernel: "6.12.0-55." + fmt.Sprint(i/5) + ".1.el10_1"})
		snap.Releases = append(snap.Releases, r)
		if i%5 == 0 {
			k := kernel(vr, ledger.StatePromoted)
			for j := i; j < i+5; j++ {
				k.Releases = append(k.Releases, fmt.Sprintf("4.%d.%d", 10+j/100, j%100))
			}
			snap.Kernels = append(snap.Kernels, k)
		}
		ref := repo + ":" + v
		snap.Tags[ref] = ledger.Promotion{Ref: ref, Release: v, Kind: ledger.TagRelease, KernelKey: "rhel-9/amd64/" + vr}
	}
	return snap
}

// TestPageOf2000Releases renders a large state in full.
func TestPageOf2000Releases(t *testing.T) {
	ix := Build(bigWorld(2000), now, Options{})
	var buf bytes.Buffer
	if err := WritePage(&buf, ix, PageOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "<tr data-release="); n != 4000 {
		t.Errorf("%d rows, want 4000 (2000 releases, two streams each)", n)
	}
	t.Logf("2000 releases: %d KB of HTML", buf.Len()>>10)
}

// BenchmarkPage2000 measures building the index and rendering the page of
// 2,000 releases, what a page view costs after the state changed.
func BenchmarkPage2000(b *testing.B) {
	snap := bigWorld(2000)
	var buf bytes.Buffer
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf.Reset()
		if err := WritePage(&buf, Build(snap, now, Options{}), PageOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len()), "bytes/page")
}

func BenchmarkBuild2000(b *testing.B) {
	snap := bigWorld(2000)
	for i := 0; i < b.N; i++ {
		Build(snap, now, Options{})
	}
}

// TestLeadTimes: how long from a kernel's first sighting to its image, and
// how long before its first GA release was seen.
func TestLeadTimes(t *testing.T) {
	snap := world()
	ec := release("4.17.0-ec.1", "5.14.0-570.10.1.el9_6", "")
	ec.Kind, ec.FirstSeen, ec.TaggedAt = "ec", now, now.Add(2*time.Hour)
	ga := release("4.17.0", "5.14.0-570.10.1.el9_6", "stable-4.17")
	ga.Kind, ga.FirstSeen, ga.TaggedAt = "ga", now.Add(30*24*time.Hour), now.Add(30*24*time.Hour+time.Minute)
	k := kernel("5.14.0-570.10.1.el9_6", ledger.StatePromoted, "4.17.0-ec.1", "4.17.0")
	k.FirstSeen, k.PromotedAt, k.FirstSource = now, now.Add(2*time.Hour), "4.17.0-ec.1 from release-controller"
	snap.Releases = append(snap.Releases, ec, ga)
	snap.Kernels = append(snap.Kernels, k)
	ix := Build(snap, now, Options{})
	lead, d := ix.Leads()
	if lead.KernelsWithGA != 1 || lead.ReadyBeforeGA != 1 || lead.ReadyBeforeGAMedian != 30*24*time.Hour-2*time.Hour ||
		lead.KernelsPromoted != 1 || lead.PromotionMedian != 2*time.Hour || lead.ReleasesTagged != 2 || len(d.Tag) != 2 {
		t.Errorf("lead times %+v", lead)
	}
}

// TestPageShowsPrereleases: a candidate says what it is and where it was
// found; the header says how early images are ready.
func TestPageShowsPrereleases(t *testing.T) {
	snap := world()
	ec := release("4.17.0-ec.1", "5.14.0-570.10.1.el9_6", "")
	ec.Kind, ec.FirstSeen = "ec", now
	ec.Sources = []watcher.Source{{Type: watcher.SourceReleaseController, Name: "4-dev-preview", Phase: "Accepted", URL: "https://amd64.ocp.releases.ci.openshift.org"}}
	rejected := release("4.17.0-ec.0", "5.14.0-570.9.1.el9_6", "")
	rejected.Kind, rejected.Withdrawn = "ec", "rejected: release-controller stream 4-dev-preview (Rejected)"
	k := kernel("5.14.0-570.10.1.el9_6", ledger.StatePromoted, "4.17.0-ec.1")
	k.PromotedAt = now.Add(3 * time.Hour)
	snap.Releases = append(snap.Releases, ec, rejected)
	snap.Kernels = append(snap.Kernels, k)
	var buf bytes.Buffer
	if err := WritePage(&buf, Build(snap, now, Options{}), PageOptions{Filter: Filter{Kind: "ec"}}); err != nil {
		t.Fatal(err)
	}
	html := buf.String()
	for _, want := range []string{`<span class="kind">ec</span>`, "release-controller https://amd64.ocp.releases.ci.openshift.org stream 4-dev-preview (Accepted)",
		"withdrawn: rejected", "promoted a median 3 h after the kernel is first seen", "2 of 9 releases shown"} {
		if !strings.Contains(html, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}
