package plan

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/version"
)

// want is a tag the plan would have name an image.
type want struct {
	m       ledger.Image
	release string
	kind    string
	after   string // the kernel tag it waits for
	rank    int    // order within the image: its kernel tag first
	ref     string // the tag, once chosen
}

// tagPlan is what the images want of the tags: who should own each, and
// what consumers read.
type tagPlan struct {
	desired          map[string][]want // ref -> the images that should own it
	floating         map[string]want
	floatingConflict map[string]bool
	visible          map[string]bool   // every kernel tag and wanted tag: what consumers read
	staging          map[string]string // staging ref -> image key
}

// lifecycle plans, from the images' records, what each needs next: a build
// for each new image (once its backoff is over, a consumer's only FROM a
// promoted DTK), holds for what must not be built, and the promotions of
// every image that may be promoted, kernel tag first.
func (p *planner) lifecycle(images []ledger.Image) {
	releases := map[string]ledger.Release{}
	for _, r := range p.in.Releases {
		releases[r.Version+"/"+r.Arch] = r
	}
	dtks := map[string]ledger.Image{}
	for _, m := range images {
		if m.IsDTK() {
			dtks[m.Key()] = m
		}
	}
	t := &tagPlan{desired: map[string][]want{}, floating: map[string]want{}, floatingConflict: map[string]bool{},
		visible: map[string]bool{}, staging: map[string]string{}}
	var buildable []Action
	for _, m := range images {
		kind, ok := p.in.kindOf(m)
		if !ok {
			continue // a kind no longer configured: nothing is done about it
		}
		kernelRef, stagingRef, ok := p.refs(m, kind)
		if !ok {
			continue
		}
		t.visible[kernelRef] = true
		t.staging[stagingRef] = m.Key()
		if b, ok := p.build(m, kind, releases, dtks[m.DTKKey()], kernelRef, stagingRef); ok {
			buildable = append(buildable, b)
		}
		if promotable(m, kind) {
			p.wantTags(t, m, kind, kernelRef, releases)
		}
	}
	promotes := p.owners(t)
	// A staging reference is never a tag consumers read: a build pushed
	// there would be visible before it is verified, and a promotion there
	// would be overwritten by the next build.
	for _, b := range buildable {
		if t.visible[b.Image] {
			b.Reason = fmt.Sprintf("the staging reference %s is also a tag consumers read: a build would be visible before it is verified (target.staging.tag)", b.Image)
			p.hold(b)
			continue
		}
		p.act(&p.builds, b)
	}
	for _, w := range promotes {
		a := promoteAction(w)
		if key, ok := t.staging[a.Tag]; ok {
			p.hold(Action{Release: a.Release, Tag: a.Tag, Consumer: a.Consumer, KernelKey: a.KernelKey,
				Reason: fmt.Sprintf("tag %s is the staging reference of %s: not promoted there", a.Tag, key)})
			continue
		}
		p.act(&p.tags, a)
	}
}

// refs renders an image's kernel tag and staging reference, or holds the
// image with the reason they cannot be.
func (p *planner) refs(m ledger.Image, kind Kind) (kernelRef, stagingRef string, ok bool) {
	kernelRef, err := KernelImage(kind.Target, m)
	if err == nil {
		stagingRef, err = StagingImage(kind.Target, m)
	}
	if err != nil {
		a := about(m)
		a.Reason = err.Error()
		p.hold(a)
		return "", "", false
	}
	return kernelRef, stagingRef, true
}

