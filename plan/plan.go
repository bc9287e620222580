// Package plan decides everything dtkbot does, and does nothing: its
// functions are pure, from what the pass read (releases, the ledger's
// images and promoted tags, what a round saw in the registry and asked
// the build backends, now) to what changes next. Plan, for every kind of
// image alike (a kernel's DTK, each consumer's image FROM it), moves each
// image's record on from what was seen (found built, pinned to its arch,
// a build that never appeared or ended without pushing, retried after a
// backoff or given up), and plans the actions: build each image once per
// kernel, to its staging reference (asking again for an attempt recorded
// and never acknowledged); verify what was found (rejecting, unread, an
// image whose verification killed the process too often); promote each
// verified image to its kernel tag, then its release, floating and mirror
// tags; hold what must not be built or tagged. Payloads, Releases,
// Withdrawals, Audit, ABIDue and Notifications decide the rest of the
// pass: which payloads to read and which signatures are due, what a
// signature verdict admits, which pre-releases are withdrawn and their
// tags removed, which drifted tags are re-pointed, which ABI verdicts are
// due, which kernels' notices.
//
// The kinds differ only in their Kind: where their images and tags go,
// whether they are verified, and how often a build is tried. Adding a kind
// of image is a new entry in Input.Kinds, not new logic here.
//
// Plan reads no clock (the pass passes now in) and changes an image's
// record only through its transitions (ledger.Image), on its own copy: the
// pass applies the changes and actions in order. It never plans a
// consumer-visible tag without naming the kernel tag it waits for
// (Action.After), which package promote enforces, nor a promotion of an
// image whose record is not verified (or, for a kind that is not verified,
// built).
package plan

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/version"
)

// Action types. The pass reports each action of the first seven in its
// result; the others are its housekeeping.
const (
	ActionBuild    = "build"
	ActionVerify   = "verify"
	ActionPromote  = "promote"
	ActionAudit    = "audit"
	ActionWithdraw = "withdraw"
	ActionNotify   = "notify"
	ActionHold     = "hold"
	// ActionUnstage removes a promoted image's staging tag.
	ActionUnstage = "unstage"
	// ActionForget forgets a promotion dtkbot recorded of a tag that is not
	// its own (an adopted image's kernel tag, in a state file from before
	// adoption).
	ActionForget = "forget"
)

