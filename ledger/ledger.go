// Package ledger is dtkbot's model of the world: the releases it has read
// and the kernels they ship, every image it builds for a kernel (the
// kernel's DTK, and each consumer's image built FROM it) with where that
// image is in its lifecycle, the tags it has promoted, the payloads it holds
// back, and what it told people.
//
// It is data and the rules that read it (keys, which image a tag copies,
// what a notice says); it never does I/O: package state keeps it on disk,
// package reconcile changes it.
package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/dtkbot/dtkbot/version"
	"github.com/dtkbot/dtkbot/watcher"
)

// ---- releases ----

// Release is a payload seen and read, with the kernels of its streams.
type Release struct {
	Version  string         `json:"version"`
	Pullspec string         `json:"pullspec"`
	Digest   string         `json:"digest"`
	Arch     string         `json:"arch"` // the arch read (amd64, arm64, ...)
	Channels []string       `json:"channels,omitempty"`
	Streams  []ReleaseShips `json:"streams"`
	// Kind is what the release is (ga, rc, ec, nightly, ...: version.Kind).
	Kind string `json:"kind,omitempty"`
	// Sources are where it was found: graph channels, release-controller
	// streams (with the tag's phase), the config.
	Sources []watcher.Source `json:"sources,omitempty"`
	// Signature is the outcome of the signature check ("verified by ...",
	// "unverified: ...", "unchecked: ...", or empty when checks are off),
	// and SignatureCheckedAt when it was made: one not verified is checked
	// again once verify.recheck has passed since.
	Signature          string    `json:"signature,omitempty"`
	SignatureCheckedAt time.Time `json:"signature_checked_at,omitzero"`
	FirstSeen          time.Time `json:"first_seen"`
	// TaggedAt is when its first release tag was promoted.
	TaggedAt time.Time `json:"tagged_at,omitzero"`
	// Withdrawn says why a pre-release no longer counts (its tag was
	// Rejected, or it vanished from its feeds), since when.
	Withdrawn   string    `json:"withdrawn,omitempty"`
	WithdrawnAt time.Time `json:"withdrawn_at,omitzero"`
}

// PreRelease reports whether the release is not a GA release.
func (r Release) PreRelease() bool { return r.Kind != "" && r.Kind != version.KindGA }

// ReleaseShips is one stream of a release: the kernel it ships, or why it
// is held.
type ReleaseShips struct {
	Stream     string `json:"stream"`
	Kernel     string `json:"kernel,omitempty"`
	KernelFull string `json:"kernel_full,omitempty"`
	RTKernel   string `json:"rt_kernel,omitempty"`
	RHEL       string `json:"rhel_version,omitempty"`
	RHCOS      string `json:"rhcos_version,omitempty"`
	Held       string `json:"held,omitempty"` // the reason no build may be based on it
}

// ReleaseKey identifies a release read for one arch.
func ReleaseKey(digest, arch string) string { return digest + "/" + arch }

// ---- images ----

// Lifecycle states of an image.
const (
	StateNew            = "new"
	StateBuildRequested = "build_requested"
	StateBuilt          = "built"
	StateVerified       = "verified"
	StatePromoted       = "promoted"
	StateFailed         = "failed"
)

// KindDTK is the kind of a kernel's Driver Toolkit image; every other kind
// is a consumer's name.
const KindDTK = "dtk"

