// Package plan decides what dtkbot does about the images it keeps, for
// every kind alike (a kernel's DTK, each consumer's image FROM it): Plan is
// a pure function from the releases, the images of the ledger and the tags
// already promoted to a list of actions: build an image once per kernel, to
// its staging reference; once it is verified, promote it to its kernel tag,
// then to each release's tags, the floating tags and the mirrors; hold what
// must not be built from or tagged (a broken payload, a tag that would name
// two images, a staging tag that is a tag consumers read).
//
// The kinds differ only in their Kind: where their images and tags go and
// whether they are verified. Adding a kind of image is a new entry in
// Input.Kinds, not new logic here.
//
// Plan does no I/O and reads no clock: the pass passes now in. It never
// plans a consumer-visible tag without naming the kernel tag it waits for
// (Action.After), which package promote enforces.
package plan

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/version"
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
// (kernel, release or floating: ledger.Tag*), Image the image pinned by
// digest, and After the kernel tag that must hold that image, in this pass,
// before the tag is written ("" for the kernel tag itself).
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
	// KernelKey is the kernel the action is about; with Consumer, the
	// image (ImageKey).
	KernelKey string `json:"-"`
	Kind      string `json:"kind,omitempty"`
	// Consumer is set for an action on a consumer's image.
	Consumer string `json:"consumer,omitempty"`
	After    string `json:"after,omitempty"`
}

// ImageKey is the key of the image the action is about.
func (a Action) ImageKey() string { return ledger.ImageKey(a.Consumer, a.KernelKey) }

// Target is where a kind's images and tags go.
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

// Kind is what the plan needs of one kind of image.
type Kind struct {
	Target Target
	// Verified: the kind's built images are verified before they may be
	// promoted (a kind without a verifier promotes what it finds built).
	Verified bool
	// NeedsKernelFiles: the kind's images are checked against the kernel's
	// files its DTK carries (a consumer's verify.abi: true): none is built
	// FROM a DTK before it is known to carry them, nor from one that lacks
	// them.
	NeedsKernelFiles bool
}

// DefaultStagingTag names a kernel's staging image.
const DefaultStagingTag = "staging-{{.KernelFull}}"

// Policy says which releases drive builds and get tags.
type Policy struct {
	// BuildKinds are the pre-release kinds (rc, ec, nightly, ...:
	// version.Kind) whose kernels are built; GA releases always are.
	BuildKinds []string
	// PrereleaseTags gives pre-releases their release tags (never floating
	// tags, which only GA releases move).
	PrereleaseTags bool
}

// drives reports whether a release may cause a build: a GA release, or a
// pre-release of a kind built, not withdrawn.
func (p Policy) drives(r ledger.Release) bool {
	if r.Withdrawn != "" {
		return false
	}
	return !r.PreRelease() || slices.Contains(p.BuildKinds, r.Kind)
}

// tagged reports whether release r gets release tags.
func (p Policy) tagged(r ledger.Release) bool {
	return r.Withdrawn == "" && (!r.PreRelease() || p.PrereleaseTags)
}

// Input is everything Plan decides from.
type Input struct {
	Now      time.Time
	Releases []ledger.Release
	// Images are the ledger's images of every kind.
	Images   []ledger.Image
	Promoted map[string]ledger.Promotion
	// Kinds are the kinds of image configured, by ledger.Image.Kind: an
	// image of a kind not here (a consumer removed from the config) is
	// left alone.
	Kinds  map[string]Kind
	Policy Policy
}

// KernelImage is the kernel tag of image m: the reference consumers (KMM
// kernel mappings, FROM lines) read, which only ever gets a verified image.
func KernelImage(t Target, m ledger.Image) (string, error) {
	tag, err := RenderTag(t.KernelTag, kernelTagData(m))
	if err != nil {
		return "", err
	}
	return t.Repository + ":" + tag, nil
}

