package upgradegraph

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/redact"
	"github.com/dtkbot/dtkbot/watcher"
)

// Readiness states of a release's drivers, worst last.
const (
	// Ready: every kernel it ships has a promoted, verified Driver
	// Toolkit image and a promoted, verified image of each consumer.
	Ready = "ready"
	// Waiting: something is on its way (not built yet, building, being
	// verified or promoted).
	Waiting = "waiting"
	// Unknown: dtkbot has not read its payload, or cannot know its kernel.
	Unknown = "unknown"
	// Blocked: something needs a person: a build failed, an image was
	// rejected, a payload or stream is held, a tag holds someone else's
	// image.
	Blocked = "blocked"
)

// States lists the readiness states, best first.
var States = []string{Ready, Waiting, Unknown, Blocked}

// Readiness says whether the drivers are ready for a release, and if not,
// what they wait for: one risk per missing piece.
type Readiness struct {
	Version string
	State   string
	Risks   []Risk
}

// Risk is a conditional update risk as the cluster-version-operator reads
// it (openshift/api config/v1 ConditionalUpdateRisk): dtkbot's always
// match (Always), since a missing driver is missing on every cluster that
// runs it.
type Risk struct {
	URL           string `json:"url"`
	Name          string `json:"name"`
	Message       string `json:"message"`
	MatchingRules []Rule `json:"matchingRules"`
	// State is how bad it is: Waiting, Unknown or Blocked.
	State string `json:"-"`
}

// Rule is a risk's matching rule.
type Rule struct {
	Type string `json:"type"`
}

var always = []Rule{{Type: "Always"}}

// maxRisks bounds dtkbot's risks on one update: the CVO joins their
// messages into one condition (at most 32768 bytes) and the API server
// takes at most 200 risks.
const maxRisks = 24

// index is the snapshot, keyed as the readiness of a release reads it.
type index struct {
	in       Input
	arches   []string
	releases map[string]ledger.Release     // by ReleaseKey
	byName   map[string]ledger.Release     // by version/arch
	held     map[string]ledger.HeldRelease // by ReleaseKey
	images   map[string]ledger.Image       // by image key: DTKs and consumers' images
	notices  map[string]ledger.Notice      // by kernel key
	page     string
}

func newIndex(in Input) *index {
	ix := &index{in: in, arches: watcher.PayloadArches(in.Arch), releases: map[string]ledger.Release{}, byName: map[string]ledger.Release{},
		held: map[string]ledger.HeldRelease{}, images: map[string]ledger.Image{}, notices: map[string]ledger.Notice{}, page: in.PageURL}
	if !strings.HasSuffix(ix.page, "/") {
		ix.page += "/"
	}
	snap := in.Snapshot
	if snap == nil {
		return ix
	}
	for _, r := range snap.Releases {
		ix.releases[ledger.ReleaseKey(r.Digest, r.Arch)] = r
		ix.byName[r.Version+"/"+r.Arch] = r
	}
	for _, h := range snap.Held {
		ix.held[h.Key()] = h
	}
	for _, m := range snap.Kernels {
		ix.images[m.Key()] = m
	}
	for _, m := range snap.Consumers {
		ix.images[m.Key()] = m
	}
	ix.notices = snap.Notices
	return ix
}

// readiness is what the drivers of one node's release wait for, for every
// arch its payload is read for (both of a multi payload's).
func (ix *index) readiness(n watcher.GraphNode) Readiness {
	out := Readiness{Version: n.Version, State: Ready}
	digest := digestOf(n.Payload)
	if digest == "" {
		out.add(Risk{Name: riskName("PayloadNotPinned", n.Version), State: Unknown, URL: ix.releaseURL(n.Version),
			Message: fmt.Sprintf("The payload of %s is not pinned by digest (%s): dtkbot reads payloads by digest only, so what it ships, and whether drivers are ready for it, is unknown.",
				n.Version, redact.Text(n.Payload))})
	}
	for _, arch := range ix.arches {
		if digest == "" {
			break
		}
		key := ledger.ReleaseKey(digest, arch)
		if h, ok := ix.held[key]; ok {
			out.add(Risk{Name: riskName("ReleaseHeld", n.Version, arch), State: Blocked, URL: ix.releaseURL(n.Version),
				Message: fmt.Sprintf("dtkbot holds the payload of %s for %s and builds nothing for it (%s): %s.", n.Version, arch, h.Kind, firstLine(h.Reason))})
			continue
		}
		r, ok := ix.releases[key]
		if !ok {
			out.add(Risk{Name: riskName("ReleaseNotInspected", n.Version, arch), State: Unknown, URL: ix.releaseURL(n.Version),
				Message: fmt.Sprintf("dtkbot has not read the payload of %s for %s yet: the kernels it ships, and whether drivers are ready for them, are unknown.", n.Version, arch)})
			continue
		}
		if len(r.Streams) == 0 {
			out.add(Risk{Name: riskName("KernelUnknown", n.Version, arch), State: Unknown, URL: ix.releaseURL(n.Version),
				Message: fmt.Sprintf("dtkbot read the payload of %s for %s and found no kernel in it: whether drivers are ready for it is unknown.", n.Version, arch)})
		}
		for _, s := range r.Streams {
			ix.streamRisks(&out, r, s)
		}
	}
	if len(out.Risks) > maxRisks {
		more := len(out.Risks) - (maxRisks - 1)
		out.Risks = append(out.Risks[:maxRisks-1], Risk{Name: riskName("DriversNotReady", n.Version), State: out.State, URL: ix.releaseURL(n.Version),
			Message: fmt.Sprintf("And %d more kernel images are missing for %s.", more, n.Version)})
	}
	return out
}

