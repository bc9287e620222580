// Package rebuild decides and performs what dtkbot does about kernels: Plan
// is a pure function from the releases, the kernel ledger and the tags
// already promoted to a list of actions (build a kernel's DTK image once, to
// a staging reference; once it is verified, promote it to the kernel tag and
// each release's tags, move floating tags forward, notify, or hold a payload
// that must not be built from); the effects sit behind small interfaces
// (Builder, Promoter, Untagger, Notifier) so that the pass can apply them and
// tests can fake them.
//
// No tag a consumer reads is ever planned onto an image that was not
// verified: builds push to the staging reference only.
//
// Plan does no I/O and reads no clock: the pass passes now in.
package rebuild

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/watcher"
)

// Action types.
const (
	ActionBuild    = "build"
	ActionVerify   = "verify"
	ActionPromote  = "promote"
	ActionAudit    = "audit"
	ActionWithdraw = "withdraw"
	ActionNotify   = "notify"
	ActionHold     = "hold"
)

// Action is one step of a plan. For a build, Image is the staging reference
// to push and Releases the releases that ship the kernel. For a promotion,
// Tag is the destination reference (repository:tag), Kind what it is
// (kernel, release or floating: state.Tag*) and Image the kernel's image,
// pinned by digest.
type Action struct {
	Type     string   `json:"type"`
	Kernel   string   `json:"kernel,omitempty"`
	Stream   string   `json:"stream,omitempty"`
	Arch     string   `json:"arch,omitempty"`
	Releases []string `json:"releases,omitempty"`
	Release  string   `json:"release,omitempty"`
	Tag      string   `json:"tag,omitempty"`
	Image    string   `json:"image,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Result   string   `json:"result,omitempty"`
	// KernelKey is the ledger key the action is about.
	KernelKey string `json:"-"`
	Kind      string `json:"kind,omitempty"`
	// Consumer is set for an action on a consumer's image.
	Consumer string `json:"consumer,omitempty"`
}

// Target is where images and tags go.
type Target struct {
	Repository   string
	KernelTag    string
	ReleaseTags  []string
	FloatingTags []string
	Mirrors      []string
	// StagingRepository (default Repository) and StagingTag are where builds
	// push: nothing a consumer reads.
	StagingRepository string
	StagingTag        string
}

// DefaultStagingTag names a kernel's staging image.
const DefaultStagingTag = "staging-{{.KernelFull}}"

// Policy bounds builds.
type Policy struct {
	// RequireVerified: promote only kernels whose image was verified.
	RequireVerified bool
	// BuildKinds are the pre-release kinds (rc, ec, nightly, ...:
	// watcher.Kind) whose kernels are built; GA releases always are.
	BuildKinds []string
	// PrereleaseTags gives pre-releases their release tags (never floating
	// tags, which only GA releases move).
	PrereleaseTags bool
}

// drives reports whether a release may cause a build: a GA release, or a
// pre-release of a kind built, not withdrawn.
func (p Policy) drives(r state.Release) bool {
	if r.Withdrawn != "" {
		return false
	}
	return !r.PreRelease() || slices.Contains(p.BuildKinds, r.Kind)
}

// Input is everything Plan decides from.
type Input struct {
	Now      time.Time
	Releases []state.Release
	Kernels  []state.Kernel
	Promoted map[string]state.Promotion
	Target   Target
	Policy   Policy
}

// KernelImage is the kernel tag of kernel k: the reference consumers (KMM
// kernel mappings, FROM lines) read, which only ever gets a verified image.
func KernelImage(t Target, k state.Kernel) (string, error) {
	tag, err := RenderTag(t.KernelTag, kernelTagData(k))
	if err != nil {
		return "", err
	}
	return t.Repository + ":" + tag, nil
}

// kernelTag is the tag part of KernelImage.
func kernelTag(t Target, k state.Kernel) (string, error) {
	return RenderTag(t.KernelTag, kernelTagData(k))
}

// StagingImage is where kernel k's build pushes, to be verified there.
func StagingImage(t Target, k state.Kernel) (string, error) {
	tmpl, repo := t.StagingTag, t.StagingRepository
	if tmpl == "" {
		tmpl = DefaultStagingTag
	}
	if repo == "" {
		repo = t.Repository
	}
	tag, err := RenderTag(tmpl, kernelTagData(k))
	if err != nil {
		return "", fmt.Errorf("staging tag: %w", err)
	}
	ref := repo + ":" + tag
	if kernel, err := KernelImage(t, k); err == nil && kernel == ref {
		return "", fmt.Errorf("the staging reference %s is the kernel tag: a build would be visible before it is verified", ref)
	}
	return ref, nil
}

// kernelTagData is the template data of a kernel's own tags (kernel and
// staging): Release is the first release that shipped it.
func kernelTagData(k state.Kernel) TagData {
	release := ""
	if len(k.Releases) > 0 {
		release = k.Releases[0]
	}
	return TagData{Kernel: k.Kernel, KernelFull: k.KernelFull, RTKernel: k.RTKernel, RHEL: k.RHEL,
		Release: release, Minor: minorOf(release), Arch: k.Arch, Stream: k.Stream}
}

// promotable reports whether k's image may receive tags.
func (in Input) promotable(k state.Kernel) bool {
	if k.ImageDigest == "" {
		return false
	}
	switch k.State {
	case state.KernelVerified, state.KernelPromoted:
		return true
	case state.KernelBuilt:
		return !in.Policy.RequireVerified
	}
	return false
}

// Plan computes the actions of one pass: holds, builds, promotions. Notify
// actions come from Notifications, after the effects are applied.
func Plan(in Input) []Action {
	var holds, builds, promotes []Action
	releases := map[string]state.Release{}
	for _, r := range in.Releases {
		releases[r.Version+"/"+r.Arch] = r
		for _, s := range r.Streams {
			if s.Held != "" {
				holds = append(holds, Action{Type: ActionHold, Release: r.Version, Stream: s.Stream, Arch: r.Arch, Kernel: s.Kernel, Reason: s.Held})
			}
		}
	}

	kernels := append([]state.Kernel(nil), in.Kernels...)
	sort.Slice(kernels, func(i, j int) bool { return kernels[i].Key() < kernels[j].Key() })

	// desired kernel and release tags: ref -> the kernel that should own it.
	type want struct {
		k       state.Kernel
		release string
		kind    string
	}
	repos := append([]string{in.Target.Repository}, in.Target.Mirrors...)
	desired := map[string][]want{}
	floating := map[string]want{}
	floatingConflict := map[string]bool{}
	for _, k := range kernels {
		ktag, err := kernelTag(in.Target, k)
		if err != nil {
			holds = append(holds, Action{Type: ActionHold, Kernel: k.Kernel, Stream: k.Stream, Arch: k.Arch, KernelKey: k.Key(), Reason: err.Error()})
			continue
		}
		image, err := StagingImage(in.Target, k)
		if err != nil {
			holds = append(holds, Action{Type: ActionHold, Kernel: k.Kernel, Stream: k.Stream, Arch: k.Arch, KernelKey: k.Key(), Reason: err.Error()})
			continue
		}
		driven := slices.ContainsFunc(k.Releases, func(v string) bool {
			r, ok := releases[v+"/"+k.Arch]
			return !ok || in.Policy.drives(r) // a release not in the input (another filter) may
		})
		switch {
		case k.State == state.KernelNew && !driven:
			holds = append(holds, Action{Type: ActionHold, Kernel: k.Kernel, Stream: k.Stream, Arch: k.Arch, KernelKey: k.Key(),
				Reason: fmt.Sprintf("shipped only by pre-releases that drive no build (prerelease.build: %v) or are withdrawn: %v", in.Policy.BuildKinds, k.Releases)})
		case k.State == state.KernelNew && !in.Now.Before(k.NextAttemptAt):
			reason := "new kernel"
			if k.Attempts > 0 {
				reason = fmt.Sprintf("retry %d: %s", k.Attempts+1, k.Reason)
			}
			builds = append(builds, Action{Type: ActionBuild, Kernel: k.Kernel, Stream: k.Stream, Arch: k.Arch,
				Releases: k.Releases, Image: image, Reason: reason, KernelKey: k.Key()})
		case k.State == state.KernelFailed:
			holds = append(holds, Action{Type: ActionHold, Kernel: k.Kernel, Stream: k.Stream, Arch: k.Arch, KernelKey: k.Key(),
				Reason: "build failed: " + k.Reason})
		}
		if !in.promotable(k) {
			continue
		}
		// The kernel tag first (in the target repository and every mirror):
		// it is what consumers look a DTK up by.
		first := ""
		if len(k.Releases) > 0 {
			first = k.Releases[0]
		}
		for _, repo := range repos {
			desired[repo+":"+ktag] = append(desired[repo+":"+ktag], want{k, first, state.TagKernel})
		}
		for _, v := range k.Releases {
			rel := releases[v+"/"+k.Arch]
			if rel.Withdrawn != "" || (rel.PreRelease() && !in.Policy.PrereleaseTags) {
				continue
			}
			data, ok := tagData(k, rel, v)
			if !ok {
				continue
			}
			for _, tmpl := range in.Target.ReleaseTags {
				tag, err := RenderTag(tmpl, data)
				if err != nil {
					holds = append(holds, Action{Type: ActionHold, Release: v, Kernel: k.Kernel, Stream: k.Stream, Arch: k.Arch, Reason: err.Error()})
					continue
				}
				for _, repo := range repos {
					desired[repo+":"+tag] = append(desired[repo+":"+tag], want{k, v, state.TagRelease})
				}
			}
			for _, tmpl := range in.Target.FloatingTags {
				if rel.PreRelease() || watcher.Kind(v) != watcher.KindGA {
					break // floating tags follow GA releases only
				}
				tag, err := RenderTag(tmpl, data)
				if err != nil {
					continue
				}
				for _, repo := range repos {
					ref := repo + ":" + tag
					cur, ok := floating[ref]
					switch {
					case !ok || watcher.CompareVersions(v, cur.release) > 0:
						floating[ref] = want{k, v, state.TagFloating}
						floatingConflict[ref] = false
					case cur.release == v && cur.k.Key() != k.Key():
						floatingConflict[ref] = true // two streams of one release
					}
				}
			}
		}
	}

	refs := make([]string, 0, len(desired))
	for ref := range desired {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	for _, ref := range refs {
		ws := desired[ref]
		owner := ws[0]
		conflict := false
		for _, w := range ws[1:] {
			if w.k.Key() != owner.k.Key() {
				conflict = true
			}
		}
		if conflict {
			holds = append(holds, Action{Type: ActionHold, Release: owner.release, Tag: ref,
				Reason: fmt.Sprintf("tag %s would name %d different kernels: add {{.Stream}}, {{.StreamSuffix}} or {{.Arch}} to target.release_tags", ref, len(ws))})
			continue
		}
		if p, ok := in.Promoted[ref]; ok && p.Digest == owner.k.ImageDigest {
			continue
		}
		promotes = append(promotes, promoteAction(owner.k, owner.release, ref, owner.kind))
	}
	frefs := make([]string, 0, len(floating))
	for ref := range floating {
		frefs = append(frefs, ref)
	}
	sort.Strings(frefs)
	for _, ref := range frefs {
		w := floating[ref]
		if floatingConflict[ref] {
			holds = append(holds, Action{Type: ActionHold, Release: w.release, Tag: ref,
				Reason: fmt.Sprintf("floating tag %s would name two streams of %s: add {{.StreamSuffix}} to target.floating_tags", ref, w.release)})
			continue
		}
		if p, ok := in.Promoted[ref]; ok && (p.Digest == w.k.ImageDigest || watcher.CompareVersions(p.Release, w.release) > 0) {
			continue // already there, or a newer release holds it: floating tags only move forward
		}
		promotes = append(promotes, promoteAction(w.k, w.release, ref, state.TagFloating))
	}
	// Kernel tags before the release tags that name the same image.
	sort.SliceStable(promotes, func(i, j int) bool {
		return promotes[i].Kind == state.TagKernel && promotes[j].Kind != state.TagKernel
	})

	sort.SliceStable(holds, func(i, j int) bool { return watcher.CompareVersions(holds[i].Release, holds[j].Release) < 0 })
	out := append(holds, builds...)
	return append(out, promotes...)
}

func promoteAction(k state.Kernel, release, ref, kind string) Action {
	return Action{Type: ActionPromote, Kernel: k.Kernel, Stream: k.Stream, Arch: k.Arch, Release: release, Tag: ref,
		Image: k.PinnedImage(), KernelKey: k.Key(), Kind: kind}
}

// tagData is the template data for kernel k promoted for release version v.
func tagData(k state.Kernel, r state.Release, v string) (TagData, bool) {
	d := TagData{Kernel: k.Kernel, KernelFull: k.KernelFull, RTKernel: k.RTKernel, RHEL: k.RHEL,
		Release: v, Minor: minorOf(v), Arch: k.Arch, Stream: k.Stream}
	for i, s := range r.Streams {
		if s.Stream == k.Stream && s.Kernel == k.Kernel {
			if i > 0 {
				d.StreamSuffix = "-" + s.Stream
			}
			return d, true
		}
	}
	return d, r.Version == "" // a release not in the input still gets tags
}

// Notifications are the notify actions due: every kernel whose notice (its
// state, releases, image, and what hash adds) changed since it was last
// announced.
func Notifications(kernels []state.Kernel, hash func(state.Kernel) string) []Action {
	var out []Action
	for _, k := range kernels {
		if k.NotifiedHash != hash(k) {
			out = append(out, Action{Type: ActionNotify, Kernel: k.Kernel, Stream: k.Stream, Arch: k.Arch,
				Releases: k.Releases, Image: k.Image, Reason: k.State, KernelKey: k.Key()})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KernelKey < out[j].KernelKey })
	return out
}