// StagingImage is where image m's build pushes, to be verified there.
func StagingImage(t Target, m ledger.Image) (string, error) {
	tmpl, repo := t.StagingTag, t.StagingRepository
	if tmpl == "" {
		tmpl = DefaultStagingTag
	}
	if repo == "" {
		repo = t.Repository
	}
	tag, err := RenderTag(tmpl, kernelTagData(m))
	if err != nil {
		return "", fmt.Errorf("staging tag: %w", err)
	}
	ref := repo + ":" + tag
	if kernel, err := KernelImage(t, m); err == nil && kernel == ref {
		return "", fmt.Errorf("the staging reference %s is the kernel tag: a build would be visible before it is verified", ref)
	}
	return ref, nil
}

// kernelTagData is the template data of an image's own tags (kernel and
// staging): Release is the first release that shipped its kernel.
func kernelTagData(m ledger.Image) TagData {
	release := first(m.Releases)
	return TagData{Kernel: m.Kernel, KernelFull: m.KernelFull, RTKernel: m.RTKernel, RHEL: m.RHEL,
		Release: release, Minor: version.Minor(release), Arch: m.Arch, Stream: m.Stream}
}

// promotable reports whether m may receive tags.
func promotable(m ledger.Image, k Kind) bool {
	if m.ImageDigest == "" {
		return false
	}
	switch m.State {
	case ledger.StateVerified, ledger.StatePromoted:
		return true
	case ledger.StateBuilt:
		return !k.Verified
	}
	return false
}

// want is a tag the plan would have name an image.
type want struct {
	m       ledger.Image
	release string
	kind    string
	after   string // the kernel tag it waits for
	rank    int    // order within the image: its kernel tag first
	ref     string // the tag, once chosen
}