// add records a risk, and the worse state. Two missing pieces of one name
// (one kernel in two streams) are one risk: names are keys of the CVO's.
func (r *Readiness) add(risk Risk) {
	risk.MatchingRules = always
	if i := slices.IndexFunc(r.Risks, func(x Risk) bool { return x.Name == risk.Name }); i >= 0 {
		if !strings.Contains(r.Risks[i].Message, risk.Message) {
			r.Risks[i].Message += " " + risk.Message
		}
	} else {
		r.Risks = append(r.Risks, risk)
	}
	if slices.Index(States, risk.State) > slices.Index(States, r.State) {
		r.State = risk.State
	}
}

// kernelRef is one kernel a stream ships, as a node boots it: what
// dtkbot's images are keyed by. A kernel variant a node may boot (rt, 64k)
// is one more kernelRef of its stream, with its own uname -r.
type kernelRef struct {
	Stream, Arch string
	Kernel       string // VERSION-RELEASE, the ledger's key
	KernelFull   string // uname -r
	Variant      string // "" the default kernel, rt, 64k
	// Shipped: the payload says the release ships the variant (its RT
	// kernel); else it is known from the DTK that carries it.
	Shipped bool
}

// id is the identity of the kernel's images (of consumer c).
func (k kernelRef) id(c string) ledger.ImageID {
	return ledger.ImageID{Consumer: c, Stream: k.Stream, Arch: k.Arch, Kernel: k.Kernel, Variant: k.Variant}
}

// key is the key of the kernel's DTK.
func (k kernelRef) key() string { return k.id("").DTK().Key() }

// kernelsOf lists the kernels of one stream of a release a node may boot:
// the default kernel, the RT kernel the payload ships, and each variant's
// kernel its DTK carries (64k pages).
func (ix *index) kernelsOf(r ledger.Release, s ledger.ReleaseShips) []kernelRef {
	full := s.KernelFull
	if full == "" {
		full = s.Kernel
	}
	def := kernelRef{Stream: s.Stream, Arch: r.Arch, Kernel: s.Kernel, KernelFull: full, Shipped: true}
	out := []kernelRef{def}
	dtk := ix.images[def.key()]
	for _, v := range []string{ledger.VariantRT, ledger.Variant64K} {
		k := def
		k.Variant, k.Shipped, k.KernelFull = v, false, ""
		if vk, ok := dtk.Carries(v); ok {
			k.KernelFull = vk.KernelFull
		}
		switch {
		case v == ledger.VariantRT && s.RTKernel != "":
			k.Shipped = true
			if k.KernelFull == "" {
				k.KernelFull = rtFull(s.RTKernel, r.Arch, full)
			}
		case v == ledger.Variant64K && dtk.Ships64K():
			k.Shipped = true
			if k.KernelFull == "" {
				k.KernelFull = full + "+64k"
			}
		}
		if k.KernelFull != "" {
			out = append(out, k)
		}
	}
	return out
}

// rtFull is the RT kernel's uname -r from its VERSION-RELEASE: RHEL 8 and
// early RHEL 9 write "rt" into the release, later ones add "+rt".
func rtFull(vr, arch, kernelFull string) string {
	a := kernelFull[strings.LastIndex(kernelFull, ".")+1:] // the kernel's arch: x86_64
	if a == kernelFull {
		a = arch
	}
	if strings.Contains(vr, ".rt") {
		return vr + "." + a
	}
	return vr + "." + a + "+rt"
}

