package plan

import (
	"fmt"
	"time"

	"github.com/dtkbot/dtkbot/ledger"
)

// AuditDue reports whether the drift audit runs now: once per interval (0:
// never) since the last complete one, when dtkbot promoted any tag.
func AuditDue(last, now time.Time, interval time.Duration, promoted int) bool {
	return interval > 0 && promoted > 0 && now.Sub(last) >= interval
}

// Auditing is what Audit decides from.
type Auditing struct {
	Promoted map[string]ledger.Promotion
	// Holds is what each promoted tag the audit looked at holds now ("":
	// gone); a tag it could not look at is not here.
	Holds map[string]string
	// Images are the ledger's images, every kind.
	Images []ledger.Image
	// Repair: a drifted tag is re-pointed (target.audit.on_drift:
	// repoint), else reported.
	Repair bool
}

// Audit plans what the drift audit does about each tag dtkbot promoted that
// someone moved or deleted: re-point it at the verified image it held
// (another tag than the kernel tag only once the kernel tag holds that
// image: rule 1), or report it. A tag dtkbot never promoted is never looked
// at, let alone touched.
func Audit(in Auditing) []Action {
	byKey := map[string]ledger.Image{}
	for _, m := range in.Images {
		byKey[m.Key()] = m
	}
	var out []Action
	for _, ref := range sortedKeys(in.Holds) {
		pr, ok := in.Promoted[ref]
		now := in.Holds[ref]
		if !ok || now == pr.Digest {
			continue
		}
		a := Action{Type: ActionAudit, Kernel: pr.Kernel, Release: pr.Release, Tag: ref, Kind: pr.Kind, KernelKey: pr.KernelKey, Consumer: pr.Consumer}
		if now == "" {
			a.Reason = fmt.Sprintf("gone (dtkbot promoted it to %s)", pr.Digest)
		} else {
			a.Reason = fmt.Sprintf("moved to %s (dtkbot promoted it to %s)", now, pr.Digest)
		}
		image, found := imageOf(pr, byKey, in.Images)
		switch {
		case !in.Repair:
		case !found:
			a.Unrepaired = "its image is not in the ledger"
		default:
			a.Repoint, a.Image = true, image
			if m, ok := byKey[pr.ImageKey()]; ok && m.Image != ref {
				a.After = m.Image
			}
		}
		out = append(out, a)
	}
	return out
}

// imageOf finds the verified image (pinned by digest) a promoted tag held:
// a kernel's DTK, or a consumer's image.
func imageOf(pr ledger.Promotion, byKey map[string]ledger.Image, images []ledger.Image) (string, bool) {
	if m, ok := byKey[pr.ImageKey()]; ok && m.ImageDigest == pr.Digest {
		return m.PinnedImage(), true
	}
	for _, m := range images {
		if m.Consumer == pr.Consumer && m.ImageDigest == pr.Digest && (m.State == ledger.StateVerified || m.State == ledger.StatePromoted) {
			return m.PinnedImage(), true
		}
	}
	return "", false
}