// build decides whether new image m is built now (the build, to be checked
// against the tags consumers read), or held, or waits.
func (p *planner) build(m ledger.Image, kind Kind, releases map[string]ledger.Release, dtk ledger.Image, kernelRef, stagingRef string) (Action, bool) {
	a := about(m)
	switch {
	case m.State == ledger.StateFailed:
		a.Reason = "build failed: " + m.Reason
		p.hold(a)
	case m.State != ledger.StateNew:
	case m.IsDTK() && !slices.ContainsFunc(m.Releases, func(v string) bool {
		r, ok := releases[v+"/"+m.Arch]
		return !ok || p.in.Policy.drives(r) // a release not in the input (another filter) may
	}):
		a.Reason = fmt.Sprintf("shipped only by pre-releases that drive no build (prerelease.build: %v) or are withdrawn: %v", p.in.Policy.BuildKinds, m.Releases)
		p.hold(a)
	case !m.IsDTK() && !builtFrom(dtk):
		// A consumer's image is only ever built FROM a promoted DTK.
	case !m.IsDTK() && kind.NeedsKernelFiles && !kernelFilesKnown(dtk):
		// Not before the pass knows whether the DTK carries the kernel's
		// files its modules are checked against.
	case !m.IsDTK() && m.Variant != ledger.VariantDefault && !dtk.VariantsKnown():
		// Not before the pass knows which variants' kernels the DTK carries.
	case !m.IsDTK() && m.Variant != ledger.VariantDefault && !carries(dtk, m.Variant, m.KernelFull):
		// The DTK it follows (rebuilt) no longer carries its kernel.
		a.Reason = fmt.Sprintf("the DTK %s does not carry the %s kernel %s", dtk.PinnedImage(), m.Variant, m.KernelFull)
		p.hold(a)
	case !m.IsDTK() && kind.NeedsKernelFiles && len(variantFiles(dtk, m.Variant).Missing) > 0:
		a.Reason = KernelFilesMissing(dtk, variantFiles(dtk, m.Variant))
		p.hold(a)
	case !p.in.Now.Before(m.NextAttemptAt):
		a.Type, a.Releases, a.Image, a.KernelTag, a.Reason = ActionBuild, m.Releases, stagingRef, kernelRef, "new kernel"
		a.IfFailed = kind.Retries.after(m.Attempts+1, p.in.Now)
		switch {
		case m.Attempts > 0:
			a.Reason = fmt.Sprintf("retry %d: %s", m.Attempts+1, m.Reason)
		case !m.IsDTK():
			a.Reason = "DTK promoted: " + m.DTKImage
		}
		return a, true
	}
	return Action{}, false
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

// wantTags adds the tags m should have: its kernel tag (and its copies in
// the mirrors), its releases' tags, the floating tags of its GA releases.
func (p *planner) wantTags(t *tagPlan, m ledger.Image, kind Kind, kernelRef string, releases map[string]ledger.Release) {
	repos := append([]string{kind.Target.Repository}, kind.Target.Mirrors...)
	for i, repo := range repos {
		ref := repo + ":" + refTag(kernelRef)
		w := want{m: m, release: first(m.Releases), kind: ledger.TagKernel, after: kernelRef, rank: 1}
		if i == 0 {
			if m.Adopted {
				// Its kernel tag holds it already, and is not dtkbot's to
				// write (nor to record as a promotion).
				t.visible[ref] = true
				continue
			}
			w.after, w.rank = "", 0
		}
		t.desired[ref] = append(t.desired[ref], w)
	}
	for _, v := range m.Releases {
		rel := releases[v+"/"+m.Arch]
		if rel.Version != "" && !p.in.Policy.tagged(rel) {
			continue
		}
		data, ok := tagData(m, rel, v)
		if !ok {
			continue
		}
		for _, tmpl := range kind.Target.ReleaseTags {
			tag, err := RenderTag(tmpl, data)
			if err != nil {
				r := about(m)
				r.Release, r.Reason = v, err.Error()
				p.hold(r)
				continue
			}
			for _, repo := range repos {
				t.desired[repo+":"+tag] = append(t.desired[repo+":"+tag], want{m: m, release: v, kind: ledger.TagRelease, after: kernelRef, rank: 2})
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
				t.float(repo+":"+tag, want{m: m, release: v, kind: ledger.TagFloating, after: kernelRef, rank: 3})
			}
		}
	}
}

// float offers floating tag ref to w: the newest GA release's image takes it.
func (t *tagPlan) float(ref string, w want) {
	cur, ok := t.floating[ref]
	switch {
	case !ok || version.Newer(w.release, cur.release):
		t.floating[ref] = w
		t.floatingConflict[ref] = false
	case cur.release == w.release && cur.m.Key() != w.m.Key():
		t.floatingConflict[ref] = true // two streams (or arches) of one release
	}
}

// owners decides who gets each wanted tag, holding a tag two images want,
// and lists the promotions still to make (not where dtkbot promoted them
// already), each image's kernel tag first.
func (p *planner) owners(t *tagPlan) []want {
	var promotes []want
	for _, ref := range sortedKeys(t.desired) {
		ws := t.desired[ref]
		owner := ws[0]
		if slices.ContainsFunc(ws[1:], func(w want) bool { return w.m.Key() != owner.m.Key() }) {
			p.hold(Action{Release: owner.release, Tag: ref, Consumer: owner.m.Consumer,
				Reason: fmt.Sprintf("tag %s would name %d different images: add {{.Stream}}, {{.StreamSuffix}} or {{.Arch}} to the release tags", ref, len(ws))})
			continue
		}
		t.visible[ref] = true
		if pr, ok := p.in.Promoted[ref]; ok && pr.Digest == owner.m.ImageDigest {
			continue
		}
		owner.ref = ref
		promotes = append(promotes, owner)
	}
	for _, ref := range sortedKeys(t.floating) {
		w := t.floating[ref]
		if t.floatingConflict[ref] {
			p.hold(Action{Release: w.release, Tag: ref, Consumer: w.m.Consumer,
				Reason: fmt.Sprintf("floating tag %s would name two images of %s: add {{.StreamSuffix}} or {{.Arch}} to the floating tags", ref, w.release)})
			continue
		}
		t.visible[ref] = true
		if pr, ok := p.in.Promoted[ref]; ok && (pr.Digest == w.m.ImageDigest || version.Newer(pr.Release, w.release)) {
			continue // already there, or a newer release holds it: floating tags only move forward
		}
		w.ref = ref
		promotes = append(promotes, w)
	}
	sort.SliceStable(promotes, func(i, j int) bool {
		a, b := promotes[i], promotes[j]
		if a.m.Key() != b.m.Key() {
			return a.m.Key() < b.m.Key()
		}
		return a.rank < b.rank
	})
	return promotes
}

func promoteAction(w want) Action {
	a := about(w.m)
	a.Type, a.Release, a.Tag, a.Image, a.Kind, a.After = ActionPromote, w.release, w.ref, w.m.PinnedImage(), w.kind, w.after
	return a
}

// kernelFilesKnown reports whether it is known whether dtk's current image
// carries the kernel's files.
func kernelFilesKnown(dtk ledger.Image) bool {
	_, ok := dtk.KernelFilesOf()
	return ok
}

// KernelFilesMissing says why no consumer that needs the kernel's files is
// built FROM dtk for kernel vk: the one reason, decided once per DTK image.
func KernelFilesMissing(dtk ledger.Image, vk ledger.VariantKernel) string {
	return fmt.Sprintf("the DTK %s has no %s for %s: no consumer image is built FROM it that would be checked against them (verify.abi: true; "+
		"dtkbot's DTK recipe copies them: a recipe of your own? or set the consumer's verify.abi: false)", dtk.PinnedImage(), strings.Join(vk.Missing, ", "), vk.KernelFull)
}

// variantFiles is what the check of dtk's files says of variant v's
// kernel (known: kernelFilesKnown).
func variantFiles(dtk ledger.Image, v string) ledger.VariantKernel {
	vk, _ := dtk.Carries(v)
	return vk
}

// carries reports whether dtk's current image carries variant v's kernel
// kernelFull.
func carries(dtk ledger.Image, v, kernelFull string) bool {
	vk, ok := dtk.Carries(v)
	return ok && vk.KernelFull == kernelFull
}

// builtFrom reports whether a consumer's image may be built FROM dtk: the
// DTK is promoted and pinned by digest.
func builtFrom(dtk ledger.Image) bool {
	return dtk.State == ledger.StatePromoted && dtk.ImageDigest != ""
}

// tagData is the template data for image m promoted for release version v.
func tagData(m ledger.Image, r ledger.Release, v string) (TagData, bool) {
	d := TagData{Kernel: m.Kernel, KernelFull: m.KernelFull, RTKernel: m.RTKernel, RHEL: m.RHEL,
		Release: v, Minor: version.Minor(v), Arch: m.Arch, Stream: m.Stream,
		Variant: ledger.VariantName(m.Variant), VariantSuffix: variantSuffix(m.Variant)}
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