// Image is one image dtkbot builds for one kernel of one stream and arch:
// the kernel's DTK (Consumer empty), or a consumer's image built FROM that
// DTK; the releases that ship the kernel; and what has been done about it.
// Every kind goes through the same lifecycle: new, build_requested, built
// (found at the staging tag), verified, promoted (at its kernel tag), or
// failed.
type Image struct {
	// Consumer names the consumer whose image this is; empty for the DTK.
	Consumer   string   `json:"consumer,omitempty"`
	Stream     string   `json:"stream"`
	Arch       string   `json:"arch"`
	Kernel     string   `json:"kernel"` // VERSION-RELEASE
	KernelFull string   `json:"kernel_full"`
	RTKernel   string   `json:"rt_kernel,omitempty"`
	RHEL       string   `json:"rhel_version,omitempty"`
	Releases   []string `json:"releases"`
	// DTKImage is, for the DTK, the payload's own DTK (for reference); for
	// a consumer's image, the promoted DTK it is built FROM, by digest.
	DTKImage string `json:"dtk_image,omitempty"`
	State    string `json:"state"`
	Attempts int    `json:"attempts,omitempty"`
	// Asked is the last attempt whose request the backend acknowledged.
	// Below Attempts, the pass recorded the attempt (intent first) and
	// then died before the answer: a backend that names its builds is
	// asked again, rather than the attempt spent.
	Asked int `json:"asked,omitempty"`
	// Round counts the fresh rounds of attempts `--retry-failed` gave the
	// image (Attempts starts again at 0 with each).
	Round int `json:"round,omitempty"`
	// Reason says, for people, why the image is where it is: what failed
	// and where to look. It is public (issues, /status, the page): no
	// build output, no URL paths.
	Reason string `json:"reason,omitempty"`
	// Detail is what failed in full (a build's last lines, a webhook's
	// reply): kept in the state file and the log, shown on GitHub only
	// with github.include_build_log.
	Detail string `json:"detail,omitempty"`
	// Image is the kernel tag (repository:tag) consumers read; it only ever
	// receives a verified image.
	Image string `json:"image,omitempty"`
	// Staging is where the build pushes (repository:tag): the image is
	// verified there before it is promoted to Image.
	Staging     string `json:"staging,omitempty"`
	ImageDigest string `json:"image_digest,omitempty"` // the built image's digest once seen
	// ListDigest is set when the tag the image was found at holds a
	// manifest list: ImageDigest is then its instance for Arch, the only
	// one verified and promoted; the list's other platforms never reach a
	// tag dtkbot writes.
	ListDigest string `json:"list_digest,omitempty"`
	// Published: the kernel tag holds ImageDigest (promoted there, or found
	// there and verified).
	Published bool `json:"published,omitempty"`
	// Adopted: the image was found at its kernel tag, put there by someone
	// else (or before this state file), and verified there. Its other tags
	// are dtkbot's; the kernel tag is not: it is never recorded as a
	// promotion, audited, moved or removed.
	Adopted bool `json:"adopted,omitempty"`
	// StagingRemoved says what became of the staging tag after promotion:
	// "removed", or why it stays.
	StagingRemoved string `json:"staging_removed,omitempty"`
	// Rejections are the built images that failed verification: never
	// promoted, and ignored if they are found at the staging tag again.
	Rejections []Rejection `json:"rejections,omitempty"`
	// Conflicts are tags this image should have that hold an image dtkbot
	// did not put there: dtkbot never overwrites them, and says so.
	Conflicts []Conflict `json:"conflicts,omitempty"`
	// NotifiedState is the State last announced, and NotifiedHash the
	// notice's hash: a notification is due whenever what people are told
	// (state, releases, image) changed since.
	NotifiedState string    `json:"notified_state,omitempty"`
	NotifiedHash  string    `json:"notified_hash,omitempty"`
	FirstSeen     time.Time `json:"first_seen"`
	// FirstSource is where the kernel was first seen (a release and its
	// feed), and PromotedAt when its image first reached its kernel tag:
	// the lead time a pre-release feed buys.
	FirstSource      string    `json:"first_source,omitempty"`
	PromotedAt       time.Time `json:"promoted_at,omitzero"`
	UpdatedAt        time.Time `json:"updated_at"`
	BuildRequestedAt time.Time `json:"build_requested_at,omitzero"`
	// NextAttemptAt holds back a retry after a failed attempt (backoff).
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
	// Modules are, for a verified consumer image, what the kmod check read
	// of each of its modules: what decides whether they would load on
	// another kernel (ABI). Checked says what the check compared.
	Modules []ModuleRecord `json:"modules,omitempty"`
	Checked string         `json:"checked,omitempty"`
	// ABI is, for a DTK, each consumer's verdict on this kernel: would the
	// consumer's newest promoted modules (of another kernel) load on it?
	ABI []ABIVerdict `json:"abi,omitempty"`
	// Verifying is the verification of ImageDigest under way, written to
	// the state before the image is read and cleared with its outcome: one
	// found when a verification begins means the process that began the
	// last one died before it ended (out of memory, killed), maybe because
	// of what it was reading (a poison image).
	Verifying *Verification `json:"verifying,omitempty"`
	// KernelFiles is, for a DTK, whether it carries the kernel's files its
	// consumers' modules are checked against: read once per digest, when a
	// consumer needs them (verify.abi: true).
	KernelFiles *KernelFilesCheck `json:"kernel_files,omitempty"`
}

