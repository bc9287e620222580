package ledger

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/dtkbot/dtkbot/version"
)

// The lifecycle of an image, the same for every kind, and the only way its
// State changes: each transition below checks the state it starts from and
// refuses (a *TransitionError) one the lifecycle does not have. Package
// plan decides which transitions to make, and passes in what it decided
// (when a failed attempt may be retried, or that none will be); package
// reconcile makes them as it applies the plan.
//
//	new ─Request─► build_requested ─Found─► built ─Verified─► verified ─Promote─► promoted
//	 │               │ Acknowledge,            │ Pin,          ▲
//	 │               │ AskedAgain              │ BeginVerifying│
//	 ├─Found (at its kernel tag)──────────────►├─Adopt─────────┘ (found at its kernel tag)
//	 ├─Fail (at its kernel tag, unverified)    ├─Promote (a kind that is not verified)
//	 │               │                         │
//	 │               └─AttemptFailed─┐  ┌──────┴─Reject
//	 │                               ▼  ▼
//	 └◄──────────────── new (retried later) or failed ─NewRound─► new
//
// Records that are no state (conflicts, the staging tag's fate, notices,
// ABI verdicts, kernel files) change through methods of their own, below.

// ErrTransition is what every refused transition wraps.
var ErrTransition = errors.New("not a transition of the image lifecycle")

// TransitionError is a transition the image's state does not allow.
type TransitionError struct {
	Image      string // the image's key
	Transition string // "request", "found", ...
	From       string // the state it was in
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("image %s: %s from %s: %v", e.Image, e.Transition, e.From, ErrTransition)
}

func (e *TransitionError) Unwrap() error { return ErrTransition }

// from refuses transition t unless m is in one of states.
func (m *Image) from(t string, states ...string) error {
	if slices.Contains(states, m.State) {
		return nil
	}
	return &TransitionError{Image: m.Key(), Transition: t, From: m.State}
}

// Retry is what a failed attempt leads to, as the plan decided it: another
// attempt from At, or (Never) none: the image fails.
type Retry struct {
	At    time.Time
	Never bool
}

// NewDTK is the record of a kernel's DTK image, first seen at now in
// release (found in source, "" if unknown): new, nothing done yet.
func NewDTK(arch string, ships ReleaseShips, dtkImage, release, source string, now time.Time) Image {
	m := Image{Stream: ships.Stream, Arch: arch, Kernel: ships.Kernel, KernelFull: ships.KernelFull, RTKernel: ships.RTKernel,
		RHEL: ships.RHEL, DTKImage: dtkImage, State: StateNew, FirstSeen: now, UpdatedAt: now, FirstSource: release}
	if source != "" {
		m.FirstSource += " from " + source
	}
	return m
}

// NewConsumerImage is the record of consumer's image of the DTK's kernel
// variant vk (the default kernel, or a variant the DTK carries), to be
// built FROM the DTK: new, shipped by the DTK's releases.
func (m Image) NewConsumerImage(consumer string, vk VariantKernel, now time.Time) Image {
	full := vk.KernelFull
	if vk.Variant == VariantDefault {
		full = m.KernelFull
	}
	return Image{Consumer: consumer, Variant: vk.Variant, Stream: m.Stream, Arch: m.Arch, Kernel: m.Kernel, KernelFull: full, RTKernel: m.RTKernel,
		RHEL: m.RHEL, State: StateNew, FirstSeen: now, UpdatedAt: now, FirstSource: m.FirstSource,
		Releases: m.Releases, DTKImage: m.PinnedImage()}
}

// ShippedBy adds a release that ships the image's kernel (kept in version
// order). It reports whether the record changed.
func (m *Image) ShippedBy(release string, at time.Time) bool {
	if slices.Contains(m.Releases, release) {
		return false
	}
	m.Releases = append(slices.Clone(m.Releases), release)
	sort.Slice(m.Releases, func(i, j int) bool { return version.Compare(m.Releases[i], m.Releases[j]) < 0 })
	m.UpdatedAt = at
	return true
}