// streamRisks adds the risks of one stream of a release: held, or each of
// its kernels without a promoted DTK or consumer image.
func (ix *index) streamRisks(out *Readiness, r ledger.Release, s ledger.ReleaseShips) {
	switch {
	case s.Held != "" && s.Kernel == "":
		out.add(Risk{Name: riskName("KernelUnknown", r.Version, s.Stream, r.Arch), State: Unknown, URL: ix.releaseURL(r.Version),
			Message: fmt.Sprintf("The kernel of the %s stream of %s (%s) is unknown to dtkbot (%s): no driver is built for it.", s.Stream, r.Version, r.Arch, firstLine(s.Held))})
		return
	case s.Held != "":
		out.add(Risk{Name: riskName("StreamHeld", r.Version, s.Stream, r.Arch), State: Blocked, URL: ix.releaseURL(r.Version),
			Message: fmt.Sprintf("dtkbot builds nothing for the %s stream of %s (%s): %s.", s.Stream, r.Version, r.Arch, firstLine(s.Held))})
		return
	}
	for _, k := range ix.kernelsOf(r, s) {
		ix.kernelRisks(out, k)
	}
}

// kernelRisks adds a risk for the kernel's DTK unless it is promoted, and
// one for each consumer's image unless it is promoted. A consumer's image
// not made yet because the DTK is not promoted is said by the DTK's risk.
// A kernel's risks name the kernel, never a release: the same kernel
// shipped by several releases is one risk of one name and one message.
func (ix *index) kernelRisks(out *Readiness, k kernelRef) {
	dtk, haveDTK := ix.images[k.key()]
	dtkReady := haveDTK && dtk.State == ledger.StatePromoted
	var waiting []string
	for _, c := range ix.in.Consumers {
		if !slices.Contains(ix.in.variantsOf(c), k.Variant) {
			continue
		}
		m, ok := ix.images[k.id(c).Key()]
		_, carried := dtk.Carries(k.Variant)
		switch {
		case ok && m.State == ledger.StatePromoted:
		case !ok && !dtkReady:
			waiting = append(waiting, c)
		case !ok && k.Variant != ledger.VariantDefault && !carried && !k.Shipped:
			// A variant the payload does not name and the DTK does not carry.
		case !ok && k.Variant != ledger.VariantDefault && !carried:
			if dtk.VariantsKnown() {
				out.add(Risk{Name: riskName("KernelModuleNotReady", c, k.KernelFull), State: Blocked, URL: ix.kernelURL(k),
					Message: fmt.Sprintf("No verified %s image for the %s kernel %s (%s): the release ships it, and its Driver Toolkit image does not carry it.", c, k.Variant, k.KernelFull, k.Stream)})
				continue
			}
			out.add(Risk{Name: riskName("KernelModuleNotReady", c, k.KernelFull), State: Waiting, URL: ix.kernelURL(k),
				Message: fmt.Sprintf("No verified %s image for the %s kernel %s (%s) yet: not built yet.", c, k.Variant, k.KernelFull, k.Stream)})
		default:
			phrase, st := ix.phrase(m, ok)
			if v, ok := abiVerdict(dtk, c, k.Variant); ok && !v.Loads {
				phrase += "; ABI: " + redact.Text(v.String())
			}
			out.add(Risk{Name: riskName("KernelModuleNotReady", c, k.KernelFull), State: st, URL: ix.kernelURL(k),
				Message: fmt.Sprintf("No verified %s image for kernel %s (%s) yet: %s.", c, k.KernelFull, k.Stream, phrase)})
		}
	}
	if dtkReady || k.Variant != ledger.VariantDefault {
		return // a DTK's risk is its kernel's, said once
	}
	phrase, st := ix.phrase(dtk, haveDTK)
	msg := fmt.Sprintf("No verified Driver Toolkit image for kernel %s (%s) yet: %s.", k.KernelFull, k.Stream, phrase)
	if len(waiting) > 0 {
		msg += fmt.Sprintf(" The images of %s are built from it and wait for it.", strings.Join(waiting, ", "))
	}
	out.add(Risk{Name: riskName("DriverToolkitNotReady", k.KernelFull), State: st, URL: ix.kernelURL(k), Message: msg})
}

