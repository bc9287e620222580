package plan

import (
	"cmp"
	"fmt"
	"time"

	"github.com/dtkbot/dtkbot/ledger"
)

// Seen is what a round saw of one image: what its kernel tag and its
// staging reference hold, the image for its arch where what was found is a
// manifest list, and what its build backend says of the current attempt.
type Seen struct {
	KernelTag, Staging Ref
	// Instance is what was found (or the built image, not yet pinned),
	// read: nil when it was not.
	Instance *Instance
	// Report is the backend's answer, when it was asked (ReportDue).
	Report *Report
}

// Ref is what a reference held when it was looked at.
type Ref struct {
	// Looked: the registry answered (a reference it could not say anything
	// of tells nothing).
	Looked bool
	// Digest is what it holds; "" nothing.
	Digest string
}

// Instance is an image found, read for its arch.
type Instance struct {
	// Digest is the image for the arch: the list's instance, or what was
	// found when it is no list.
	Digest string
	List   bool
	// Unreadable says why, when what was found can never be read as an
	// image for the arch (a list without it, content that is broken).
	Unreadable string
}

// Report is how a requested build went, as its backend says (and the pass
// explained, scrubbed, in Reason and Detail).
type Report struct {
	// Unanswered: the backend could not say (try again later).
	Unanswered bool
	// Over: the build ended without pushing; Gone: the backend has no
	// trace of it.
	Over, Gone     bool
	Reason, Detail string
}

// Retries bound a kind's attempts: a requested build that has not appeared
// in the registry within Timeout is retried after Backoff (doubling for
// each attempt after the first, at most a day), up to MaxAttempts, then
// the image is failed. A build whose image fails verification spends its
// attempt too.
type Retries struct {
	Timeout     time.Duration
	MaxAttempts int
	Backoff     time.Duration
}

// after is what the failure of attempt number attempts leads to.
func (r Retries) after(attempts int, now time.Time) ledger.Retry {
	if attempts >= r.MaxAttempts {
		return ledger.Retry{Never: true}
	}
	d := r.Backoff
	for i := 1; i < attempts && d < 24*time.Hour; i++ {
		d *= 2
	}
	return ledger.Retry{At: now.Add(d)}
}

// DefaultVerifyInterruptions rejects an image the second time its
// verification dies with the process: once may be a coincidence (a node
// drained, a rollout), twice is the image.
const DefaultVerifyInterruptions = 2

// NewRounds gives every failed image, of every kind, a fresh round of
// attempts (--retry-failed).
func NewRounds(images []ledger.Image, now time.Time) Changes {
	var out Changes
	for _, m := range images {
		if m.State == ledger.StateFailed && m.NewRound(now) == nil {
			out.Images = append(out.Images, Change{Image: m, Says: []string{"a new round of attempts: " + m.Reason}})
		}
	}
	return out
}

// Awaited reports whether the registry may have news of m: it is new,
// requested, or built but not verified. Images verified or promoted are
// not looked at: the steady state costs no request.
func Awaited(m ledger.Image) bool {
	return m.State == ledger.StateNew || m.State == ledger.StateBuildRequested || m.State == ledger.StateBuilt
}

// ReportDue reports whether the backend of a requested image, not found,
// is asked how its build goes: always while the attempt is not
// acknowledged (the pass that recorded it may have died before asking),
// else until the timeout decides.
func ReportDue(m ledger.Image, k Kind, now time.Time) bool {
	return m.State == ledger.StateBuildRequested && (m.Asked < m.Attempts || now.Sub(m.BuildRequestedAt) <= k.Retries.Timeout)
}

// see moves m's record on by what the round saw of it, then plans its
// verification when it is built.
func (p *planner) see(m *ledger.Image, k Kind) {
	s, ok := p.in.Seen[m.Key()]
	if ok && (m.State == ledger.StateNew || m.State == ledger.StateBuildRequested) && !p.look(m, k, s) {
		return
	}
	if m.State == ledger.StateBuilt && (ok || m.ListDigest != "") {
		p.check(m, k, s)
	}
}