// Follow keeps a consumer's image in step with the DTK it is built FROM:
// its releases, and the DTK by digest. It reports whether the record
// changed.
func (m *Image) Follow(dtk Image, at time.Time) bool {
	if slices.Equal(m.Releases, dtk.Releases) && m.DTKImage == dtk.PinnedImage() {
		return false
	}
	m.Releases, m.DTKImage, m.UpdatedAt = dtk.Releases, dtk.PinnedImage(), at
	return true
}

// Request records the intent to build attempt Attempts+1 to staging (its
// kernel tag kernelTag), before the backend is asked: a process that dies
// after asking waits for that build instead of asking again.
func (m *Image) Request(kernelTag, staging string, at time.Time) error {
	if err := m.from("request", StateNew); err != nil {
		return err
	}
	m.State, m.Image, m.Staging, m.BuildRequestedAt, m.UpdatedAt = StateBuildRequested, kernelTag, staging, at, at
	m.ImageDigest, m.ListDigest, m.Published, m.Adopted = "", "", false, false
	m.Attempts++
	return nil
}

// Acknowledge records that the backend has the current attempt's request.
func (m *Image) Acknowledge(at time.Time) error {
	if err := m.from("acknowledge", StateBuildRequested); err != nil {
		return err
	}
	m.Asked, m.UpdatedAt = m.Attempts, at
	return nil
}

// AskedAgain records that the request of the current attempt, recorded and
// never acknowledged (the pass died in between), was made again at at: the
// attempt is not spent, and its timeout starts now.
func (m *Image) AskedAgain(at time.Time) error {
	if err := m.from("ask again", StateBuildRequested); err != nil {
		return err
	}
	if m.Asked >= m.Attempts {
		return &TransitionError{Image: m.Key(), Transition: "ask again (attempt acknowledged)", From: m.State}
	}
	m.Asked, m.BuildRequestedAt, m.UpdatedAt = m.Attempts, at, at
	return nil
}

// Found records the image found built: at its staging reference, or
// (staging "") already at its kernel tag, put there by someone else or
// before this state file. Either way it is verified before anything is
// promoted onto it.
func (m *Image) Found(kernelTag, staging, digest string, at time.Time) error {
	states := []string{StateNew, StateBuildRequested}
	if staging == "" {
		states = states[:1] // only an image never requested is looked for at its kernel tag
	}
	if err := m.from("found", states...); err != nil {
		return err
	}
	m.State, m.Image, m.Staging, m.ImageDigest, m.ListDigest, m.Adopted = StateBuilt, kernelTag, staging, digest, "", false
	m.Reason, m.Detail, m.UpdatedAt = "", "", at
	return nil
}

// Pin makes a built image found as a manifest list one image for its
// arch: the list's instance, the only one verified and promoted.
func (m *Image) Pin(instance string, at time.Time) error {
	if err := m.from("pin", StateBuilt); err != nil {
		return err
	}
	if m.ListDigest != "" {
		return &TransitionError{Image: m.Key(), Transition: "pin (pinned already)", From: m.State}
	}
	m.ListDigest, m.ImageDigest, m.UpdatedAt = m.ImageDigest, instance, at
	return nil
}

// BeginVerifying records a verification of the built image before it is
// read: found still there when the next one begins, it means the process
// died while reading the image (Verification.Interrupted).
func (m *Image) BeginVerifying(v Verification, at time.Time) error {
	if err := m.from("begin verifying", StateBuilt); err != nil {
		return err
	}
	m.Verifying, m.UpdatedAt = &v, at
	return nil
}

// Inconclusive ends a verification that could not read the image (try
// again later): no verdict, and no interruption.
func (m *Image) Inconclusive(at time.Time) error {
	if err := m.from("inconclusive", StateBuilt); err != nil {
		return err
	}
	m.Verifying, m.UpdatedAt = nil, at
	return nil
}

// Verdict is what a verification that passed found: what it compared, a
// kmod image's modules, a DTK's kernel files.
type Verdict struct {
	Checked     string
	Modules     []ModuleRecord
	KernelFiles *KernelFilesCheck
}

func (m *Image) verified(v Verdict, at time.Time) {
	m.State, m.Verifying, m.Reason, m.Detail, m.UpdatedAt = StateVerified, nil, "", "", at
	if v.Modules != nil || v.Checked != "" {
		m.Modules, m.Checked = v.Modules, v.Checked
	}
	if v.KernelFiles != nil {
		m.KernelFiles = v.KernelFiles
	}
}