// Action is one step of a plan. For a build, Image is the staging reference
// to push and Releases the releases that ship the kernel. For a promotion,
// Tag is the destination reference (repository:tag), Kind what it is
// (kernel, release or floating: ledger.Tag*), Image the image pinned by
// digest, and After the kernel tag that must hold that image, in this pass,
// before the tag is written ("" for the kernel tag itself).
type Action struct {
	Type   string `json:"type"`
	Kernel string `json:"kernel,omitempty"`
	Stream string `json:"stream,omitempty"`
	Arch   string `json:"arch,omitempty"`
	// Variant is the kernel variant of a consumer's image ("" default).
	Variant  string   `json:"variant,omitempty"`
	Releases []string `json:"releases,omitempty"`
	Release  string   `json:"release,omitempty"`
	Tag      string   `json:"tag,omitempty"`
	Image    string   `json:"image,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	// KernelKey is the kernel the action is about; with Consumer, the
	// image (ImageKey).
	KernelKey string `json:"-"`
	Kind      string `json:"kind,omitempty"`
	// Consumer is set for an action on a consumer's image.
	Consumer string `json:"consumer,omitempty"`
	After    string `json:"after,omitempty"`

	// What the plan decided for the pass to carry out, beyond what people
	// are shown.

	// KernelTag is, for a build, the image's kernel tag, rendered once.
	KernelTag string `json:"-"`
	// Again: a build asked again, for the attempt the image recorded and
	// the backend never acknowledged (it has no trace of it).
	Again bool `json:"-"`
	// IfFailed is, for a build or a verification, what a failed attempt
	// leads to.
	IfFailed ledger.Retry `json:"-"`
	// Verification is, for a verification, the record written before the
	// image is read.
	Verification ledger.Verification `json:"-"`
	// Verdict is, for a verification, the plan's own verdict against the
	// image, which is not read: why it is rejected.
	Verdict string `json:"-"`
	// Repoint is, for an audit, whether the drifted tag is put back on
	// Image (else it is reported; Unrepaired says why, when not by policy).
	Repoint    bool   `json:"-"`
	Unrepaired string `json:"-"`
	// Remove is, for a withdrawal, whether the tag is removed (else it is
	// reported).
	Remove bool `json:"-"`
}

// ImageKey is the key of the image the action is about.
func (a Action) ImageKey() string { return ledger.ImageKey(a.Consumer, a.KernelKey) }

// Reported says whether the pass reports the action in its result (its
// housekeeping it does not).
func (a Action) Reported() bool { return a.Type != ActionUnstage && a.Type != ActionForget }

// Key names what an action does, so that a pass does it once: a build of
// an image, a verification of an image's digest, a tag written or removed,
// a hold for its reason.
func (a Action) Key() string {
	switch a.Type {
	case ActionBuild, ActionUnstage:
		return a.Type + " " + a.ImageKey()
	case ActionVerify:
		return a.Type + " " + a.ImageKey() + " " + a.Image
	case ActionHold:
		return a.Type + " " + a.Release + " " + a.Tag + " " + a.ImageKey() + " " + a.Reason
	}
	return a.Type + " " + a.Tag + " " + a.Image
}

// about is an action about image m.
func about(m ledger.Image) Action {
	return Action{Kernel: m.Kernel, Stream: m.Stream, Arch: m.Arch, Variant: m.Variant, KernelKey: m.KernelKey(), Consumer: m.Consumer}
}

// Target is where a kind's images and tags go: the one shape of every
// target, read from the config as it is (target: for the DTK, with its
// audit; consumers[].target for a consumer's images).
type Target struct {
	// Repository receives the kind's images, e.g. quay.io/acme/driver-toolkit.
	Repository string `yaml:"repository"`
	// KernelTag names the image built for one kernel.
	KernelTag string `yaml:"kernel_tag"`
	// ReleaseTags are the tags promoted for each release.
	ReleaseTags []string `yaml:"release_tags"`
	// FloatingTags move forward with the newest release ({{.Minor}}, latest).
	FloatingTags []string `yaml:"floating_tags"`
	// Mirrors receive copies of every promoted tag, kernel tags included.
	Mirrors []string `yaml:"mirrors"`
	// Staging is where builds push: nothing a consumer reads. An image is
	// verified there before it is promoted to the kernel tag.
	Staging Staging `yaml:"staging"`
}

// Staging is the reference builds push to.
type Staging struct {
	// Repository defaults to the target's repository.
	Repository string `yaml:"repository"`
	// Tag defaults to DefaultStagingTag.
	Tag string `yaml:"tag"`
}

// Kind is what the plan needs of one kind of image.
type Kind struct {
	Target Target
	// What names the kind's images in reasons: "DTK image", "consumer
	// acme-nic's image".
	What string
	// Verified: the kind's built images are verified before they may be
	// promoted (a kind without a verifier promotes what it finds built).
	Verified bool
	// NeedsKernelFiles: the kind's images are checked against the kernel's
	// files its DTK carries (a consumer's verify.abi: true): none is built
	// FROM a DTK before it is known to carry them, nor from one that lacks
	// them.
	NeedsKernelFiles bool
	// Retries bounds its attempts.
	Retries Retries
	// AsksAgain: no build of its backend outlives the asking
	// (builder.AsksOnce), so an attempt recorded and never acknowledged is
	// asked again at once rather than waited for until the timeout.
	AsksAgain bool
	// Variants are the kernel variants its images are built for, each
	// kernel's that its DTK carries ("" the default kernel; none: the
	// default only). A DTK has none: it carries its kernel's variants.
	Variants []string
}

// variants are the variants the kind's images are built for.
func (k Kind) variants() []string {
	if len(k.Variants) == 0 {
		return []string{ledger.VariantDefault}
	}
	return k.Variants
}

// asksVariants reports whether the kind's images are built for a variant
// other than the default kernel.
func (k Kind) asksVariants() bool {
	return slices.ContainsFunc(k.Variants, func(v string) bool { return v != ledger.VariantDefault })
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
	// Held are the payloads held back: reported.
	Held []ledger.HeldRelease
	// Kinds are the kinds of image configured, by ledger.Image.Kind: an
	// image of a kind not here (a consumer removed from the config) is
	// left alone.
	Kinds  map[string]Kind
	Policy Policy
	// Seen is what this round saw of the images it looked at, by key;
	// KernelFiles what it read of promoted DTKs (KernelFilesDue), by key:
	// the kernel's files each lacks, and the variants' kernels it carries.
	Seen        map[string]Seen
	KernelFiles map[string]ledger.KernelFilesCheck
	// VerifyInterruptions is how many verifications of one image may die
	// with the process before it is rejected unread.
	VerifyInterruptions int
	// Done is what the pass did already.
	Done Done
}

// kindOf is image m's kind, if it is configured and still asks for m's
// variant: an image of a kind, or a variant, no longer configured is left
// alone.
func (in Input) kindOf(m ledger.Image) (Kind, bool) {
	k, ok := in.Kinds[m.Kind()]
	return k, ok && slices.Contains(k.variants(), m.Variant)
}

// Done is what a pass did already: the plan does nothing twice in a pass.
type Done struct {
	// Actions are the keys (Action.Key) of the actions taken.
	Actions map[string]bool
	// PromoteFailed are the images a promotion failed for: not promoted
	// before the next pass.
	PromoteFailed map[string]bool
}

// Change is an image's record as the plan changes it, through its
// transitions; Says is what changed, for the log. Fails says why the pass
// fails, Warns what it warns of, when the change is either.
type Change struct {
	Image ledger.Image
	Says  []string
	Fails string
	Warns string
}

// ReleaseChange is a release's record as the plan changes it.
type ReleaseChange struct {
	Release ledger.Release
	Says    string
	Warns   string
}

// Changes are what a pass does next: the records it changes, in order,
// then its actions, in order.
type Changes struct {
	Images   []Change
	Releases []ReleaseChange
	Actions  []Action
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
	tmpl, repo := t.Staging.Tag, t.Staging.Repository
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
		Release: release, Minor: version.Minor(release), Arch: m.Arch, Stream: m.Stream,
		Variant: ledger.VariantName(m.Variant), VariantSuffix: variantSuffix(m.Variant)}
}

// Plan computes one round of a pass: each image's record moved on by what
// the round saw, then settled (promoted once its kernel tag holds it); the
// consumers' images of each promoted DTK; then the actions: holds, builds,
// verifications, promotions, staging tags removed. An action the pass took
// already (Input.Done) is not planned again.
func Plan(in Input) Changes {
	p := &planner{in: in, changed: map[string]*Change{}}
	images := slices.Clone(in.Images)
	sort.Slice(images, func(i, j int) bool { return images[i].Key() < images[j].Key() })
	for i := range images {
		if k, ok := in.kindOf(images[i]); ok {
			p.forgetAdoptedBefore(&images[i])
			p.see(&images[i], k)
		}
	}
	p.readKernelFiles(images)
	for i := range images {
		if k, ok := in.kindOf(images[i]); ok {
			p.settle(&images[i], k)
		}
	}
	p.consumerImages(images)
	p.holdReleases()
	p.lifecycle(images)
	return p.changes()
}

// planner is one Plan's work: the changes and actions it has decided.
type planner struct {
	in      Input
	changed map[string]*Change
	order   []string
	held    []Action // payloads held back
	holds   []Action
	builds  []Action
	checks  []Action // verifications
	tags    []Action // promotions
	chores  []Action // staging tags removed, promotions forgotten
}

// change records a transition the plan made on m (m is the image after it).
func (p *planner) change(m ledger.Image, says string) *Change {
	c, ok := p.changed[m.Key()]
	if !ok {
		c = &Change{}
		p.changed[m.Key()] = c
		p.order = append(p.order, m.Key())
	}
	c.Image = m
	if says != "" {
		c.Says = append(c.Says, says)
	}
	return c
}

// act plans an action, unless the pass took it already.
func (p *planner) act(list *[]Action, a Action) {
	if !p.in.Done.Actions[a.Key()] {
		*list = append(*list, a)
	}
}

func (p *planner) hold(a Action) {
	a.Type = ActionHold
	p.act(&p.holds, a)
}

func (p *planner) changes() Changes {
	var out Changes
	for _, key := range p.order {
		out.Images = append(out.Images, *p.changed[key])
	}
	sort.SliceStable(p.holds, func(i, j int) bool { return version.Compare(p.holds[i].Release, p.holds[j].Release) < 0 })
	for _, list := range [][]Action{p.held, p.holds, p.builds, p.checks, p.tags, p.chores} {
		out.Actions = append(out.Actions, list...)
	}
	return out
}

// holdReleases reports the payloads held back, and the held streams of
// the releases.
func (p *planner) holdReleases() {
	held := slices.Clone(p.in.Held)
	sort.Slice(held, func(i, j int) bool { return held[i].Key() < held[j].Key() })
	for _, h := range held {
		release := h.Version
		if release == "" {
			release = h.Pullspec
		}
		p.act(&p.held, Action{Type: ActionHold, Release: release, Arch: h.Arch,
			Reason: fmt.Sprintf("held since %s (%s): %s", h.Since.UTC().Format(time.RFC3339), h.Kind, h.Reason)})
	}
	for _, r := range p.in.Releases {
		for _, s := range r.Streams {
			if s.Held != "" {
				p.hold(Action{Release: r.Version, Stream: s.Stream, Arch: r.Arch, Kernel: s.Kernel, Reason: s.Held})
			}
		}
	}
}

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