// look is what the registry (and the backend) said of an image awaited:
// for a new one first its kernel tag (it may be there from before the
// state file, or be someone else's), then the staging reference its build
// pushes to. Images that failed verification before do not count. It
// reports whether what was found may be checked now.
func (p *planner) look(m *ledger.Image, k Kind, s Seen) bool {
	kernelRef, err1 := KernelImage(k.Target, *m)
	staging, err2 := StagingImage(k.Target, *m)
	if err1 != nil || err2 != nil {
		return false // held with the reason
	}
	if d := s.KernelTag.Digest; m.State == ledger.StateNew && d != "" {
		if _, rejected := m.Rejected(d); !rejected {
			p.atKernelTag(m, k, kernelRef, d)
			return true
		}
	}
	if !s.Staging.Looked {
		return false
	}
	d := s.Staging.Digest
	before, rejected := m.Rejected(d)
	rejected = rejected && d != ""
	switch {
	case d != "" && !rejected:
		return p.transition(m, fmt.Sprintf("%s built: %s@%s", k.What, staging, d), func(m *ledger.Image) error {
			return m.Found(kernelRef, staging, d, p.in.Now)
		})
	case rejected && before.Untagged && m.State == ledger.StateBuildRequested && before.At.Before(m.BuildRequestedAt):
		// The rejected image's tag was removed, and a later build pushed
		// the very same image again: that attempt failed as well.
		if p.transition(m, "", func(m *ledger.Image) error { return m.Found(kernelRef, staging, d, p.in.Now) }) {
			p.reject(m, k, fmt.Sprintf("rejected: the build pushed %s again, which failed verification before: %s", d, before.Reason))
		}
		return false
	case m.State == ledger.StateBuildRequested:
		p.requested(m, k, s, staging, rejected)
	}
	return false
}

// atKernelTag decides about a new image found at its kernel tag: verified
// there before it is adopted, or, when nothing verifies its kind, failed:
// nothing unchecked is spread to release and floating tags.
func (p *planner) atKernelTag(m *ledger.Image, k Kind, kernelRef, d string) {
	if !k.Verified {
		reason := fmt.Sprintf("the kernel tag %s holds %s, which dtkbot did not put there, and %ss are not verified (build.verify: false): it is not adopted and no other tag is pointed at it; remove the tag (or turn verification on), then run dtkbot reconcile --retry-failed", kernelRef, d, k.What)
		if p.transition(m, "", func(m *ledger.Image) error { return m.Fail(kernelRef, reason, p.in.Now) }) {
			p.changed[m.Key()].Fails = reason
		}
		return
	}
	p.transition(m, fmt.Sprintf("the kernel tag %s already holds a %s (%s): verifying it", kernelRef, k.What, d), func(m *ledger.Image) error {
		return m.Found(kernelRef, "", d, p.in.Now)
	})
}

// requested decides about a requested build whose image has not appeared:
// a backend that says the build ended, or is gone, spends the attempt now
// rather than at the timeout; one with no trace of an attempt recorded and
// never acknowledged (the pass died between recording and asking) is asked
// again instead, as it names its builds by attempt; one that has it
// acknowledges it. A backend that cannot say, and whose builds die with
// the process that asked (Kind.AsksAgain), is asked again too. Else the
// timeout decides.
func (p *planner) requested(m *ledger.Image, k Kind, s Seen, staging string, rejected bool) {
	r := s.Report
	unacknowledged := m.Asked < m.Attempts
	switch {
	case r != nil && r.Unanswered:
	case r != nil && unacknowledged && r.Gone, r == nil && unacknowledged && k.AsksAgain:
		b := about(*m)
		b.Type, b.Releases, b.Image, b.Again = ActionBuild, m.Releases, m.Staging, true
		b.Reason = fmt.Sprintf("attempt %d was recorded and never asked for", m.Attempts)
		if r == nil {
			b.Reason = fmt.Sprintf("attempt %d was recorded and its request never acknowledged", m.Attempts)
		}
		b.IfFailed = k.Retries.after(m.Attempts, p.in.Now)
		p.act(&p.builds, b)
	case r != nil && unacknowledged && !r.Over:
		p.transition(m, "", func(m *ledger.Image) error { return m.Acknowledge(p.in.Now) })
	case r != nil && unacknowledged:
		p.attemptFailed(m, k, r.Reason, r.Detail)
	case p.in.Now.Sub(m.BuildRequestedAt) > k.Retries.Timeout:
		reason := fmt.Sprintf("the build requested at %s did not appear within %s", m.BuildRequestedAt.UTC().Format(time.RFC3339), k.Retries.Timeout)
		if rejected {
			reason += fmt.Sprintf(" (%s still holds the image rejected before, %s)", staging, s.Staging.Digest)
		}
		p.attemptFailed(m, k, reason, m.Detail)
	case r != nil && r.Over:
		p.attemptFailed(m, k, r.Reason, r.Detail)
	}
}

