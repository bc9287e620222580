package plan

import (
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/ledger"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func target() Target {
	return Target{Repository: "quay.io/acme/dtk", KernelTag: "{{.KernelFull}}", ReleaseTags: []string{"{{.Release}}{{.StreamSuffix}}"}}
}

func release(v string, streams ...ledger.ReleaseShips) ledger.Release {
	return ledger.Release{Version: v, Arch: "amd64", Digest: "sha256:" + strings.Repeat("a", 64), Streams: streams}
}

func ships(stream, kernel string) ledger.ReleaseShips {
	return ledger.ReleaseShips{Stream: stream, Kernel: kernel, KernelFull: kernel + ".x86_64"}
}

func kernel(k, st string, releases ...string) ledger.Image {
	e := ledger.Image{Stream: "rhel-9", Arch: "amd64", Kernel: k, KernelFull: k + ".x86_64", State: st, Releases: releases}
	if st != ledger.StateNew && st != ledger.StateBuildRequested && st != ledger.StateFailed {
		e.Image = "quay.io/acme/dtk:" + k + ".x86_64"
		e.Staging = "quay.io/acme/dtk:staging-" + k + ".x86_64"
		e.ImageDigest = "sha256:" + strings.Repeat("b", 64)
		e.Published = st == ledger.StatePromoted
	}
	return e
}

func dtk(t Target) map[string]Kind { return map[string]Kind{ledger.KindDTK: {Target: t}} }

