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
	"slices"
	"sort"
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

// Withdraw records that a pre-release no longer counts (why: its tag was
// Rejected, or it vanished from its feeds), since at: it drives no build
// and gets no tag any more. It reports whether the record changed.
func (r *Release) Withdraw(why string, at time.Time) bool {
	if !r.PreRelease() || r.Withdrawn != "" {
		return false
	}
	r.Withdrawn, r.WithdrawnAt = why, at
	return true
}

// Reinstate records that a withdrawn pre-release is listed again: it
// counts again. It reports whether it was withdrawn.
func (r *Release) Reinstate(at time.Time) bool {
	if r.Withdrawn == "" {
		return false
	}
	r.Withdrawn, r.WithdrawnAt = "", at
	return true
}

// Tagged records when the release got its first release tag: the end of
// its lead time. It reports whether the record changed.
func (r *Release) Tagged(at time.Time) bool {
	if !r.TaggedAt.IsZero() {
		return false
	}
	r.TaggedAt = at
	return true
}

// ListedBy brings the release's sources and channels up to date with a
// feed's listing. It reports whether the record changed.
func (r *Release) ListedBy(sources []watcher.Source, channels []string) bool {
	merged, changed := watcher.MergeSources(r.Sources, sources)
	for _, ch := range channels {
		if !slices.Contains(r.Channels, ch) {
			r.Channels, changed = append(slices.Clone(r.Channels), ch), true
		}
	}
	if changed {
		sort.Strings(r.Channels)
		r.Sources = merged
	}
	return changed
}

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