// attemptFailed ends the current attempt: retried after the backoff, or,
// once the attempts are spent, failed.
func (p *planner) attemptFailed(m *ledger.Image, k Kind, reason, detail string) {
	next := k.Retries.after(m.Attempts, p.in.Now)
	if next.Never {
		reason += fmt.Sprintf(" (%d attempts)", m.Attempts)
	}
	p.transition(m, reason, func(m *ledger.Image) error { return m.AttemptFailed(reason, detail, next, p.in.Now) })
}

// check settles a built image: pinned to one image for its arch, then
// verified (when its kind is). A list found at the kernel tag is rejected:
// dtkbot did not put it there and cannot vouch for its other platforms;
// so is one without an image for the arch. An image whose verification
// died with the process Input.VerifyInterruptions times is rejected
// without being read again: a poison image fails instead of killing every
// process that reads it.
func (p *planner) check(m *ledger.Image, k Kind, s Seen) {
	if m.ListDigest == "" {
		in := s.Instance
		found := m.PinnedImage()
		switch {
		case in == nil:
			return // not read now
		case in.Unreadable != "":
			p.reject(m, k, fmt.Sprintf("verifying %s: %s", found, in.Unreadable))
			return
		case in.List && m.Staging == "":
			p.reject(m, k, fmt.Sprintf("verifying %s: rejected: %s is a manifest list: only its %s image could be verified, and the kernel tag, which dtkbot did not put there, serves the others too", found, found, m.Arch))
			return
		case in.List:
			says := fmt.Sprintf("the %s %s is a manifest list: only its %s image, %s, is verified and promoted", k.What, found, m.Arch, in.Digest)
			if !p.transition(m, says, func(m *ledger.Image) error { return m.Pin(in.Digest, p.in.Now) }) {
				return
			}
		}
	}
	if !k.Verified {
		return
	}
	rec := ledger.Verification{Digest: m.ImageDigest, Since: p.in.Now}
	if v := m.Verifying; v != nil && v.Digest == m.ImageDigest {
		// The last verification of this image did not end: the process
		// died while it ran.
		rec.Since, rec.Interrupted = v.Since, v.Interrupted+1
	}
	if rec.Interrupted >= cmp.Or(p.in.VerifyInterruptions, DefaultVerifyInterruptions) {
		p.reject(m, k, fmt.Sprintf("rejected: verifying it stopped the process %d %s (out of memory, or killed, while reading it; first at %s): it is not read again",
			rec.Interrupted, plural(rec.Interrupted, "time", "times"), rec.Since.UTC().Format(time.RFC3339)))
		return
	}
	a := about(*m)
	a.Type, a.Image, a.Verification, a.IfFailed = ActionVerify, m.PinnedImage(), rec, k.Retries.after(m.Attempts, p.in.Now)
	if m.Staging == "" {
		a.Tag, a.Kind = m.Image, ledger.TagKernel // adopted there if it passes
	}
	p.act(&p.checks, a)
}

// reject plans the rejection of built image m, unread, for verdict.
func (p *planner) reject(m *ledger.Image, k Kind, verdict string) {
	a := about(*m)
	a.Type, a.Image, a.Verdict, a.IfFailed = ActionVerify, m.PinnedImage(), verdict, k.Retries.after(m.Attempts, p.in.Now)
	p.act(&p.checks, a)
}

// transition makes transition t on m, noting the change (says, for the
// log). A transition the lifecycle refuses is a bug of the plan's: it
// fails the pass, saying so.
func (p *planner) transition(m *ledger.Image, says string, t func(*ledger.Image) error) bool {
	next := *m
	if err := t(&next); err != nil {
		p.change(*m, "").Fails = err.Error()
		return false
	}
	*m = next
	p.change(next, says)
	return true
}

