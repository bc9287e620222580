package upgradegraph

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/ledger"
)

const (
	from   = "4.16.10"
	target = "4.16.20"
)

// name is a risk's name as dtkbot writes it for a kernel.
func name(reason, kernelFull string, consumer ...string) string {
	return riskName(reason, append(consumer, kernelFull)...)
}

// shipsRT records the target as shipping kNew and its RT kernel, and
// simple-kmod as built for the default and the RT kernel.
func shipsRT(w *world) {
	w.opts.Variants = map[string][]string{kmod: {ledger.VariantDefault, ledger.VariantRT}}
	s := ships("rhel-9", kNew, "amd64")
	s.RTKernel = kNew
	w.release(target, "amd64", s)
}

// carriesRT marks a DTK whose files were read: it carries kNew's RT kernel.
func carriesRT(m *ledger.Image) {
	m.ImageDigest = "sha256:" + strings.Repeat("d", 64)
	m.KernelFilesRead(ledger.KernelFilesCheck{Variants: []ledger.VariantKernel{{Variant: ledger.VariantRT, KernelFull: kNew + ".x86_64+rt"}}}, at0)
}

// TestRisksOfATarget: one target release (4.16.20) in every state its
// drivers can be in, per stream, per arch, held, pre-release and not
// read; each case checks the target's readiness, its risks (names,
// messages, links) and what a cluster at 4.16.10 is offered, decoded as
// the CVO decodes it.
func TestRisksOfATarget(t *testing.T) {
	rel := []string{target}
	dtk := func(st string, mod ...func(*ledger.Image)) func(w *world) {
		return func(w *world) {
			w.release(target, "amd64", ships("rhel-9", kNew, "amd64"))
			w.image("", "rhel-9", "amd64", kNew, st, rel, mod...)
		}
	}
	consumer := func(st string, mod ...func(*ledger.Image)) func(w *world) {
		return func(w *world) {
			w.release(target, "amd64", ships("rhel-9", kNew, "amd64"))
			w.image("", "rhel-9", "amd64", kNew, ledger.StatePromoted, rel)
			w.image(kmod, "rhel-9", "amd64", kNew, st, rel, mod...)
		}
	}
	for _, tc := range []struct {
		name  string
		arch  string // the graph's; amd64 when empty
		setup func(w *world)
		state string
		// risks: name -> what its message says
		risks map[string][]string
		url   string // of the first risk, when set
	}{
		{name: "ready", state: Ready, setup: func(w *world) {
			w.release(target, "amd64", ships("rhel-9", kNew, "amd64"))
			w.ready("rhel-9", "amd64", kNew, target)
		}},
		{name: "DTK not built yet", setup: dtk(ledger.StateNew), state: Waiting,
			risks: map[string][]string{name("DriverToolkitNotReady", kNew+".x86_64"): {"No verified Driver Toolkit image for kernel " + kNew + ".x86_64 (rhel-9) yet: not built yet.", "The images of simple-kmod are built from it and wait for it."}},
			url:   page + "?kernel=" + kNew},
		{name: "DTK building", setup: dtk(ledger.StateBuildRequested, func(m *ledger.Image) { m.BuildRequestedAt, m.Attempts = at0, 2 }), state: Waiting,
			risks: map[string][]string{name("DriverToolkitNotReady", kNew+".x86_64"): {"building since 2026-08-01 10:00 UTC (attempt 2)"}}},
		{name: "DTK built, being verified", setup: dtk(ledger.StateBuilt), state: Waiting,
			risks: map[string][]string{name("DriverToolkitNotReady", kNew+".x86_64"): {"built, being verified"}}},
		{name: "DTK failed, with its issue", setup: func(w *world) {
			dtk(ledger.StateFailed, func(m *ledger.Image) {
				m.Reason = "build webhook https://ci.example.com/hooks/tok-1 answered HTTP 500\nsecond line"
			})(w)
			w.snap.Notices[ledger.ImageID{Stream: "rhel-9", Arch: "amd64", Kernel: kNew}.Key()] = ledger.Notice{IssueURL: issue}
		}, state: Blocked,
			risks: map[string][]string{name("DriverToolkitNotReady", kNew+".x86_64"): {"failed: build webhook https://ci.example.com answered HTTP 500"}},
			url:   issue},
		{name: "DTK retried after a failed attempt", setup: dtk(ledger.StateNew, func(m *ledger.Image) {
			m.Attempts, m.Reason, m.NextAttemptAt = 1, "the build did not appear in 2h0m0s", at0
		}), state: Waiting,
			risks: map[string][]string{name("DriverToolkitNotReady", kNew+".x86_64"): {"attempt 1 failed (the build did not appear in 2h0m0s), retried after 2026-08-01 10:00 UTC"}}},
		{name: "consumer's image not built yet", setup: func(w *world) {
			w.release(target, "amd64", ships("rhel-9", kNew, "amd64"))
			w.image("", "rhel-9", "amd64", kNew, ledger.StatePromoted, rel)
		}, state: Waiting,
			risks: map[string][]string{name("KernelModuleNotReady", kNew+".x86_64", kmod): {"No verified simple-kmod image for kernel " + kNew + ".x86_64 (rhel-9) yet: not built yet."}}},
		{name: "consumer's image building", setup: consumer(ledger.StateBuildRequested, func(m *ledger.Image) { m.BuildRequestedAt = at0 }), state: Waiting,
			risks: map[string][]string{name("KernelModuleNotReady", kNew+".x86_64", kmod): {"building since 2026-08-01 10:00 UTC (attempt 1)"}}},
		{name: "consumer's image rejected, with the ABI verdict", setup: func(w *world) {
			consumer(ledger.StateFailed, func(m *ledger.Image) {
				why := "kmod image quay.io/acme/simple-kmod@sha256:1: rejected: simple-kmod.ko: vermagic 5.14.0-427.50.1.el9_4.x86_64 SMP preempt_rt mod_unload modversions, the kernel's is 5.14.0-427.50.1.el9_4.x86_64 SMP preempt mod_unload modversions\nand 3 more lines"
				m.Rejections = []ledger.Rejection{{Digest: "sha256:1", Reason: why}}
				m.Reason = "verification failed (1 attempts): " + why
			})(w)
			w.snap.Kernels[len(w.snap.Kernels)-1].ABI = []ledger.ABIVerdict{{Consumer: kmod, From: kOld + ".x86_64", Changed: []string{"printk", "kmalloc"}}}
		}, state: Blocked,
			risks: map[string][]string{name("KernelModuleNotReady", kNew+".x86_64", kmod): {
				"rejected: simple-kmod.ko: vermagic 5.14.0-427.50.1.el9_4.x86_64 SMP preempt_rt",
				"ABI: simple-kmod: the modules for " + kOld + ".x86_64 would not load: 2 symbol versions changed (printk, kmalloc)"}}},
		{name: "consumer's image rejected, retried", setup: consumer(ledger.StateNew, func(m *ledger.Image) {
			m.Attempts, m.NextAttemptAt = 1, at0
			m.Rejections = []ledger.Rejection{{Digest: "sha256:1", Reason: "simple-kmod.ko: no module for this kernel"}}
		}), state: Waiting,
			risks: map[string][]string{name("KernelModuleNotReady", kNew+".x86_64", kmod): {"rejected: simple-kmod.ko: no module for this kernel (retried after 2026-08-01 10:00 UTC)"}}},
		{name: "consumer's image verified, its tag someone else's", setup: consumer(ledger.StateVerified, func(m *ledger.Image) {
			m.Conflicts = []ledger.Conflict{{Tag: "quay.io/acme/simple-kmod:" + kNew + ".x86_64"}}
		}), state: Blocked,
			risks: map[string][]string{name("KernelModuleNotReady", kNew+".x86_64", kmod): {"held: verified, but its tag quay.io/acme/simple-kmod:" + kNew + ".x86_64 holds an image dtkbot did not put there"}}},
		{name: "a consumer no longer configured is no risk", setup: func(w *world) {
			w.release(target, "amd64", ships("rhel-9", kNew, "amd64"))
			w.ready("rhel-9", "amd64", kNew, target)
			w.image("gone-kmod", "rhel-9", "amd64", kNew, ledger.StateFailed, rel)
		}, state: Ready},
		{name: "RT: the default kernel's image ready, the RT one rejected", setup: func(w *world) {
			shipsRT(w)
			w.image("", "rhel-9", "amd64", kNew, ledger.StatePromoted, rel, carriesRT)
			w.image(kmod, "rhel-9", "amd64", kNew, ledger.StatePromoted, rel)
			w.image(kmod, "rhel-9", "amd64", kNew, ledger.StateFailed, rel, func(m *ledger.Image) {
				m.Variant, m.KernelFull, m.Reason = ledger.VariantRT, kNew+".x86_64+rt", "verification failed: simple-kmod.ko: vermagic without preempt_rt"
			})
		}, state: Blocked,
			risks: map[string][]string{name("KernelModuleNotReady", kNew+".x86_64+rt", kmod): {"No verified simple-kmod image for kernel " + kNew + ".x86_64+rt (rhel-9) yet: failed: verification failed"}}},
		{name: "RT: every variant promoted", setup: func(w *world) {
			shipsRT(w)
			w.image("", "rhel-9", "amd64", kNew, ledger.StatePromoted, rel, carriesRT)
			w.image(kmod, "rhel-9", "amd64", kNew, ledger.StatePromoted, rel)
			w.image(kmod, "rhel-9", "amd64", kNew, ledger.StatePromoted, rel, func(m *ledger.Image) {
				m.Variant, m.KernelFull = ledger.VariantRT, kNew+".x86_64+rt"
			})
		}, state: Ready},
		{name: "RT shipped, its DTK without it", setup: func(w *world) {
			shipsRT(w)
			w.image("", "rhel-9", "amd64", kNew, ledger.StatePromoted, rel, func(m *ledger.Image) {
				m.ImageDigest = "sha256:" + strings.Repeat("d", 64)
				m.KernelFilesRead(ledger.KernelFilesCheck{}, at0)
			})
			w.image(kmod, "rhel-9", "amd64", kNew, ledger.StatePromoted, rel)
		}, state: Blocked,
			risks: map[string][]string{name("KernelModuleNotReady", kNew+".x86_64+rt", kmod): {"the release ships it, and its Driver Toolkit image does not carry it"}}},
		{name: "64k: asked for, the arm64 DTK without kernel-64k", arch: "arm64", setup: func(w *world) {
			w.opts.Variants = map[string][]string{kmod: {ledger.VariantDefault, ledger.Variant64K}}
			w.opts.Arches = append(w.opts.Arches, "arm64")
			w.release(target, "arm64", ships("rhel-9", kNew, "arm64"))
			w.image("", "rhel-9", "arm64", kNew, ledger.StatePromoted, rel, func(m *ledger.Image) {
				m.RHEL, m.ImageDigest = "9.4", "sha256:"+strings.Repeat("d", 64)
				m.KernelFilesRead(ledger.KernelFilesCheck{}, at0)
			})
			w.image(kmod, "rhel-9", "arm64", kNew, ledger.StatePromoted, rel)
		}, state: Blocked,
			risks: map[string][]string{name("KernelModuleNotReady", kNew+".aarch64+64k", kmod): {"the 64k kernel " + kNew + ".aarch64+64k", "its Driver Toolkit image does not carry it"}}},
		{name: "RT not asked for: the default kernel's image is enough", setup: func(w *world) {
			shipsRT(w)
			w.opts.Variants = nil
			w.image("", "rhel-9", "amd64", kNew, ledger.StatePromoted, rel, carriesRT)
			w.image(kmod, "rhel-9", "amd64", kNew, ledger.StatePromoted, rel)
		}, state: Ready},
		{name: "two consumers, two streams: RHEL 9 ready, RHEL 10 without its DTK", setup: func(w *world) {
			w.opts.Consumers = []string{kmod, nic}
			w.release(target, "amd64", ships("rhel-9", kNew, "amd64"), ships("rhel-10", kTen, "amd64"))
			w.ready("rhel-9", "amd64", kNew, target)
			w.image("", "rhel-10", "amd64", kTen, ledger.StateBuildRequested, rel)
		}, state: Waiting,
			risks: map[string][]string{name("DriverToolkitNotReady", kTen+".x86_64"): {"kernel " + kTen + ".x86_64 (rhel-10)", "The images of simple-kmod, acme-nic are built from it"}}},
		{name: "two streams, RHEL 10's consumer failed", setup: func(w *world) {
			w.release(target, "amd64", ships("rhel-9", kNew, "amd64"), ships("rhel-10", kTen, "amd64"))
			w.ready("rhel-9", "amd64", kNew, target)
			w.image("", "rhel-10", "amd64", kTen, ledger.StatePromoted, rel)
			w.image(kmod, "rhel-10", "amd64", kTen, ledger.StateFailed, rel, func(m *ledger.Image) { m.Reason = "the build did not appear" })
		}, state: Blocked,
			risks: map[string][]string{name("KernelModuleNotReady", kTen+".x86_64", kmod): {"failed: the build did not appear"}}},
		{name: "multi: both arches ready", arch: "multi", setup: func(w *world) {
			for _, a := range []string{"amd64", "arm64"} {
				w.release(target, a, ships("rhel-9", kNew, a))
				w.ready("rhel-9", a, kNew, target)
			}
		}, state: Ready},
		{name: "multi: arm64's consumer image missing", arch: "multi", setup: func(w *world) {
			w.release(target, "amd64", ships("rhel-9", kNew, "amd64"))
			w.ready("rhel-9", "amd64", kNew, target)
			w.release(target, "arm64", ships("rhel-9", kNew, "arm64"))
			w.image("", "rhel-9", "arm64", kNew, ledger.StatePromoted, rel)
		}, state: Waiting,
			risks: map[string][]string{name("KernelModuleNotReady", kNew+".aarch64", kmod): {"kernel " + kNew + ".aarch64 (rhel-9)"}}},
		{name: "multi: arm64 not read yet", arch: "multi", setup: func(w *world) {
			w.release(target, "amd64", ships("rhel-9", kNew, "amd64"))
			w.ready("rhel-9", "amd64", kNew, target)
		}, state: Unknown,
			risks: map[string][]string{riskName("ReleaseNotInspected", target, "arm64"): {"dtkbot has not read the payload of 4.16.20 for arm64 yet"}},
			url:   page + "?release=4.16.20"},
		{name: "not read yet", setup: func(*world) {}, state: Unknown,
			risks: map[string][]string{riskName("ReleaseNotInspected", target, "amd64"): {"the kernels it ships, and whether drivers are ready for them, are unknown"}}},
		{name: "payload held", setup: func(w *world) {
			w.snap.Held = append(w.snap.Held, ledger.HeldRelease{Version: target, Digest: digestOfVersion(target), Arch: "amd64", Kind: "content",
				Reason: `tag "driver-toolkit" appears twice with different images`})
		}, state: Blocked,
			risks: map[string][]string{riskName("ReleaseHeld", target, "amd64"): {`dtkbot holds the payload of 4.16.20 for amd64 and builds nothing for it (content): tag "driver-toolkit" appears twice`}}},
		{name: "stream held: inconsistent payload", setup: func(w *world) {
			s := ships("rhel-9", kNew, "amd64")
			s.Held = "inconsistent payload: the DTK carries 5.14.0-427.44.1.el9_4, the OS image 5.14.0-427.42.1.el9_4"
			w.release(target, "amd64", s)
		}, state: Blocked,
			risks: map[string][]string{riskName("StreamHeld", target, "rhel-9", "amd64"): {"dtkbot builds nothing for the rhel-9 stream of 4.16.20 (amd64): inconsistent payload"}}},
		{name: "stream's kernel unknown", setup: func(w *world) {
			w.release(target, "amd64", ledger.ReleaseShips{Stream: "rhel-8", Held: "kernel unknown: no machine-os-content label"})
		}, state: Unknown,
			risks: map[string][]string{riskName("KernelUnknown", target, "rhel-8", "amd64"): {"(kernel unknown: no machine-os-content label)"}}},
		{name: "payload not pinned by digest", setup: func(w *world) { w.unpinned[target] = true }, state: Unknown,
			risks: map[string][]string{riskName("PayloadNotPinned", target): {"is not pinned by digest (quay.io/openshift-release-dev/ocp-release:4.16.20-x86_64)"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			tc.setup(w)
			w.node(from)
			w.node(target)
			w.edge(from, target)
			for _, a := range []string{"amd64", "arm64"} {
				w.release(from, a, ships("rhel-9", kOld, a))
				w.ready("rhel-9", a, kOld, from)
			}
			arch := tc.arch
			if arch == "" {
				arch = "amd64"
			}
			s := w.compute(arch)
			got := s.Releases[1]
			if got.State != tc.state {
				t.Errorf("state %s, want %s (risks %+v)", got.State, tc.state, got.Risks)
			}
			if s.Releases[0].State != Ready {
				t.Errorf("the release updated from is %s: %+v", s.Releases[0].State, s.Releases[0].Risks)
			}
			var names []string
			for _, r := range got.Risks {
				names = append(names, r.Name)
				for _, want := range tc.risks[r.Name] {
					if !strings.Contains(r.Message, want) {
						t.Errorf("risk %s says %q, not %q", r.Name, r.Message, want)
					}
				}
				if len(r.MatchingRules) != 1 || r.MatchingRules[0].Type != "Always" {
					t.Errorf("risk %s matches %+v, want Always", r.Name, r.MatchingRules)
				}
				if strings.Contains(r.Message, "tok-1") || strings.Contains(r.Message, "second line") {
					t.Errorf("risk %s says more than its reason's first line, redacted: %q", r.Name, r.Message)
				}
			}
			var want []string
			for n := range tc.risks {
				want = append(want, n)
			}
			slices.Sort(names)
			slices.Sort(want)
			if !slices.Equal(names, want) {
				t.Errorf("risks %v, want %v", names, want)
			}
			if tc.url != "" && len(got.Risks) > 0 && got.Risks[0].URL != tc.url {
				t.Errorf("url %s, want %s", got.Risks[0].URL, tc.url)
			}
			// What a cluster at 4.16.10 is offered, as the CVO reads it.
			recommended, risks, err := offered(t, body(t, s), from, target)
			if err != nil {
				t.Fatalf("%s is not offered from %s: %v\n%s", target, from, err, body(t, s))
			}
			if recommended != (tc.state == Ready) {
				t.Errorf("recommended %v, state %s", recommended, tc.state)
			}
			var offeredNames []string
			for _, r := range risks {
				offeredNames = append(offeredNames, r.Name)
			}
			slices.Sort(offeredNames)
			if !slices.Equal(offeredNames, want) {
				t.Errorf("the CVO sees risks %v, want %v", offeredNames, want)
			}
		})
	}
}

// TestPreReleaseTargets: a pre-release target whose kind dtkbot builds
// waits for its kernel like any other; one whose kind it does not build
// says so, for its DTK will never come.
func TestPreReleaseTargets(t *testing.T) {
	for _, tc := range []struct {
		version, state, says string
	}{
		{"4.17.0-rc.1", Waiting, "not built yet"},
		{"4.17.0-ec.2", Blocked, "not built: only pre-releases dtkbot builds nothing for ship it (prerelease.build: rc)"},
	} {
		w := newWorld(t)
		w.node(from)
		w.node(tc.version)
		w.edge(from, tc.version)
		w.release(from, "amd64", ships("rhel-9", kOld, "amd64"))
		w.ready("rhel-9", "amd64", kOld, from)
		w.release(tc.version, "amd64", ships("rhel-9", kNext, "amd64"))
		w.image("", "rhel-9", "amd64", kNext, ledger.StateNew, []string{tc.version})
		s := w.compute("amd64")
		got := s.Releases[1]
		if got.State != tc.state || len(got.Risks) != 1 || !strings.Contains(got.Risks[0].Message, tc.says) {
			t.Errorf("%s: %s %+v, want %s saying %q", tc.version, got.State, got.Risks, tc.state, tc.says)
		}
	}
}

// TestOneKernelIsOneRisk: two targets that ship the same kernel carry the
// same risk, name and message alike (the CVO keeps risks by name across
// updates), and a risk's name never names a release.
func TestOneKernelIsOneRisk(t *testing.T) {
	w := newWorld(t)
	w.node(from)
	w.node("4.16.20")
	w.node("4.16.21")
	w.edge(from, "4.16.20")
	w.edge(from, "4.16.21")
	w.release(from, "amd64", ships("rhel-9", kOld, "amd64"))
	w.ready("rhel-9", "amd64", kOld, from)
	for _, v := range []string{"4.16.20", "4.16.21"} {
		w.release(v, "amd64", ships("rhel-9", kNew, "amd64"))
	}
	w.image("", "rhel-9", "amd64", kNew, ledger.StateBuildRequested, []string{"4.16.20", "4.16.21"}, func(m *ledger.Image) { m.BuildRequestedAt = at0 })
	s := w.compute("amd64")
	a, b := s.Releases[1].Risks, s.Releases[2].Risks
	if len(a) != 1 || len(b) != 1 || a[0].Name != b[0].Name || a[0].Message != b[0].Message || a[0].URL != b[0].URL {
		t.Fatalf("risks differ: %+v %+v", a, b)
	}
	if strings.Contains(a[0].Name, "4_16") || strings.Contains(a[0].Message, "4.16.2") {
		t.Errorf("a kernel's risk names a release: %+v", a[0])
	}
	if !reasonPattern.MatchString(a[0].Name) || a[0].Name != "DriverToolkitNotReady_5_14_0_427_50_1_el9_4_x86_64" {
		t.Errorf("name %q", a[0].Name)
	}
}

// TestManyMissingPiecesAreBounded: a release missing more images than a
// condition's message can hold gets maxRisks risks, the last one counting
// the rest.
func TestManyMissingPiecesAreBounded(t *testing.T) {
	w := newWorld(t)
	w.opts.Consumers = nil
	for i := 0; i < 40; i++ {
		w.opts.Consumers = append(w.opts.Consumers, "kmod-"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	w.node(from)
	w.node(target)
	w.edge(from, target)
	w.release(from, "amd64", ships("rhel-9", kOld, "amd64"))
	w.ready("rhel-9", "amd64", kOld, from)
	w.release(target, "amd64", ships("rhel-9", kNew, "amd64"))
	w.image("", "rhel-9", "amd64", kNew, ledger.StatePromoted, []string{target})
	s := w.compute("amd64")
	risks := s.Releases[1].Risks
	if len(risks) != maxRisks || !strings.Contains(risks[maxRisks-1].Message, "And 17 more kernel images are missing for 4.16.20") {
		t.Fatalf("%d risks, the last %+v", len(risks), risks[len(risks)-1])
	}
	cvoView(t, body(t, s), from) // and the CVO takes it
}

// TestUnwatchedOrNeverRead: a channel or arch dtkbot does not watch, or a
// graph it never read, is an error: never the upstream passed through.
func TestUnwatchedOrNeverRead(t *testing.T) {
	w := newWorld(t)
	w.node(from)
	for _, tc := range []struct {
		channel, arch string
		upstream      bool
		want          error
	}{
		{"fast-4.16", "amd64", true, ErrNotWatched},
		{"stable-4.16", "s390x", true, ErrNotWatched},
		{"stable-4.16", "amd64", false, ErrNoUpstream},
	} {
		in := Input{Options: w.opts, Channel: tc.channel, Arch: tc.arch, Snapshot: w.snap, PageURL: page}
		if tc.upstream {
			in.Upstream = w.upstream()
		}
		if _, err := Compute(in); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.channel) {
			t.Errorf("%s/%s: %v, want %v", tc.channel, tc.arch, err, tc.want)
		}
	}
}

// TestReasonsAreQuotedShort: a risk quotes the first line of a reason,
// redacted, at most maxReason bytes and cut where a clause ends.
func TestReasonsAreQuotedShort(t *testing.T) {
	long := "its modules would not load: " + strings.Repeat("a.ko: vermagic differs; ", 20) + "\nsecond line"
	got := firstLine(long)
	if len(got) > maxReason+4 || !strings.HasSuffix(got, "differs …") || strings.Contains(got, "second") {
		t.Errorf("%d bytes: %q", len(got), got)
	}
	if got := firstLine("fetching https://ci.example.com/hooks/tok-1 failed."); got != "fetching https://ci.example.com failed" {
		t.Errorf("%q", got)
	}
}
