package plan

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/version"
	"github.com/dtkbot/dtkbot/watcher"
)

// Kinds of held releases (ledger.HeldRelease.Kind).
const (
	HeldContent   = "content"   // the payload's content is broken: never read again unless asked
	HeldSignature = "signature" // strict mode, not verified: checked again after verify.recheck
)

// Listing is what the pass knows of the releases: what the feeds list now
// (pinned by digest), and what the ledger recorded.
type Listing struct {
	Now time.Time
	// Listed are the releases the feeds list; Withdrawn the
	// release-controller tags now Rejected or Failed; Read the feeds read
	// this pass (watcher.Source.Key).
	Listed    []watcher.Release
	Withdrawn []watcher.Release
	Read      map[string]bool
	// Releases and Held are the ledger's, by ledger.ReleaseKey.
	Releases map[string]ledger.Release
	Held     map[string]ledger.HeldRelease
	// Signatures: payload signatures are checked, and one that did not
	// verify (or could not be checked) is checked again Recheck after.
	Signatures bool
	Recheck    time.Duration
	// RetryHeld reads again the payloads held for their content.
	RetryHeld bool
}

// Payload is a release to read for one arch.
type Payload struct {
	Release watcher.Release
	Arch    string
}

// Reading is what the pass reads of the releases listed: each payload
// digest never recorded (a digest is read once in its life), not held for
// its content, nor for a signature checked less than Recheck ago; the
// recorded releases whose signature is due again (by key); and the
// recorded releases the listing brings up to date.
type Reading struct {
	Read     []Payload
	Recheck  []string
	Releases []ReleaseChange
}

// Payloads decides what the pass reads of the releases listed.
func Payloads(l Listing) Reading {
	var out Reading
	for _, rel := range l.Listed {
		for _, arch := range watcher.PayloadArches(rel.Arch) {
			key := ledger.ReleaseKey(rel.Digest, arch)
			if known, ok := l.Releases[key]; ok {
				if c, changed := listedAgain(known, rel, l.Now); changed {
					out.Releases = append(out.Releases, c)
				}
				if l.Signatures && !known.SignatureVerified() && SignatureDue(known.SignatureCheckedAt, l.Now, l.Recheck) {
					out.Recheck = append(out.Recheck, key)
				}
				continue
			}
			if h, ok := l.Held[key]; ok && !l.RetryHeld {
				if h.Kind == HeldContent || (h.Kind == HeldSignature && l.Signatures && !SignatureDue(h.SignatureCheckedAt, l.Now, l.Recheck)) {
					continue
				}
			}
			out.Read = append(out.Read, Payload{Release: rel, Arch: arch})
		}
	}
	return out
}

// listedAgain brings a recorded release's sources and channels up to date
// with this pass's listing (a pre-release found first in a
// release-controller and then in a graph channel, a phase that changed); a
// withdrawn release seen accepted again counts again.
func listedAgain(known ledger.Release, seen watcher.Release, now time.Time) (ReleaseChange, bool) {
	changed := known.ListedBy(seen.Sources, seen.Channels)
	c := ReleaseChange{}
	if known.Reinstate(now) {
		changed, c.Says = true, "a withdrawn pre-release is listed again: it counts again"
	}
	c.Release = known
	return c, changed
}

// SignatureDue reports whether a signature last checked at (never: the zero
// time) is checked now: recheck after its last check.
func SignatureDue(at, now time.Time, recheck time.Duration) bool {
	return at.IsZero() || now.Sub(at) >= recheck
}

// SignatureCheck is what checking a payload's signature said: verified (by
// which key), not (why), or no answer (Err).
type SignatureCheck struct {
	Verified    bool
	By, Reason  string
	Err         error
	Strict, New bool // verify.mode strict; a payload not recorded yet
}

// Admit decides what a signature check means for a payload: what its record
// says (Signature), or, for a new payload in strict mode that did not
// verify, why it is held instead of recorded (it drives no build or
// promotion, and is checked again after Recheck). A recorded release's
// record stays whatever its recheck says.
func Admit(c SignatureCheck) (signature, held string) {
	strict := c.Strict && c.New
	switch {
	case c.Err != nil && strict:
		return "", "signature not checked yet: " + c.Err.Error()
	case c.Err != nil:
		return "unchecked: " + c.Err.Error(), ""
	case !c.Verified && strict:
		return "", "signature does not verify (verify.mode strict): " + c.Reason
	case !c.Verified:
		return "unverified: " + c.Reason, ""
	}
	return "verified by " + c.By, ""
}