// summary names the actions people are shown (Action.Reported), in order.
func summary(actions []Action) string {
	var out []string
	for _, a := range actions {
		if !a.Reported() {
			continue
		}
		s := a.Type
		if a.Tag != "" {
			s += " " + a.Tag
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

func TestPlan(t *testing.T) {
	const ka, kb = "5.14.0-427.37.1.el9_4", "5.14.0-427.40.1.el9_4"
	tests := []struct {
		name  string
		in    Input
		want  string
		check func(t *testing.T, actions []Action)
	}{
		{
			name: "a new kernel is built once for all its releases",
			in: Input{Releases: []ledger.Release{release("4.16.15", ships("rhel-9", ka)), release("4.16.16", ships("rhel-9", ka))},
				Images: []ledger.Image{kernel(ka, ledger.StateNew, "4.16.15", "4.16.16")}},
			want: "build",
			check: func(t *testing.T, a []Action) {
				if a[0].Image != "quay.io/acme/dtk:staging-"+ka+".x86_64" || strings.Join(a[0].Releases, ",") != "4.16.15,4.16.16" {
					t.Errorf("build %+v", a[0])
				}
			},
		},
		{
			name: "a build in flight is left alone",
			in:   Input{Images: []ledger.Image{kernel(ka, ledger.StateBuildRequested, "4.16.15")}},
			want: "",
		},
		{
			name: "a retry waits for its backoff",
			in: Input{Images: []ledger.Image{func() ledger.Image {
				k := kernel(ka, ledger.StateNew, "4.16.15")
				k.NextAttemptAt = now.Add(time.Minute)
				return k
			}()}},
			want: "",
		},
		{
			name: "a built kernel gets its release tags",
			in: Input{Releases: []ledger.Release{release("4.16.15", ships("rhel-9", ka)), release("4.16.16", ships("rhel-9", ka))},
				Images: []ledger.Image{kernel(ka, ledger.StateBuilt, "4.16.15", "4.16.16")}},
			want: "promote quay.io/acme/dtk:" + ka + ".x86_64; promote quay.io/acme/dtk:4.16.15; promote quay.io/acme/dtk:4.16.16",
			check: func(t *testing.T, a []Action) {
				for i, kind := range []string{ledger.TagKernel, ledger.TagRelease, ledger.TagRelease} {
					if a[i].Image != "quay.io/acme/dtk@sha256:"+strings.Repeat("b", 64) || a[i].Kind != kind {
						t.Errorf("promotion %+v should be a %s tag from the image pinned by digest", a[i], kind)
					}
				}
			},
		},
		{
			name: "mirrors get the kernel tag too",
			in: Input{Kinds: dtk(Target{Repository: "quay.io/acme/dtk", KernelTag: "{{.KernelFull}}", Mirrors: []string{"mirror.example.com/dtk"}}),
				Releases: []ledger.Release{release("4.16.15", ships("rhel-9", ka))},
				Images:   []ledger.Image{kernel(ka, ledger.StateVerified, "4.16.15")}},
			want: "promote quay.io/acme/dtk:" + ka + ".x86_64; promote mirror.example.com/dtk:" + ka + ".x86_64",
		},
		{
			name: "a staging reference that is the kernel tag holds the kernel",
			in: Input{Kinds: dtk(Target{Repository: "quay.io/acme/dtk", KernelTag: "{{.KernelFull}}", Staging: Staging{Tag: "{{.KernelFull}}"}}),
				Images: []ledger.Image{kernel(ka, ledger.StateNew, "4.16.15")}},
			want: "hold",
			check: func(t *testing.T, a []Action) {
				if !strings.Contains(a[0].Reason, "visible before it is verified") {
					t.Errorf("reason %q", a[0].Reason)
				}
			},
		},
		{
			name: "verification required: a built kernel waits",
			in: Input{Releases: []ledger.Release{release("4.16.15", ships("rhel-9", ka))},
				Images: []ledger.Image{kernel(ka, ledger.StateBuilt, "4.16.15")}, Kinds: map[string]Kind{ledger.KindDTK: {Target: target(), Verified: true}}},
			want: "",
		},
		{
			name: "tags already at the right digest cost nothing",
			in: Input{Releases: []ledger.Release{release("4.16.15", ships("rhel-9", ka))},
				Images: []ledger.Image{kernel(ka, ledger.StatePromoted, "4.16.15")},
				Promoted: map[string]ledger.Promotion{"quay.io/acme/dtk:4.16.15": {Digest: "sha256:" + strings.Repeat("b", 64)},
					"quay.io/acme/dtk:" + ka + ".x86_64": {Digest: "sha256:" + strings.Repeat("b", 64)}}},
			want: "",
		},
		{
			name: "a dual-stream release names its second stream apart",
			in: Input{Releases: []ledger.Release{release("4.22.0", ships("rhel-9", ka), ships("rhel-10", "6.12.0-55.9.1.el10_1"))},
				Images: []ledger.Image{kernel(ka, ledger.StateBuilt, "4.22.0"),
					func() ledger.Image {
						k := kernel("6.12.0-55.9.1.el10_1", ledger.StateBuilt, "4.22.0")
						k.Stream = "rhel-10"
						return k
					}()}},
			want: "promote quay.io/acme/dtk:6.12.0-55.9.1.el10_1.x86_64; promote quay.io/acme/dtk:4.22.0-rhel-10; promote quay.io/acme/dtk:" + ka + ".x86_64; promote quay.io/acme/dtk:4.22.0",
		},
		{
			name: "a tag that would name two kernels is held",
			in: Input{Kinds: dtk(Target{Repository: "quay.io/acme/dtk", KernelTag: "{{.KernelFull}}", ReleaseTags: []string{"{{.Minor}}"}}),
				Releases: []ledger.Release{release("4.16.15", ships("rhel-9", ka)), release("4.16.17", ships("rhel-9", kb))},
				Images:   []ledger.Image{kernel(ka, ledger.StateBuilt, "4.16.15"), kernel(kb, ledger.StateBuilt, "4.16.17")}},
			want: "hold quay.io/acme/dtk:4.16; promote quay.io/acme/dtk:" + ka + ".x86_64; promote quay.io/acme/dtk:" + kb + ".x86_64",
		},
		{
			name: "held payloads and failed kernels are reported",
			in: Input{Releases: []ledger.Release{release("4.16.15", ledger.ReleaseShips{Stream: "rhel-9", Held: "inconsistent payload"})},
				Images: []ledger.Image{func() ledger.Image { k := kernel(kb, ledger.StateFailed, "4.16.17"); k.Reason = "timeout"; return k }()}},
			want: "hold; hold",
		},
		{
			name: "a staging reference that is another image's release tag holds the build",
			in: Input{Kinds: dtk(Target{Repository: "quay.io/acme/dtk", KernelTag: "{{.KernelFull}}", ReleaseTags: []string{"{{.Release}}"}, Staging: Staging{Tag: "4.16.15"}}),
				Releases: []ledger.Release{release("4.16.15", ships("rhel-9", ka)), release("4.16.17", ships("rhel-9", kb))},
				Images:   []ledger.Image{kernel(ka, ledger.StateVerified, "4.16.15"), kernel(kb, ledger.StateNew, "4.16.17")}},
			// Neither the build onto it nor the promotion to it happens.
			want: "hold quay.io/acme/dtk:4.16.15; hold; promote quay.io/acme/dtk:" + ka + ".x86_64",
			check: func(t *testing.T, a []Action) {
				if !strings.Contains(a[1].Reason, "also a tag consumers read") || !strings.Contains(a[0].Reason, "staging reference of") {
					t.Errorf("reason %q", a[0].Reason)
				}
			},
		},
		{
			name: "a bad kernel tag template holds the kernel",
			in: Input{Kinds: dtk(Target{Repository: "quay.io/acme/dtk", KernelTag: "{{.Nope}}"}),
				Images: []ledger.Image{kernel(ka, ledger.StateNew, "4.16.15")}},
			want: "hold",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.Now = now
			if in.Kinds == nil {
				in.Kinds = dtk(target())
			}
			got := Plan(in).Actions
			if summary(got) != tt.want {
				t.Fatalf("plan %q, want %q\n%+v", summary(got), tt.want, got)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

func TestFloatingTagsOnlyMoveForward(t *testing.T) {
	const ka, kb = "5.14.0-427.37.1.el9_4", "5.14.0-427.40.1.el9_4"
	in := Input{
		Now:   now,
		Kinds: dtk(Target{Repository: "quay.io/acme/dtk", KernelTag: "{{.KernelFull}}", FloatingTags: []string{"{{.Minor}}", "latest"}}),
		Releases: []ledger.Release{release("4.16.15", ships("rhel-9", ka)), release("4.16.17", ships("rhel-9", kb)),
			release("4.15.30", ships("rhel-9", ka))},
		Images: []ledger.Image{kernel(ka, ledger.StateBuilt, "4.15.30", "4.16.15"), func() ledger.Image {
			k := kernel(kb, ledger.StateBuilt, "4.16.17")
			k.ImageDigest = "sha256:" + strings.Repeat("c", 64)
			return k
		}()},
	}
	got := Plan(in).Actions
	if summary(got) != "promote quay.io/acme/dtk:"+ka+".x86_64; promote quay.io/acme/dtk:4.15; promote quay.io/acme/dtk:"+kb+".x86_64; promote quay.io/acme/dtk:4.16; promote quay.io/acme/dtk:latest" {
		t.Fatalf("%s", summary(got))
	}
	for _, a := range got {
		if a.Tag == "quay.io/acme/dtk:4.16" && a.Release != "4.16.17" {
			t.Errorf("4.16 should follow 4.16.17: %+v", a)
		}
	}
	// latest already holds a newer release: it does not move back.
	in.Promoted = map[string]ledger.Promotion{"quay.io/acme/dtk:latest": {Release: "4.17.1", Digest: "sha256:" + strings.Repeat("d", 64)}}
	for _, a := range Plan(in).Actions {
		if a.Tag == "quay.io/acme/dtk:latest" {
			t.Errorf("latest moved back to %s", a.Release)
		}
	}
}

func TestRenderTag(t *testing.T) {
	tag, err := RenderTag("{{.KernelFull}}", TagData{KernelFull: "5.14.0-427.37.1.el9_4.x86_64+rt"})
	if err != nil || tag != "5.14.0-427.37.1.el9_4.x86_64_rt" {
		t.Errorf("%q %v", tag, err)
	}
	for _, bad := range []string{"{{.Nope}}", "{{.Release", "a/b{{.Release}}", "-{{.Release}}"} {
		if err := ValidateTemplate(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestFloatingTagOverTwoStreamsIsHeld(t *testing.T) {
	const k9, k10 = "5.14.0-570.62.1.el9_6", "6.12.0-55.9.1.el10_1"
	ten := kernel(k10, ledger.StateBuilt, "4.22.0")
	ten.Stream = "rhel-10"
	in := Input{Now: now, Kinds: dtk(Target{Repository: "quay.io/acme/dtk", KernelTag: "{{.KernelFull}}", FloatingTags: []string{"{{.Minor}}"}}),
		Releases: []ledger.Release{release("4.22.0", ships("rhel-9", k9), ships("rhel-10", k10))},
		Images:   []ledger.Image{kernel(k9, ledger.StateBuilt, "4.22.0"), ten}}
	kernelTags := "promote quay.io/acme/dtk:" + k10 + ".x86_64; promote quay.io/acme/dtk:" + k9 + ".x86_64"
	if got := summary(Plan(in).Actions); got != "hold quay.io/acme/dtk:4.22; "+kernelTags {
		t.Errorf("%s", got)
	}
	in.Kinds = dtk(Target{Repository: "quay.io/acme/dtk", KernelTag: "{{.KernelFull}}", FloatingTags: []string{"{{.Minor}}{{.StreamSuffix}}"}})
	if got := summary(Plan(in).Actions); got != "promote quay.io/acme/dtk:"+k10+".x86_64; promote quay.io/acme/dtk:4.22-rhel-10; promote quay.io/acme/dtk:"+k9+".x86_64; promote quay.io/acme/dtk:4.22" {
		t.Errorf("%s", got)
	}
}