// settle marks promoted an image whose verified image is at its kernel tag
// with none of its promotions failed in this pass (a tag dtkbot will not
// overwrite is no failure: it is reported), and removes its staging tag.
func (p *planner) settle(m *ledger.Image, k Kind) {
	promotable := m.State == ledger.StateVerified || (m.State == ledger.StateBuilt && !k.Verified)
	if promotable && m.Published && !p.in.Done.PromoteFailed[m.Key()] {
		p.transition(m, k.What+" promoted", func(m *ledger.Image) error { return m.Promote(k.Verified, p.in.Now) })
	}
	if m.State == ledger.StatePromoted && m.Staging != "" && m.StagingRemoved == "" {
		a := about(*m)
		a.Type, a.Tag, a.Image = ActionUnstage, m.Staging, m.PinnedImage()
		p.act(&p.chores, a)
	}
}

// consumerImages gives every promoted DTK an image of each consumer for
// each kernel variant the consumer asks for that the DTK carries (new, to
// be built FROM it, once the registry was looked at for it), and keeps the
// consumers' images of each kernel in step with its DTK: the releases that
// ship the kernel, and the DTK by digest. The default kernel's image is
// made at once; a variant's once the DTK's files were read (KernelFilesDue)
// and say the DTK carries that variant's kernel: what the DTK declares,
// never a guess, names a variant's uname -r.
func (p *planner) consumerImages(images []ledger.Image) {
	at := map[string]int{}
	for i, m := range images {
		at[m.Key()] = i
	}
	for _, dtk := range images {
		if !dtk.IsDTK() || !builtFrom(dtk) {
			continue // never before the DTK is verified and promoted
		}
		for _, name := range sortedKeys(p.in.Kinds) {
			if name == ledger.KindDTK {
				continue
			}
			for _, v := range p.in.Kinds[name].variants() {
				vk, carried := dtk.Carries(v)
				if v == ledger.VariantDefault {
					vk, carried = ledger.VariantKernel{}, true
				}
				id := dtk.ID()
				id.Consumer, id.Variant = name, v
				i, ok := at[id.Key()]
				switch {
				case !ok && carried:
					p.change(dtk.NewConsumerImage(name, vk, p.in.Now), "")
				case ok:
					if m := images[i]; m.Follow(dtk, p.in.Now) {
						images[i] = m
						p.change(m, "")
					}
				}
			}
		}
	}
}

// KernelFilesDue lists the promoted DTKs of which it is not known whether
// they carry the kernel's files, when a consumer needs them (a DTK promoted
// before a consumer needed them), or which variants' kernels they carry,
// when a consumer asks for a variant: the plan builds no such consumer's
// image FROM a DTK before it knows, and holds them, with that one reason,
// FROM one that lacks them. They are read once per DTK image.
func KernelFilesDue(images []ledger.Image, kinds map[string]Kind) []ledger.Image {
	needed, variants := false, false
	for _, k := range kinds {
		needed, variants = needed || k.NeedsKernelFiles, variants || k.asksVariants()
	}
	var out []ledger.Image
	for _, dtk := range images {
		_, known := dtk.KernelFilesOf()
		if ((needed && !known) || (variants && !dtk.VariantsKnown())) && dtk.IsDTK() && builtFrom(dtk) {
			out = append(out, dtk)
		}
	}
	return out
}

// readKernelFiles records what the round read of promoted DTKs' kernel
// files.
func (p *planner) readKernelFiles(images []ledger.Image) {
	for i, dtk := range images {
		check, ok := p.in.KernelFiles[dtk.Key()]
		if !ok {
			continue
		}
		dtk.KernelFilesRead(check, p.in.Now)
		images[i] = dtk
		c := p.change(dtk, "")
		if len(check.Missing) > 0 {
			c.Warns = KernelFilesMissing(dtk, ledger.VariantKernel{KernelFull: dtk.KernelFull, Missing: check.Missing})
		}
	}
}

// forgetAdoptedBefore marks adopted an image a state file written before
// Image.Adopted existed recorded as found at its kernel tag (verified
// there, never staged), and forgets the promotion it recorded for that
// tag: the tag is not dtkbot's, so the audit never moves it.
func (p *planner) forgetAdoptedBefore(m *ledger.Image) {
	if !m.AdoptedBefore() {
		return
	}
	p.change(*m, "adopted at its kernel tag, found there before this state file recorded adoption")
	if pr, ok := p.in.Promoted[m.Image]; ok && pr.Digest == m.ImageDigest && pr.Kind == ledger.TagKernel {
		a := about(*m)
		a.Type, a.Tag, a.Reason = ActionForget, m.Image, "found at its kernel tag and adopted, not promoted by dtkbot"
		p.act(&p.chores, a)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
