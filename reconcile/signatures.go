package reconcile

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/releaseinfo"
	"github.com/dtkbot/dtkbot/releasesig"
)

// SignatureSummary is what the signature checks of a pass found.
type SignatureSummary struct {
	Mode string `json:"mode"`
	// Trust is what signatures are verified with; empty means nothing, and
	// then every check says so (one warning per pass, not per release).
	Trust      string   `json:"trust"`
	Verified   int      `json:"verified"`
	Unverified []string `json:"unverified,omitempty"` // releases, in warn mode
	Unchecked  []string `json:"unchecked,omitempty"`  // releases whose store could not be read
	Held       []string `json:"held,omitempty"`       // releases not recorded (strict mode)
}

// checkSignature applies the signature policy to a newly read payload. It
// returns false when the payload must not be recorded: it is then held, and
// checked again on the next pass (the store may be down now, or the
// signature published later).
func (p *pass) checkSignature(ctx context.Context, j job, rep *releaseinfo.Report, rel *ledger.Release) bool {
	r := p.r
	if r.Signatures == nil || r.SignatureMode == "" || r.SignatureMode == releasesig.ModeOff {
		return true
	}
	if p.sig.Mode == "" {
		p.sig = SignatureSummary{Mode: r.SignatureMode, Trust: r.Signatures.Trust()}
	}
	strict := r.SignatureMode == releasesig.ModeStrict
	held := func(reason string) bool {
		p.sig.Held = append(p.sig.Held, rep.Release)
		p.hold(ledger.HeldRelease{Version: rep.Release, Pullspec: j.release.Pullspec, Digest: rep.Digest, Arch: rep.Arch,
			Channels: j.release.Channels, Kind: HeldSignature, Reason: reason, Since: p.since(rep.Digest, rep.Arch)})
		return false
	}
	v, err := r.Signatures.Check(ctx, j.release.Pullspec, digest.Digest(rep.Digest))
	switch {
	case err != nil && strict:
		p.fail(fmt.Errorf("checking the signature of %s: %w", rep.Release, err))
		return held("signature not checked yet: " + err.Error())
	case err != nil:
		rel.Signature = "unchecked: " + err.Error()
		p.sig.Unchecked = append(p.sig.Unchecked, rep.Release)
		p.log.Debug().Str("release", rep.Release).Err(err).Msg("signature not checked")
	case !v.Verified && strict:
		return held("signature does not verify (verify.mode strict): " + v.Reason)
	case !v.Verified:
		rel.Signature = "unverified: " + v.Reason
		p.sig.Unverified = append(p.sig.Unverified, rep.Release)
		p.log.Debug().Str("release", rep.Release).Str("digest", rep.Digest).Str("reason", v.Reason).Msg("payload signature does not verify")
	default:
		rel.Signature = "verified by " + v.By
		p.sig.Verified++
	}
	return true
}

// since keeps the first time a release was held.
func (p *pass) since(d, arch string) time.Time {
	if h, ok := p.view.held[ledger.ReleaseKey(d, arch)]; ok {
		return h.Since
	}
	return p.now
}

// sigWarnings says once per pass what the signature checks found wanting.
func (p *pass) sigWarnings() {
	s := p.sig
	switch {
	case s.Mode == "":
		return
	case s.Trust == "":
		p.warn(fmt.Sprintf("no payload signature can be verified (%v): %d payloads recorded unverified", releasesig.ErrNoTrust, len(s.Unverified)+len(s.Held)))
		return
	}
	if len(s.Unverified) > 0 {
		p.warn(fmt.Sprintf("%d payload signatures do not verify (verify.mode %s): %s", len(s.Unverified), s.Mode, list(s.Unverified)))
	}
	if len(s.Unchecked) > 0 {
		p.warn(fmt.Sprintf("%d payload signatures could not be checked (the signature store failed): %s", len(s.Unchecked), list(s.Unchecked)))
	}
	if len(s.Held) > 0 {
		p.warn(fmt.Sprintf("%d payloads held until their signatures verify: %s", len(s.Held), list(s.Held)))
	}
}

// list names at most ten releases.
func list(releases []string) string {
	if len(releases) > 10 {
		return strings.Join(releases[:10], ", ") + fmt.Sprintf(" and %d more", len(releases)-10)
	}
	return strings.Join(releases, ", ")
}
