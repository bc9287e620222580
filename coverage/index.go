// Package coverage answers "which OpenShift releases are covered, with which
// kernel, and what is still missing or broken?" from a state snapshot: the
// kernel index (release → stream → kernel → DTK image by digest, and kernel →
// releases) that the daemon serves as /api/v1/releases and /api/v1/kernels,
// `dtkbot report` prints, and the coverage page renders.
//
// It reads nothing but the snapshot it is given: no network, no clock but
// the one passed in.
package coverage

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/dtkbot/dtkbot/kmm"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/redact"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/version"
)

// Stream and release states, as the index names them.
const (
	StatePromoted = "promoted" // at its kernel tag and its release tags
	StateVerified = "verified" // built and verified, promotion under way
	StateBuilt    = "built"    // at the staging tag, not verified yet
	StateBuilding = "building" // a build was requested
	StatePending  = "pending"  // new, or waiting to retry
	StateFailed   = "failed"   // no more attempts (the reason says why)
	StateHeld     = "held"     // never built from: broken, inconsistent, or unsigned
	StateUnknown  = "unknown"  // the kernel cannot be known cheaply (4.1-4.7)
	// StateMissing is a consumer's image of a kernel variant the release
	// ships (its RT kernel) that its DTK does not carry: none can be built.
	StateMissing = "missing"
)

// Kinds are the kinds of releases (version.Kind), GA first.
var Kinds = []string{version.KindGA, version.KindRC, version.KindEC, version.KindFC, version.KindNightly, version.KindCI, version.KindOther}

// States lists them in the order pages show them.
var States = []string{StatePromoted, StateVerified, StateBuilt, StateBuilding, StatePending, StateFailed, StateMissing, StateHeld, StateUnknown}

// Index is the whole kernel index.
type Index struct {
	GeneratedAt time.Time          `json:"generated_at"`
	LastPass    *ledger.PassRecord `json:"last_pass,omitempty"`
	Releases    []Release          `json:"releases"`
	Kernels     []Kernel           `json:"kernels"`
}

// ReleasesDoc is GET /api/v1/releases.
type ReleasesDoc struct {
	GeneratedAt time.Time `json:"generated_at"`
	Releases    []Release `json:"releases"`
}

// KernelsDoc is GET /api/v1/kernels.
type KernelsDoc struct {
	GeneratedAt time.Time `json:"generated_at"`
	Kernels     []Kernel  `json:"kernels"`
}

// Release is one payload read for one arch (or held before it could be).
type Release struct {
	Release  string   `json:"release"`
	Arch     string   `json:"arch"`
	Channels []string `json:"channels"`
	Digest   string   `json:"digest"`
	Pullspec string   `json:"pullspec"`
	// Kind is what it is (ga, rc, ec, nightly, ...), Sources where it was
	// found (graph channels, release-controller streams and phases, the
	// config).
	Kind    string   `json:"kind"`
	Sources []string `json:"sources"`
	// Signature is the signature check's outcome ("verified by ...").
	Signature string `json:"signature,omitempty"`
	// FirstSeen and TaggedAt bound its lead time; Withdrawn says why a
	// pre-release no longer counts.
	FirstSeen time.Time `json:"first_seen,omitzero"`
	TaggedAt  time.Time `json:"tagged_at,omitzero"`
	Withdrawn string    `json:"withdrawn,omitempty"`
	// State and Reason are set for a release held as a whole (its content
	// is broken, or its signature does not verify in strict mode).
	State   string   `json:"state,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	Streams []Stream `json:"streams"`
}

// Stream is one OS stream of a release and the DTK image for its kernel.
type Stream struct {
	Stream       string `json:"stream"`
	Kernel       string `json:"kernel"`
	KernelFull   string `json:"kernel_full"`
	RTKernel     string `json:"rt_kernel"`
	RHELVersion  string `json:"rhel_version"`
	RHCOSVersion string `json:"rhcos_version"`
	State        string `json:"state"`
	Reason       string `json:"reason,omitempty"`
	// Image is the DTK image by digest (repository@sha256:...).
	Image string `json:"image,omitempty"`
	// Tags are the references promoted onto it for this release (the
	// kernel tag, release tags, floating tags, in every repository).
	Tags     []string `json:"tags"`
	IssueURL string   `json:"issue_url,omitempty"`
	PRURL    string   `json:"pr_url,omitempty"`
	// Attempts and Since say how a build goes (since: when it was asked).
	Attempts int       `json:"attempts,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	// Consumers are the images built FROM this stream's DTK, one per
	// consumer and kernel variant it asks for (a variant the release ships
	// without an image is one too: pending, or missing).
	Consumers []ConsumerImage `json:"consumers,omitempty"`
	// Variants are the kernels of the stream's variants a node may boot
	// (default, rt, 64k), and Covered says whether the DTK and every
	// consumer's image of every variant it asks for are promoted.
	Variants []VariantKernel `json:"variants,omitempty"`
	Covered  bool            `json:"covered"`
	// ABI are the consumers' ABI verdicts on the kernel.
	ABI []ABIVerdict `json:"abi,omitempty"`
}