// Plan computes the actions of one pass: holds, builds, promotions. Notify
// actions come from Notifications, after the effects are applied.
func Plan(in Input) []Action {
	var holds, builds []Action
	hold := func(a Action) {
		a.Type = ActionHold
		holds = append(holds, a)
	}
	releases := map[string]ledger.Release{}
	for _, r := range in.Releases {
		releases[r.Version+"/"+r.Arch] = r
		for _, s := range r.Streams {
			if s.Held != "" {
				hold(Action{Release: r.Version, Stream: s.Stream, Arch: r.Arch, Kernel: s.Kernel, Reason: s.Held})
			}
		}
	}
	images := slices.Clone(in.Images)
	sort.Slice(images, func(i, j int) bool { return images[i].Key() < images[j].Key() })
	dtks := map[string]ledger.Image{}
	for _, m := range images {
		if m.IsDTK() {
			dtks[m.KernelKey()] = m
		}
	}

	desired := map[string][]want{} // ref -> the images that should own it
	floating := map[string]want{}
	floatingConflict := map[string]bool{}
	visible := map[string]bool{}   // every kernel tag and wanted tag: what consumers read
	staging := map[string]string{} // staging ref -> image key
	var buildable []Action
	for _, m := range images {
		kind, ok := in.Kinds[m.Kind()]
		if !ok {
			continue // a kind no longer configured: nothing is done about it
		}
		about := Action{Kernel: m.Kernel, Stream: m.Stream, Arch: m.Arch, KernelKey: m.KernelKey(), Consumer: m.Consumer}
		kernelRef, err := KernelImage(kind.Target, m)
		if err != nil {
			about.Reason = err.Error()
			hold(about)
			continue
		}
		stagingRef, err := StagingImage(kind.Target, m)
		if err != nil {
			about.Reason = err.Error()
			hold(about)
			continue
		}
		visible[kernelRef] = true
		staging[stagingRef] = m.Key()
		switch {
		case m.State == ledger.StateFailed:
			about.Reason = "build failed: " + m.Reason
			hold(about)
		case m.State != ledger.StateNew:
		case m.IsDTK() && !slices.ContainsFunc(m.Releases, func(v string) bool {
			r, ok := releases[v+"/"+m.Arch]
			return !ok || in.Policy.drives(r) // a release not in the input (another filter) may
		}):
			about.Reason = fmt.Sprintf("shipped only by pre-releases that drive no build (prerelease.build: %v) or are withdrawn: %v", in.Policy.BuildKinds, m.Releases)
			hold(about)
		case !m.IsDTK() && !builtFrom(dtks[m.KernelKey()]):
			// A consumer's image is only ever built FROM a promoted DTK.
		case !m.IsDTK() && kind.NeedsKernelFiles && !kernelFilesKnown(dtks[m.KernelKey()]):
			// Not before the pass knows whether the DTK carries the kernel's
			// files its modules are checked against.
		case !m.IsDTK() && kind.NeedsKernelFiles && len(dtks[m.KernelKey()].KernelFiles.Missing) > 0:
			about.Reason = KernelFilesMissing(dtks[m.KernelKey()])
			hold(about)
		case !in.Now.Before(m.NextAttemptAt):
			b := about
			b.Type, b.Releases, b.Image, b.Reason = ActionBuild, m.Releases, stagingRef, "new kernel"
			switch {
			case m.Attempts > 0:
				b.Reason = fmt.Sprintf("retry %d: %s", m.Attempts+1, m.Reason)
			case !m.IsDTK():
				b.Reason = "DTK promoted: " + m.DTKImage
			}
			buildable = append(buildable, b)
		}
		if !promotable(m, kind) {
			continue
		}
		repos := append([]string{kind.Target.Repository}, kind.Target.Mirrors...)
		for i, repo := range repos {
			ref := repo + ":" + refTag(kernelRef)
			w := want{m: m, release: first(m.Releases), kind: ledger.TagKernel, after: kernelRef, rank: 1}
			if i == 0 {
				if m.Adopted {
					// Its kernel tag holds it already, and is not dtkbot's to
					// write (nor to record as a promotion).
					visible[ref] = true
					continue
				}
				w.after, w.rank = "", 0
			}
			desired[ref] = append(desired[ref], w)
		}
		for _, v := range m.Releases {
			rel := releases[v+"/"+m.Arch]
			if rel.Version != "" && !in.Policy.tagged(rel) {
				continue
			}
			data, ok := tagData(m, rel, v)
			if !ok {
				continue
			}
			for _, tmpl := range kind.Target.ReleaseTags {
				tag, err := RenderTag(tmpl, data)
				if err != nil {
					r := about
					r.Release, r.Reason = v, err.Error()
					hold(r)
					continue
				}
				for _, repo := range repos {
					desired[repo+":"+tag] = append(desired[repo+":"+tag], want{m: m, release: v, kind: ledger.TagRelease, after: kernelRef, rank: 2})
				}
			}
			if rel.PreRelease() || !version.IsGA(v) {
				continue // floating tags follow GA releases only
			}
			for _, tmpl := range kind.Target.FloatingTags {
				tag, err := RenderTag(tmpl, data)
				if err != nil {
					continue
				}
				for _, repo := range repos {
					ref := repo + ":" + tag
					cur, ok := floating[ref]
					switch {
					case !ok || version.Newer(v, cur.release):
						floating[ref] = want{m: m, release: v, kind: ledger.TagFloating, after: kernelRef, rank: 3}
						floatingConflict[ref] = false
					case cur.release == v && cur.m.Key() != m.Key():
						floatingConflict[ref] = true // two streams (or arches) of one release
					}
				}
			}
		}
	}

	var promotes []want
	for _, ref := range sortedKeys(desired) {
		ws := desired[ref]
		owner := ws[0]
		if slices.ContainsFunc(ws[1:], func(w want) bool { return w.m.Key() != owner.m.Key() }) {
			hold(Action{Release: owner.release, Tag: ref, Consumer: owner.m.Consumer,
				Reason: fmt.Sprintf("tag %s would name %d different images: add {{.Stream}}, {{.StreamSuffix}} or {{.Arch}} to the release tags", ref, len(ws))})
			continue
		}
		visible[ref] = true
		if p, ok := in.Promoted[ref]; ok && p.Digest == owner.m.ImageDigest {
			continue
		}
		owner.ref = ref
		promotes = append(promotes, owner)
	}
	for _, ref := range sortedKeys(floating) {
		w := floating[ref]
		if floatingConflict[ref] {
			hold(Action{Release: w.release, Tag: ref, Consumer: w.m.Consumer,
				Reason: fmt.Sprintf("floating tag %s would name two images of %s: add {{.StreamSuffix}} or {{.Arch}} to the floating tags", ref, w.release)})
			continue
		}
		visible[ref] = true
		if p, ok := in.Promoted[ref]; ok && (p.Digest == w.m.ImageDigest || version.Newer(p.Release, w.release)) {
			continue // already there, or a newer release holds it: floating tags only move forward
		}
		w.ref = ref
		promotes = append(promotes, w)
	}

	// A staging reference is never a tag consumers read: a build pushed
	// there would be visible before it is verified, and a promotion there
	// would be overwritten by the next build.
	for _, b := range buildable {
		if visible[b.Image] {
			b.Reason = fmt.Sprintf("the staging reference %s is also a tag consumers read: a build would be visible before it is verified (target.staging.tag)", b.Image)
			hold(b)
			continue
		}
		builds = append(builds, b)
	}
	sort.SliceStable(promotes, func(i, j int) bool {
		a, b := promotes[i], promotes[j]
		if a.m.Key() != b.m.Key() {
			return a.m.Key() < b.m.Key()
		}
		return a.rank < b.rank
	})
	var promotions []Action
	for _, w := range promotes {
		a := promoteAction(w)
		if key, ok := staging[a.Tag]; ok {
			hold(Action{Release: a.Release, Tag: a.Tag, Consumer: a.Consumer, KernelKey: a.KernelKey,
				Reason: fmt.Sprintf("tag %s is the staging reference of %s: not promoted there", a.Tag, key)})
			continue
		}
		promotions = append(promotions, a)
	}
	sort.SliceStable(holds, func(i, j int) bool { return version.Compare(holds[i].Release, holds[j].Release) < 0 })
	out := append(holds, builds...)
	return append(out, promotions...)
}