// phrase says where an image that is not promoted is, and how bad that is.
func (ix *index) phrase(m ledger.Image, ok bool) (string, string) {
	if !ok {
		return "not built yet", Waiting
	}
	rejected := ""
	if n := len(m.Rejections); n > 0 {
		why := m.Rejections[n-1].Reason
		if _, after, ok := strings.Cut(why, "rejected: "); ok {
			why = after
		}
		rejected = "rejected: " + firstLine(why)
	}
	switch m.State {
	case ledger.StateFailed:
		if rejected != "" && strings.Contains(m.Reason, m.Rejections[len(m.Rejections)-1].Reason) {
			return rejected, Blocked
		}
		return "failed: " + firstLine(m.Reason), Blocked
	case ledger.StateBuildRequested:
		return fmt.Sprintf("building since %s (attempt %d)", when(m.BuildRequestedAt), max(m.Attempts, 1)), Waiting
	case ledger.StateBuilt:
		return "built, being verified", Waiting
	case ledger.StateVerified:
		if len(m.Conflicts) > 0 {
			return fmt.Sprintf("held: verified, but its tag %s holds an image dtkbot did not put there", m.Conflicts[0].Tag), Blocked
		}
		return "verified, being promoted", Waiting
	}
	// New: never built, or waiting to be retried.
	switch {
	case rejected != "":
		return rejected + fmt.Sprintf(" (retried after %s)", when(m.NextAttemptAt)), Waiting
	case m.Attempts > 0:
		return fmt.Sprintf("attempt %d failed (%s), retried after %s", m.Attempts, firstLine(m.Reason), when(m.NextAttemptAt)), Waiting
	case m.IsDTK() && !ix.driven(m):
		return fmt.Sprintf("not built: only pre-releases dtkbot builds nothing for ship it (prerelease.build: %s)", strings.Join(ix.in.BuildKinds, ", ")), Blocked
	}
	return "not built yet", Waiting
}

// driven reports whether a release shipping m's kernel makes dtkbot build
// it: a GA release, or a pre-release of a kind built (as plan decides).
func (ix *index) driven(m ledger.Image) bool {
	for _, v := range m.Releases {
		r, ok := ix.byName[v+"/"+m.Arch]
		if !ok || (r.Withdrawn == "" && (!r.PreRelease() || slices.Contains(ix.in.BuildKinds, r.Kind))) {
			return true
		}
	}
	return len(m.Releases) == 0
}

// abiVerdict is the DTK's newest verdict on whether a consumer's modules of
// another kernel would load on this one.
func abiVerdict(dtk ledger.Image, consumer, variant string) (ledger.ABIVerdict, bool) {
	for i := len(dtk.ABI) - 1; i >= 0; i-- {
		if dtk.ABI[i].Consumer == consumer && dtk.ABI[i].Variant == variant {
			return dtk.ABI[i], true
		}
	}
	return ledger.ABIVerdict{}, false
}

// kernelURL is the kernel's GitHub issue, or the coverage page at it.
func (ix *index) kernelURL(k kernelRef) string {
	if n, ok := ix.notices[k.key()]; ok && n.IssueURL != "" {
		return n.IssueURL
	}
	return ix.page + "?kernel=" + url.QueryEscape(k.Kernel)
}

// releaseURL is the coverage page at a release.
func (ix *index) releaseURL(v string) string { return ix.page + "?release=" + url.QueryEscape(v) }

// riskName is a risk's name: a CamelCase reason, then what is missing
// (the kernel as `uname -r` says it, a consumer, a release), as a
// Kubernetes condition reason allows (letters, digits, underscores). The
// CVO keeps risks by name across every update it lists and an admin
// accepts a risk by its name: a name stands for one missing piece, so
// that accepting it never accepts another kernel's.
func riskName(reason string, parts ...string) string {
	var b strings.Builder
	b.WriteString(reason)
	for _, p := range parts {
		b.WriteByte('_')
		sep := false
		for _, r := range p {
			if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				if sep && !strings.HasSuffix(b.String(), "_") {
					b.WriteByte('_')
				}
				b.WriteRune(r)
				sep = false
				continue
			}
			sep = true
		}
	}
	return strings.TrimRight(b.String(), "_")
}

// maxReason is how much of a reason a risk's message quotes: enough for a
// person to know what went wrong, the rest behind its link.
const maxReason = 240

// firstLine is the first line of a reason, fit for public text and short.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	s = strings.TrimSuffix(redact.Text(s), ".")
	if len(s) <= maxReason {
		return s
	}
	cut := strings.LastIndex(s[:maxReason], "; ")
	if cut < maxReason/2 {
		cut = strings.LastIndexByte(s[:maxReason], ' ')
	}
	if cut < maxReason/2 {
		cut = maxReason
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
	}
	return strings.TrimRight(s[:cut], " ;,") + " …"
}

func when(t time.Time) string {
	if t.IsZero() {
		return "now"
	}
	return t.UTC().Format("2006-01-02 15:04 MST")
}

// digestOf is the digest a payload is pinned by ("" when it is not): the
// part after its last "@", if that is a digest. (A full parse of the
// reference, 500 times per computation, costs more than the rest of the
// nodes' readiness.)
func digestOf(pullspec string) string {
	i := strings.LastIndexByte(pullspec, '@')
	if i < 0 {
		return ""
	}
	d, err := digest.Parse(pullspec[i+1:])
	if err != nil {
		return ""
	}
	return d.String() // a payload whose name is no reference was never read: its risk says so
}