// Verification is a verification begun: of which image, since when, and
// how many verifications of it before were cut short by the process dying.
type Verification struct {
	Digest      string    `json:"digest"`
	Since       time.Time `json:"since"`
	Interrupted int       `json:"interrupted,omitempty"`
}

// KernelFilesCheck says whether the DTK image Digest carries the kernel's
// files under etc/driver-toolkit/<uname -r>/ (Module.symvers, modules.dep,
// modules.builtin): Missing names those it lacks (none: it has them all).
type KernelFilesCheck struct {
	Digest  string   `json:"digest"`
	Missing []string `json:"missing,omitempty"`
}

// KernelFilesOf is the check of the DTK's current image, if it was made.
func (m Image) KernelFilesOf() (KernelFilesCheck, bool) {
	if m.KernelFiles == nil || m.KernelFiles.Digest == "" || m.KernelFiles.Digest != m.ImageDigest {
		return KernelFilesCheck{}, false
	}
	return *m.KernelFiles, true
}

// ModuleRecord is one module of a verified kmod image, compact: the
// symbols it takes from the kernel with their versions (CRCs, from its
// __versions), its dependencies (depends=), its signer if signed.
type ModuleRecord struct {
	Name    string            `json:"name"`
	Imports map[string]uint32 `json:"imports,omitempty"`
	Depends []string          `json:"depends,omitempty"`
	Signer  string            `json:"signer,omitempty"`
}

// ABIVerdict says whether a consumer's modules built for one kernel (From,
// its uname -r, the image by digest) would load on another: every symbol
// version they import equals that kernel's Module.symvers (Loads), or
// which symbols changed (a CRC differs) or are gone (not exported).
type ABIVerdict struct {
	Consumer string    `json:"consumer"`
	From     string    `json:"from"`
	Image    string    `json:"image,omitempty"`
	Loads    bool      `json:"loads"`
	Changed  []string  `json:"changed,omitempty"`
	Gone     []string  `json:"gone,omitempty"`
	At       time.Time `json:"at"`
}