func promoteAction(w want) Action {
	m := w.m
	return Action{Type: ActionPromote, Kernel: m.Kernel, Stream: m.Stream, Arch: m.Arch, Release: w.release, Tag: w.ref,
		Image: m.PinnedImage(), KernelKey: m.KernelKey(), Consumer: m.Consumer, Kind: w.kind, After: w.after}
}

// kernelFilesKnown reports whether it is known whether dtk's current image
// carries the kernel's files.
func kernelFilesKnown(dtk ledger.Image) bool {
	_, ok := dtk.KernelFilesOf()
	return ok
}

// KernelFilesMissing says why no consumer that needs the kernel's files is
// built FROM dtk: the one reason, decided once per DTK image.
func KernelFilesMissing(dtk ledger.Image) string {
	return fmt.Sprintf("the DTK %s has no %s: no consumer image is built FROM it that would be checked against them (verify.abi: true; "+
		"dtkbot's DTK recipe copies them: a recipe of your own? or set the consumer's verify.abi: false)", dtk.PinnedImage(), strings.Join(dtk.KernelFiles.Missing, ", "))
}

// builtFrom reports whether a consumer's image may be built FROM dtk: the
// DTK is promoted and pinned by digest.
func builtFrom(dtk ledger.Image) bool {
	return dtk.State == ledger.StatePromoted && dtk.ImageDigest != ""
}

// tagData is the template data for image m promoted for release version v.
func tagData(m ledger.Image, r ledger.Release, v string) (TagData, bool) {
	d := TagData{Kernel: m.Kernel, KernelFull: m.KernelFull, RTKernel: m.RTKernel, RHEL: m.RHEL,
		Release: v, Minor: version.Minor(v), Arch: m.Arch, Stream: m.Stream}
	for i, s := range r.Streams {
		if s.Stream == m.Stream && s.Kernel == m.Kernel {
			if i > 0 {
				d.StreamSuffix = "-" + s.Stream
			}
			return d, true
		}
	}
	return d, r.Version == "" // a release not in the input still gets tags
}

// refTag is the tag of repository:tag.
func refTag(ref string) string { return ref[len(ledger.Repository(ref))+1:] }

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Notifications are the notify actions due: every kernel (its DTK image)
// whose notice (its state, releases, image, and what hash adds) changed
// since it was last announced.
func Notifications(dtks []ledger.Image, hash func(ledger.Image) string) []Action {
	var out []Action
	for _, k := range dtks {
		if k.NotifiedHash != hash(k) {
			out = append(out, Action{Type: ActionNotify, Kernel: k.Kernel, Stream: k.Stream, Arch: k.Arch,
				Releases: k.Releases, Image: k.Image, Reason: k.State, KernelKey: k.KernelKey()})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KernelKey < out[j].KernelKey })
	return out
}