// Verified records a built image, found at its staging reference, that
// passed verification: it waits for promotion.
func (m *Image) Verified(v Verdict, at time.Time) error {
	if err := m.from("verified", StateBuilt); err != nil {
		return err
	}
	if m.Staging == "" {
		return &TransitionError{Image: m.Key(), Transition: "verified (found at its kernel tag: adopted)", From: m.State}
	}
	m.verified(v, at)
	return nil
}

// Adopt records an image found at its kernel tag that passed
// verification: it may get its other tags, and the kernel tag stays its
// owner's (trust rule 3): dtkbot never records it as a promotion, audits,
// moves or removes it.
func (m *Image) Adopt(v Verdict, at time.Time) error {
	if err := m.from("adopt", StateBuilt); err != nil {
		return err
	}
	if m.Staging != "" {
		return &TransitionError{Image: m.Key(), Transition: "adopt (found at its staging reference)", From: m.State}
	}
	m.verified(v, at)
	m.Published, m.Adopted = true, true
	return nil
}

// Reject records a built image that failed verification (reason): never
// promoted, and never taken for the image again. A build is retried as
// next says; an image found at its kernel tag fails, as dtkbot never
// overwrites a tag it did not promote. It returns the rejection, and what
// the tag it was found at held (its staging tag goes only while it holds
// that).
func (m *Image) Reject(reason string, next Retry, at time.Time) (Rejection, string, error) {
	if err := m.from("reject", StateBuilt); err != nil {
		return Rejection{}, "", err
	}
	r := Rejection{Digest: m.ImageDigest, List: m.ListDigest, Image: m.PinnedImage(), Reason: reason, At: at}
	found := m.FoundDigest()
	m.Rejections = append(slices.Clone(m.Rejections), r)
	switch {
	case m.Staging == "":
		m.State = StateFailed
		m.Reason = fmt.Sprintf("the kernel tag %s holds %s, which dtkbot did not promote and which fails verification (%s); dtkbot never overwrites a tag it did not promote: remove the tag, then run dtkbot reconcile --retry-failed", m.Image, m.ImageDigest, reason)
	case next.Never:
		m.State = StateFailed
		m.Reason = fmt.Sprintf("verification failed (%d attempts): %s", m.Attempts, reason)
	default:
		m.State, m.NextAttemptAt = StateNew, next.At
		m.Reason = fmt.Sprintf("the build of attempt %d failed verification, retrying: %s", m.Attempts, reason)
	}
	m.ImageDigest, m.ListDigest, m.Published, m.Adopted, m.Verifying, m.Detail, m.UpdatedAt = "", "", false, false, nil, "", at
	return r, found, nil
}

// Untagged records that the staging tag of the last rejection was removed:
// finding that image there again means a later build pushed it again.
func (m *Image) Untagged(at time.Time) {
	if n := len(m.Rejections); n > 0 {
		m.Rejections = slices.Clone(m.Rejections)
		m.Rejections[n-1].Untagged, m.UpdatedAt = true, at
	}
}

// AttemptFailed ends the current attempt, whose build was refused, failed,
// or never appeared (reason for people, detail for the log): new again
// from next.At, or failed for good.
func (m *Image) AttemptFailed(reason, detail string, next Retry, at time.Time) error {
	if err := m.from("attempt failed", StateBuildRequested); err != nil {
		return err
	}
	m.Reason, m.Detail, m.UpdatedAt = reason, detail, at
	if next.Never {
		m.State = StateFailed
		return nil
	}
	m.State, m.NextAttemptAt = StateNew, next.At
	return nil
}

// Fail records an image that will not be built or adopted (reason): found
// at its kernel tag, put there by someone else, while nothing verifies its
// kind.
func (m *Image) Fail(kernelTag, reason string, at time.Time) error {
	if err := m.from("fail", StateNew); err != nil {
		return err
	}
	m.State, m.Image, m.Staging, m.ImageDigest, m.ListDigest, m.Adopted = StateFailed, kernelTag, "", "", "", false
	m.Reason, m.UpdatedAt = reason, at
	return nil
}