// String is the verdict in a line, for issues, pull requests, the API and
// the page: "acme-nic: the modules for 5.14.0-427.37.1.el9_4.x86_64 would
// load" or "... would not load: 6 symbol versions changed (printk,
// kmalloc, kfree, ...)".
func (v ABIVerdict) String() string {
	head := v.Consumer + ": the modules for " + v.From
	if v.Loads {
		return head + " would load (every symbol version matches)"
	}
	var parts []string
	if n := len(v.Changed); n > 0 {
		parts = append(parts, fmt.Sprintf("%d %s changed (%s)", n, plural(n, "symbol version", "symbol versions"), listSome(v.Changed, 5)))
	}
	if n := len(v.Gone); n > 0 {
		parts = append(parts, fmt.Sprintf("%d %s gone (%s)", n, plural(n, "symbol", "symbols"), listSome(v.Gone, 5)))
	}
	return head + " would not load: " + strings.Join(parts, "; ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func listSome(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:n], ", ") + fmt.Sprintf(", and %d more", len(s)-n)
}

// Rejection is a built image that did not pass verification.
type Rejection struct {
	Digest string `json:"digest"`
	// List is the manifest list Digest was the instance of, if any: what
	// the tag it was found at held.
	List   string    `json:"list,omitempty"`
	Image  string    `json:"image"` // where it was found
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// Untagged: its staging tag was removed, so finding it there again
	// means a later build pushed the same image.
	Untagged bool `json:"untagged,omitempty"`
}

// Conflict is a tag dtkbot would write that holds someone else's image.
type Conflict struct {
	Tag    string    `json:"tag"`
	Digest string    `json:"digest"` // what it holds
	Want   string    `json:"want"`   // what dtkbot would put there
	Since  time.Time `json:"since"`
}

// Kind is the image's kind: KindDTK, or the consumer's name.
func (m Image) Kind() string {
	if m.Consumer == "" {
		return KindDTK
	}
	return m.Consumer
}

// IsDTK reports whether m is a kernel's DTK image.
func (m Image) IsDTK() bool { return m.Consumer == "" }

// KernelKey identifies a kernel: stream/arch/kernel.
func KernelKey(stream, arch, kernel string) string { return stream + "/" + arch + "/" + kernel }

// ImageKey identifies an image: the kernel's key for its DTK,
// consumer/stream/arch/kernel for a consumer's.
func ImageKey(consumer, kernelKey string) string {
	if consumer == "" {
		return kernelKey
	}
	return consumer + "/" + kernelKey
}

// KernelKey is the key of m's kernel.
func (m Image) KernelKey() string { return KernelKey(m.Stream, m.Arch, m.Kernel) }

// Key identifies m among every image.
func (m Image) Key() string { return ImageKey(m.Consumer, m.KernelKey()) }

// Rejected returns the last rejection of digest d (an image, or the
// manifest list it was found in), if it failed verification before.
func (m Image) Rejected(d string) (Rejection, bool) {
	for i := len(m.Rejections) - 1; i >= 0; i-- {
		if r := m.Rejections[i]; r.Digest == d || (r.List != "" && r.List == d) {
			return r, true
		}
	}
	return Rejection{}, false
}

// FoundDigest is what the tag the image was found at held: its manifest
// list, or the image itself.
func (m Image) FoundDigest() string {
	if m.ListDigest != "" {
		return m.ListDigest
	}
	return m.ImageDigest
}

// PinnedImage is the image by digest (repository@sha256:...), what
// verification read and what promotions copy: in the kernel tag's
// repository once the kernel tag holds it, in the staging repository
// before; Image when the digest is not known yet.
func (m Image) PinnedImage() string {
	if m.ImageDigest == "" {
		return m.Image
	}
	ref := m.Image
	if !m.Published && m.Staging != "" {
		ref = m.Staging
	}
	return Repository(ref) + "@" + m.ImageDigest
}

// Repository is ref (repository:tag or repository@digest) without its tag
// or digest.
func Repository(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i] // drop the tag, not a registry port
	}
	return ref
}