// Shipped adds a release just recorded to the DTK images of its kernels
// (dtkImages are its streams' payload DTKs, in order; image finds the
// ledger's), creating those first seen, and lists the images it changed.
func Shipped(rel ledger.Release, dtkImages []string, image func(key string) (ledger.Image, bool), now time.Time) []Change {
	var out []Change
	for i, s := range rel.Streams {
		if s.Held != "" {
			continue
		}
		key := ledger.ImageID{Stream: s.Stream, Arch: rel.Arch, Kernel: s.Kernel}.Key()
		m, ok := image(key)
		if !ok {
			var source, dtkImage string
			if len(rel.Sources) > 0 {
				source = rel.Sources[0].String()
			}
			if i < len(dtkImages) {
				dtkImage = dtkImages[i]
			}
			m = ledger.NewDTK(rel.Arch, s, dtkImage, rel.Version, source, now)
		}
		if m.ShippedBy(rel.Version, now) {
			out = append(out, Change{Image: m})
		}
	}
	return out
}

// Withdrawing is what Withdrawals decides from.
type Withdrawing struct {
	Listing
	// Only narrows the tags withdrawn to one release's ("" all).
	Only     string
	Promoted map[string]ledger.Promotion
	// Remove: the tags of a withdrawn pre-release are removed
	// (prerelease.on_withdrawn: withdraw), else reported.
	Remove bool
	Done   Done
}

// Withdrawals withdraws the pre-releases a release-controller now calls
// Rejected or Failed, and those that vanished from every feed that listed
// them: they drive no build and get no tag any more. The tags dtkbot gave a
// withdrawn release (its release tags, of every kind, in every repository)
// are removed, or reported; kernel tags stay (the image is verified, and
// other releases may ship its kernel).
func Withdrawals(w Withdrawing) Changes {
	listed := map[string]bool{}
	for _, rel := range w.Listed {
		for _, arch := range watcher.PayloadArches(rel.Arch) {
			listed[ledger.ReleaseKey(rel.Digest, arch)] = true
		}
	}
	rejected := map[string]string{} // version/arch -> by which feed
	for _, r := range w.Withdrawn {
		for _, arch := range watcher.PayloadArches(r.Arch) {
			if len(r.Sources) > 0 {
				rejected[r.Version+"/"+arch] = r.Sources[0].String()
			}
		}
	}
	var out Changes
	var withdrawn []ledger.Release
	for _, key := range sortedKeys(w.Releases) {
		rel := w.Releases[key]
		if rel.PreRelease() && rel.Withdrawn == "" && !listed[key] {
			why := ""
			if by, ok := rejected[rel.Version+"/"+rel.Arch]; ok {
				why = "rejected: " + by
			} else if vanished(rel, w.Read) {
				why = "vanished from " + describe(rel.Sources)
			}
			if why != "" && rel.Withdraw(why, w.Now) {
				out.Releases = append(out.Releases, ReleaseChange{Release: rel,
					Warns: fmt.Sprintf("pre-release %s (%s) withdrawn: %s", rel.Version, rel.Arch, why)})
			}
		}
		if rel.Withdrawn != "" && (w.Only == "" || rel.Version == w.Only) {
			withdrawn = append(withdrawn, rel)
		}
	}
	sort.SliceStable(withdrawn, func(i, j int) bool { return version.Compare(withdrawn[i].Version, withdrawn[j].Version) < 0 })
	for _, rel := range withdrawn {
		for _, ref := range sortedKeys(w.Promoted) {
			pr := w.Promoted[ref]
			if arch := pr.Arch(); pr.Release != rel.Version || pr.Kind == ledger.TagKernel || (arch != "" && arch != rel.Arch) {
				continue
			}
			a := Action{Type: ActionWithdraw, Release: rel.Version, Arch: rel.Arch, Tag: ref, Reason: rel.Withdrawn, Consumer: pr.Consumer,
				KernelKey: pr.KernelKey, Remove: w.Remove}
			if !w.Done.Actions[a.Key()] {
				out.Actions = append(out.Actions, a)
			}
		}
	}
	return out
}

// vanished reports whether every feed that listed a pre-release was read
// this pass and none lists it any more. A feed that failed to answer says
// nothing.
func vanished(rel ledger.Release, read map[string]bool) bool {
	if len(rel.Sources) == 0 {
		return false
	}
	for _, s := range rel.Sources {
		if s.Type != watcher.SourceReleaseController || !read[s.Key()] {
			return false
		}
	}
	return true
}

func describe(sources []watcher.Source) string {
	var out []string
	for _, s := range sources {
		out = append(out, s.String())
	}
	return strings.Join(out, ", ")
}