// KernelTagHolds records that the image's kernel tag holds digest (dtkbot
// promoted it there): when that is the image, it is published.
func (m *Image) KernelTagHolds(digest string, at time.Time) bool {
	if m.Published || digest != m.ImageDigest || m.ImageDigest == "" {
		return false
	}
	m.Published, m.UpdatedAt = true, at
	return true
}

// Promote records an image whose kernel tag holds it: verified, or built
// when its kind is not verified (verified false). PromotedAt, the end of
// its lead time, is the first promotion's.
func (m *Image) Promote(verified bool, at time.Time) error {
	states := []string{StateVerified}
	if !verified {
		states = append(states, StateBuilt)
	}
	if err := m.from("promote", states...); err != nil {
		return err
	}
	if !m.Published {
		return &TransitionError{Image: m.Key(), Transition: "promote (its kernel tag does not hold it)", From: m.State}
	}
	m.State, m.UpdatedAt = StatePromoted, at
	if m.PromotedAt.IsZero() {
		m.PromotedAt = at
	}
	return nil
}

// NewRound gives a failed image a fresh round of attempts (--retry-failed).
// The round's attempt 1 is not the last round's: a backend naming builds by
// attempt tells them apart by the round.
func (m *Image) NewRound(at time.Time) error {
	if err := m.from("new round", StateFailed); err != nil {
		return err
	}
	m.State, m.Attempts, m.NextAttemptAt, m.ImageDigest, m.ListDigest, m.Published, m.Adopted = StateNew, 0, time.Time{}, "", "", false, false
	m.Round, m.Asked = m.Round+1, 0
	m.Reason = "retry asked (was: " + m.Reason + ")"
	m.UpdatedAt = at
	return nil
}

// AdoptedBefore marks adopted an image a state file written before Adopted
// existed recorded as found at its kernel tag (verified there, never
// staged). It reports whether it was one.
func (m *Image) AdoptedBefore() bool {
	if m.Adopted || m.Staging != "" || m.ImageDigest == "" || (m.State != StateVerified && m.State != StatePromoted) {
		return false
	}
	m.Adopted = true
	return true
}

// ---- records that are no state ----

// Conflict records a tag this image should have that holds someone else's
// image. It reports whether the record changed.
func (m *Image) Conflict(c Conflict) bool {
	if i := slices.IndexFunc(m.Conflicts, func(x Conflict) bool { return x.Tag == c.Tag }); i >= 0 {
		if m.Conflicts[i].Digest == c.Digest {
			return false
		}
		m.Conflicts = slices.Delete(slices.Clone(m.Conflicts), i, i+1)
	}
	m.Conflicts, m.UpdatedAt = append(m.Conflicts, c), c.Since
	return true
}

// Resolved forgets the conflict on tag, now that dtkbot wrote it. It
// reports whether there was one.
func (m *Image) Resolved(tag string, at time.Time) bool {
	i := slices.IndexFunc(m.Conflicts, func(c Conflict) bool { return c.Tag == tag })
	if i < 0 {
		return false
	}
	m.Conflicts, m.UpdatedAt = slices.Delete(slices.Clone(m.Conflicts), i, i+1), at
	return true
}

// StagingGone records what became of a promoted image's staging tag:
// "removed", or why it stays.
func (m *Image) StagingGone(outcome string, at time.Time) {
	m.StagingRemoved, m.UpdatedAt = outcome, at
}

// Notified records what people were last told about the image.
func (m *Image) Notified(hash string) {
	m.NotifiedState, m.NotifiedHash = m.State, hash
}

// KernelFilesRead records whether the DTK's current image carries the
// kernel's files, and which variants' kernels it carries.
func (m *Image) KernelFilesRead(check KernelFilesCheck, at time.Time) {
	check.Digest, check.VariantsRead = m.ImageDigest, true
	m.KernelFiles, m.UpdatedAt = &check, at
}

// Judged records a consumer's ABI verdict on the DTK's kernel.
func (m *Image) Judged(v ABIVerdict, at time.Time) {
	m.ABI, m.UpdatedAt = append(slices.Clone(m.ABI), v), at
}