// NoticeHash sums what a notification about m says.
func (m Image) NoticeHash() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%d\x00%d", m.State, strings.Join(m.Releases, ","), m.Image, m.ImageDigest, m.Reason,
		len(m.Rejections), len(m.Conflicts))
	for _, v := range m.ABI {
		fmt.Fprintf(h, "\x00%s", v)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Tag kinds of a Promotion.
const (
	TagKernel   = "kernel"
	TagRelease  = "release"
	TagFloating = "floating"
)

// Promotion records a tag dtkbot has pointed at an image. Only these tags
// are ever audited, re-pointed or removed: a tag dtkbot never promoted is
// not its own.
type Promotion struct {
	Ref     string `json:"ref"` // repository:tag
	Digest  string `json:"digest"`
	Release string `json:"release,omitempty"`
	Kernel  string `json:"kernel"`
	// KernelKey is the kernel whose image the tag holds.
	KernelKey string `json:"kernel_key,omitempty"`
	// Consumer is set for a consumer's tag (its image, not the DTK).
	Consumer string    `json:"consumer,omitempty"`
	Kind     string    `json:"kind,omitempty"` // kernel, release, floating
	At       time.Time `json:"at"`
}

// ImageKey is the key of the image the tag holds.
func (p Promotion) ImageKey() string { return ImageKey(p.Consumer, p.KernelKey) }

// Arch is the arch of the kernel whose image the tag holds.
func (p Promotion) Arch() string {
	if parts := strings.SplitN(p.KernelKey, "/", 3); len(parts) == 3 {
		return parts[1]
	}
	return ""
}

// ---- held payloads ----

// HeldRelease is a payload that cannot be used and will not be read again
// unless asked: its content (behind its digest, so it cannot change) is
// broken, or (strict mode) its signature does not verify yet.
type HeldRelease struct {
	Version  string   `json:"version,omitempty"`
	Pullspec string   `json:"pullspec"`
	Digest   string   `json:"digest"`
	Arch     string   `json:"arch"`
	Channels []string `json:"channels,omitempty"`
	// Kind is a short, stable name of the reason, for metrics ("content").
	Kind   string    `json:"kind"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	// SignatureCheckedAt is, for a payload held for its signature, when the
	// signature was last checked: it is not checked again before
	// verify.recheck has passed.
	SignatureCheckedAt time.Time `json:"signature_checked_at,omitzero"`
}

// SignatureVerified reports whether a release's recorded signature check
// verified (for good: a digest's signature does not come undone).
func (r Release) SignatureVerified() bool { return strings.HasPrefix(r.Signature, "verified") }

// Key is the held release's ReleaseKey.
func (h HeldRelease) Key() string { return ReleaseKey(h.Digest, h.Arch) }

// HeldStreamReason names the kind of a held stream's reason.
func HeldStreamReason(reason string) string {
	switch {
	case strings.HasPrefix(reason, "kernel unknown"):
		return "kernel_unknown"
	case strings.Contains(reason, "inconsistent payload"):
		return "inconsistent"
	}
	return "other"
}

// ---- what people were told ----

// Notice is what dtkbot published on GitHub about one kernel.
type Notice struct {
	Key         string `json:"key"` // the kernel's KernelKey
	IssueNumber int    `json:"issue,omitempty"`
	IssueURL    string `json:"issue_url,omitempty"`
	// ClosedByUs: the issue was closed by dtkbot (when the kernel was
	// promoted). An issue closed by anyone else is never touched again.
	ClosedByUs bool   `json:"closed_by_us,omitempty"`
	BodyHash   string `json:"body_hash,omitempty"`
	PRNumber   int    `json:"pull_request,omitempty"`
	PRURL      string `json:"pull_request_url,omitempty"`
	PRBranch   string `json:"pull_request_branch,omitempty"`
	// PRFiles is the hash of the extra files (KMM manifests) last written
	// to the pull request's branch.
	PRFiles string `json:"pull_request_files,omitempty"`
	// Commented are the rejected image digests the issue has a comment on.
	Commented []string `json:"commented,omitempty"`
}

// PassRecord is what the last pass did, kept for pages and reports (a
// CronJob has no daemon to ask).
type PassRecord struct {
	Started        time.Time     `json:"started"`
	Finished       time.Time     `json:"finished"`
	Duration       time.Duration `json:"duration_ns"`
	Releases       int           `json:"releases"`
	Inspected      int           `json:"inspected"`
	Held           int           `json:"held"`
	Actions        int           `json:"actions"`
	Errors         []string      `json:"errors,omitempty"`
	Failed         bool          `json:"failed"`
	SignatureMode  string        `json:"signature_mode,omitempty"`
	SignatureTrust string        `json:"signature_trust,omitempty"`
	// Services are the outside services the pass asked, and those it
	// stopped asking.
	Services []ServiceReport `json:"services,omitempty"`
}

// ServiceReport is what one outside service (the signature store, the
// update graph, a release-controller, GitHub, a build backend) cost a pass:
// requests sent, those that got no answer (a timeout, a connection refused
// or cut), and those not sent because the service had stopped answering
// (Skipped: Open, Reason says after what).
type ServiceReport struct {
	Service  string `json:"service"`
	Requests int    `json:"requests"`
	Failures int    `json:"failures"`
	Skipped  int    `json:"skipped"`
	Open     bool   `json:"open"`
	Reason   string `json:"reason,omitempty"`
}