// VariantKernel is one variant's kernel of a stream: its uname -r, and
// how many consumers' images of it are wanted and promoted.
type VariantKernel struct {
	Variant    string `json:"variant"`
	KernelFull string `json:"kernel_full"`
	Wanted     int    `json:"wanted"`
	Promoted   int    `json:"promoted"`
}

// ABIVerdict is the ledger's verdict on whether a consumer's newest
// modules, built for another kernel (From), would load on this one, with
// the verdict in a line, as people read it.
type ABIVerdict struct {
	ledger.ABIVerdict
	Verdict string `json:"verdict"`
}

func abiVerdicts(k ledger.Image) []ABIVerdict {
	var out []ABIVerdict
	for _, v := range k.ABI {
		out = append(out, ABIVerdict{ABIVerdict: v, Verdict: redact.Text(v.String())})
	}
	return out
}

// ConsumerImage is one consumer's image (a kmod image, a driver
// container) for one kernel.
type ConsumerImage struct {
	Consumer string `json:"consumer"`
	// Variant is the kernel variant the image is built for (default, rt,
	// 64k), KernelFull that variant's uname -r.
	Variant    string `json:"variant"`
	KernelFull string `json:"kernel_full,omitempty"`
	State      string `json:"state"`
	Reason     string `json:"reason,omitempty"`
	// Image is the image by digest once built; KernelTag where it is (or
	// will be) promoted; Tags where it has been.
	Image     string    `json:"image,omitempty"`
	KernelTag string    `json:"kernel_tag,omitempty"`
	Tags      []string  `json:"tags"`
	DTKImage  string    `json:"dtk_image,omitempty"` // what it is built FROM
	Attempts  int       `json:"attempts,omitempty"`
	Rejected  int       `json:"rejected,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	// PromotedAt is when it first reached its kernel tag.
	PromotedAt time.Time `json:"promoted_at,omitzero"`
}

// Kernel is one kernel of one stream and arch, and the releases shipping it.
type Kernel struct {
	Kernel      string    `json:"kernel"`
	KernelFull  string    `json:"kernel_full"`
	Stream      string    `json:"stream"`
	Arch        string    `json:"arch"`
	RTKernel    string    `json:"rt_kernel"`
	RHELVersion string    `json:"rhel_version"`
	State       string    `json:"state"`
	Reason      string    `json:"reason,omitempty"`
	Image       string    `json:"image,omitempty"`
	KernelTag   string    `json:"kernel_tag,omitempty"`
	Tags        []string  `json:"tags"`
	Releases    []string  `json:"releases"`
	Attempts    int       `json:"attempts,omitempty"`
	Rejected    int       `json:"rejected,omitempty"`
	FirstSeen   time.Time `json:"first_seen"`
	// FirstSource is the release (and feed) it was first seen in;
	// PromotedAt when its image first reached its kernel tag; GAFirstSeen
	// when the first GA release shipping it was seen.
	FirstSource string    `json:"first_source,omitempty"`
	PromotedAt  time.Time `json:"promoted_at,omitzero"`
	GAFirstSeen time.Time `json:"ga_first_seen,omitzero"`
	UpdatedAt   time.Time `json:"updated_at"`
	Since       time.Time `json:"since,omitzero"`
	IssueURL    string    `json:"issue_url,omitempty"`
	PRURL       string    `json:"pr_url,omitempty"`
	// Consumers are the images built FROM its DTK; KMM the manifests for
	// it (preflights once the DTK is promoted, a kernel mapping for each
	// consumer image promoted).
	Consumers []ConsumerImage `json:"consumers"`
	KMM       kmm.Kernel      `json:"kmm"`
	// ABI are the consumers' ABI verdicts on this kernel.
	ABI []ABIVerdict `json:"abi,omitempty"`
}

// Consumers says whether any kernel has consumer images.
func (ix *Index) Consumers() bool {
	for _, k := range ix.Kernels {
		if len(k.Consumers) > 0 {
			return true
		}
	}
	return false
}

// Releases is the releases document of the index.
func (ix *Index) ReleasesDoc() ReleasesDoc {
	return ReleasesDoc{GeneratedAt: ix.GeneratedAt, Releases: ix.Releases}
}

// KernelsDoc is the kernels document of the index.
func (ix *Index) KernelsDoc() KernelsDoc {
	return KernelsDoc{GeneratedAt: ix.GeneratedAt, Kernels: ix.Kernels}
}

// KernelState is how the index names a ledger entry's state.
func KernelState(k ledger.Image) string {
	switch k.State {
	case ledger.StatePromoted:
		return StatePromoted
	case ledger.StateVerified:
		return StateVerified
	case ledger.StateBuilt:
		return StateBuilt
	case ledger.StateBuildRequested:
		return StateBuilding
	case ledger.StateFailed:
		return StateFailed
	}
	return StatePending
}

// Options are the config's part of the index: the kernel variants each
// consumer asks for (ledger.Variant*, "" the default kernel; a consumer
// not named asks for the default kernel's, as do its images' variants).
type Options struct {
	Variants map[string][]string
}

// Build makes the index of a snapshot, newest releases first.
func Build(snap *state.Snapshot, now time.Time, opts Options) *Index {
	ix := &Index{GeneratedAt: now, LastPass: snap.LastPass, Releases: []Release{}, Kernels: []Kernel{}}
	kernels := map[string]ledger.Image{}
	for _, k := range snap.Kernels {
		kernels[k.Key()] = k
	}
	// Tags by kernel: the promotions naming its key, or (older records)
	// its digest.
	byDigest := map[string]string{}
	for _, k := range snap.Kernels {
		if k.ImageDigest != "" {
			byDigest[k.ImageDigest] = k.Key()
		}
	}
	tagsOf := map[string][]ledger.Promotion{} // by kernel key, or consumer/kernel key
	for _, p := range snap.Tags {
		key := p.KernelKey
		if key == "" {
			key = byDigest[p.Digest]
		}
		if p.Consumer != "" {
			key = p.Consumer + "/" + key
		}
		tagsOf[key] = append(tagsOf[key], p)
	}
	for key := range tagsOf {
		sort.Slice(tagsOf[key], func(i, j int) bool { return tagsOf[key][i].Ref < tagsOf[key][j].Ref })
	}
	buildsOf := map[string][]ledger.Image{} // by DTK key: every variant's
	for _, c := range snap.Consumers {
		buildsOf[c.DTKKey()] = append(buildsOf[c.DTKKey()], c)
	}
	consumers := map[string][]ConsumerImage{}
	variants := map[string][]VariantKernel{}
	for _, k := range snap.Kernels {
		consumers[k.Key()], variants[k.Key()] = consumersOf(k, buildsOf[k.Key()], tagsOf, opts)
	}
	withdrawn := map[string]bool{}
	for _, r := range snap.Releases {
		if r.Withdrawn != "" {
			withdrawn[r.Version+"/"+r.Arch] = true
		}
	}

	// When each GA release was first seen, by version/arch.
	gaSeen := map[string]time.Time{}
	for _, r := range snap.Releases {
		if !r.PreRelease() {
			gaSeen[r.Version+"/"+r.Arch] = r.FirstSeen
		}
	}
	for _, k := range snap.Kernels {
		n := snap.Notices[k.Key()]
		e := Kernel{Kernel: k.Kernel, KernelFull: k.KernelFull, Stream: k.Stream, Arch: k.Arch, RTKernel: k.RTKernel,
			RHELVersion: k.RHEL, State: KernelState(k), Reason: redact.Text(k.Reason), KernelTag: k.Image, Tags: []string{},
			Releases: append([]string{}, k.Releases...), Attempts: k.Attempts, Rejected: len(k.Rejections),
			FirstSeen: k.FirstSeen, FirstSource: k.FirstSource, PromotedAt: k.PromotedAt,
			UpdatedAt: k.UpdatedAt, IssueURL: n.IssueURL, PRURL: n.PRURL}
		for _, v := range k.Releases {
			if t, ok := gaSeen[v+"/"+k.Arch]; ok && (e.GAFirstSeen.IsZero() || t.Before(e.GAFirstSeen)) {
				e.GAFirstSeen = t
			}
		}
		if k.State == ledger.StateBuildRequested {
			e.Since = k.BuildRequestedAt
		}
		if k.ImageDigest != "" {
			e.Image = k.PinnedImage()
		}
		for _, p := range tagsOf[k.Key()] {
			e.Tags = append(e.Tags, p.Ref)
		}
		e.Consumers = append([]ConsumerImage{}, consumers[k.Key()]...)
		e.ABI = abiVerdicts(k)
		e.KMM = kmm.ForKernel(k, buildsOf[k.Key()], func(r string) bool { return withdrawn[r+"/"+k.Arch] })
		ix.Kernels = append(ix.Kernels, e)
	}
	sort.Slice(ix.Kernels, func(i, j int) bool {
		a, b := ix.Kernels[i], ix.Kernels[j]
		if c := version.Compare(first(b.Releases), first(a.Releases)); c != 0 {
			return c < 0
		}
		return a.Stream+a.Arch+a.Kernel < b.Stream+b.Arch+b.Kernel
	})

	for _, r := range snap.Releases {
		e := Release{Release: r.Version, Arch: r.Arch, Channels: nonNil(r.Channels), Digest: r.Digest, Pullspec: r.Pullspec,
			Kind: r.Kind, Sources: []string{}, Signature: r.Signature, FirstSeen: r.FirstSeen, TaggedAt: r.TaggedAt,
			Withdrawn: r.Withdrawn, Streams: []Stream{}}
		if e.Kind == "" {
			e.Kind = version.Kind(r.Version)
		}
		for _, s := range r.Sources {
			e.Sources = append(e.Sources, s.String())
		}
		for _, s := range r.Streams {
			st := streamOf(r, s, kernels, tagsOf, snap.Notices)
			key := ledger.ImageID{Stream: s.Stream, Arch: r.Arch, Kernel: s.Kernel}.Key()
			st.Consumers, st.Variants = consumers[key], variants[key]
			st.Covered = st.State == StatePromoted && !slices.ContainsFunc(st.Consumers, func(c ConsumerImage) bool { return c.State != StatePromoted })
			st.ABI = abiVerdicts(kernels[key])
			e.Streams = append(e.Streams, st)
		}
		ix.Releases = append(ix.Releases, e)
	}
	for _, h := range snap.Held {
		ix.Releases = append(ix.Releases, Release{Release: h.Version, Arch: h.Arch, Channels: nonNil(h.Channels), Digest: h.Digest,
			Pullspec: h.Pullspec, Kind: version.Kind(h.Version), Sources: []string{}, FirstSeen: h.Since,
			State: StateHeld, Reason: redact.Text(h.Kind + ": " + h.Reason), Streams: []Stream{}})
	}
	sort.SliceStable(ix.Releases, func(i, j int) bool {
		a, b := ix.Releases[i], ix.Releases[j]
		if c := version.Compare(b.Release, a.Release); c != 0 {
			return c < 0
		}
		return a.Arch < b.Arch
	})
	return ix
}

func streamOf(r ledger.Release, s ledger.ReleaseShips, kernels map[string]ledger.Image, tagsOf map[string][]ledger.Promotion, notices map[string]ledger.Notice) Stream {
	out := Stream{Stream: s.Stream, Kernel: s.Kernel, KernelFull: s.KernelFull, RTKernel: s.RTKernel, RHELVersion: s.RHEL,
		RHCOSVersion: s.RHCOS, Tags: []string{}}
	switch {
	case s.Held != "" && s.Kernel == "":
		out.State, out.Reason = StateUnknown, redact.Text(s.Held)
		return out
	case s.Held != "":
		out.State, out.Reason = StateHeld, redact.Text(s.Held)
		return out
	}
	key := ledger.ImageID{Stream: s.Stream, Arch: r.Arch, Kernel: s.Kernel}.Key()
	k, ok := kernels[key]
	if !ok {
		out.State = StateUnknown
		return out
	}
	if out.RTKernel == "" {
		out.RTKernel = k.RTKernel
	}
	if out.RHELVersion == "" {
		out.RHELVersion = k.RHEL
	}
	out.State, out.Reason, out.Attempts = KernelState(k), redact.Text(k.Reason), k.Attempts
	if k.State == ledger.StateBuildRequested {
		out.Since = k.BuildRequestedAt
	}
	if k.ImageDigest != "" && (k.State == ledger.StatePromoted || k.State == ledger.StateVerified || k.State == ledger.StateBuilt) {
		out.Image = k.PinnedImage()
	}
	for _, p := range tagsOf[key] {
		if p.Kind == ledger.TagKernel || p.Release == r.Version {
			out.Tags = append(out.Tags, p.Ref)
		}
	}
	n := notices[key]
	out.IssueURL, out.PRURL = n.IssueURL, n.PRURL
	return out
}

// consumersOf lists the consumers' images of DTK k's kernel, one per
// consumer and variant: those there are, and those asked for without an
// image (pending until the DTK is promoted and known to carry the variant;
// missing when the release ships the variant's kernel and the DTK does not
// carry it); and the variants' kernels with what is wanted and promoted.
func consumersOf(k ledger.Image, builds []ledger.Image, tagsOf map[string][]ledger.Promotion, opts Options) ([]ConsumerImage, []VariantKernel) {
	kernels := []VariantKernel{{Variant: ledger.VariantName(ledger.VariantDefault), KernelFull: k.KernelFull}}
	full := map[string]string{ledger.VariantDefault: k.KernelFull}
	for _, v := range []string{ledger.VariantRT, ledger.Variant64K} {
		if vk, ok := k.Carries(v); ok {
			full[v] = vk.KernelFull
		} else if (v == ledger.VariantRT && k.RTKernel != "") || (v == ledger.Variant64K && k.Ships64K()) {
			full[v] = "" // shipped (the payload's RT kernel; kernel-64k), not carried
		} else {
			continue
		}
		kernels = append(kernels, VariantKernel{Variant: v, KernelFull: full[v]})
	}
	have := map[string]bool{}
	var out []ConsumerImage
	for _, c := range builds {
		have[c.Key()] = true
		out = append(out, consumerImage(c, tagsOf[c.Key()]))
	}
	filesKnown := k.VariantsKnown()
	for _, name := range slices.Sorted(maps.Keys(opts.Variants)) {
		for _, v := range opts.Variants[name] {
			f, ships := full[v]
			id := k.ID()
			id.Consumer, id.Variant = name, v
			if !ships || have[id.Key()] {
				continue
			}
			ci := ConsumerImage{Consumer: name, Variant: ledger.VariantName(v), KernelFull: f, State: StatePending, Tags: []string{}}
			if v != ledger.VariantDefault && f == "" && filesKnown {
				ci.State, ci.Reason = StateMissing, fmt.Sprintf("the release ships a %s kernel and its DTK does not carry it", v)
				if v == ledger.VariantRT {
					ci.Reason = fmt.Sprintf("the release ships an rt kernel (%s) and its DTK does not carry it", k.RTKernel)
				}
			}
			out = append(out, ci)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Consumer != out[j].Consumer {
			return out[i].Consumer < out[j].Consumer
		}
		return slices.Index(ledger.VariantNames, out[i].Variant) < slices.Index(ledger.VariantNames, out[j].Variant)
	})
	for i := range kernels {
		for _, c := range out {
			if c.Variant == kernels[i].Variant {
				kernels[i].Wanted++
				if c.State == StatePromoted {
					kernels[i].Promoted++
				}
			}
		}
	}
	return out, kernels
}

func consumerImage(c ledger.Image, tags []ledger.Promotion) ConsumerImage {
	out := ConsumerImage{Consumer: c.Consumer, Variant: ledger.VariantName(c.Variant), KernelFull: c.KernelFull, State: KernelState(c), Reason: redact.Text(c.Reason), KernelTag: c.Image, Tags: []string{},
		DTKImage: c.DTKImage, Attempts: c.Attempts, Rejected: len(c.Rejections), PromotedAt: c.PromotedAt}
	if c.ImageDigest != "" && (c.State == ledger.StatePromoted || c.State == ledger.StateVerified || c.State == ledger.StateBuilt) {
		out.Image = c.PinnedImage()
	}
	if c.State == ledger.StateBuildRequested {
		out.Since = c.BuildRequestedAt
	}
	for _, p := range tags {
		out.Tags = append(out.Tags, p.Ref)
	}
	return out
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Minor is "4.16" for "4.16.15" (and for "4.16.0-rc.1").
func Minor(v string) string { return version.Minor(v) }

// Filter narrows the releases of an index; empty fields match everything.
type Filter struct {
	Channel string
	Minor   string
	State   string
	Kind    string
	// Release and Kernel (VERSION-RELEASE) are where the update graph's
	// risks link: one release, the releases shipping one kernel.
	Release string
	Kernel  string
}

// Match reports whether a release passes the filter: its channel, minor,
// version and kernel, and a state of it or of one of its streams.
func (f Filter) Match(r Release) bool {
	if f.Channel != "" && !slices.Contains(r.Channels, f.Channel) {
		return false
	}
	if f.Release != "" && r.Release != f.Release {
		return false
	}
	if f.Kernel != "" && !slices.ContainsFunc(r.Streams, func(s Stream) bool { return s.Kernel == f.Kernel }) {
		return false
	}
	if f.Minor != "" && Minor(r.Release) != f.Minor {
		return false
	}
	if f.Kind != "" && r.Kind != f.Kind {
		return false
	}
	if f.State == "" || r.State == f.State {
		return true
	}
	for _, s := range r.Streams {
		// a stream's DTK, or a consumer's image of it (a variant's image
		// missing, one failed while the DTK is promoted)
		if s.State == f.State || slices.ContainsFunc(s.Consumers, func(c ConsumerImage) bool { return c.State == f.State }) {
			return true
		}
	}
	return false
}
