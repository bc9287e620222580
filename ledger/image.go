package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

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
	Consumer string `json:"consumer,omitempty"`
	// Variant is, for a consumer's image, the kernel variant it is built
	// for ("" the default kernel: every image of a state file from before
	// variants); KernelFull is then that variant's uname -r. A DTK has none.
	Variant    string   `json:"variant,omitempty"`
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
// Variants are the other kernels the DTK declares it carries (its release
// JSON's RT_KERNEL_VERSION and KERNEL_64K_VERSION), each with the files it
// lacks: what the DTK says, read from it, is the only source of which
// variants a kernel has images for.
type KernelFilesCheck struct {
	Digest   string          `json:"digest"`
	Missing  []string        `json:"missing,omitempty"`
	Variants []VariantKernel `json:"variants,omitempty"`
	// VariantsRead says the check read the variants' kernels too: a check
	// an earlier dtkbot recorded did not, and is made again when a
	// consumer asks for a variant.
	VariantsRead bool `json:"variants_read,omitempty"`
}

// VariantKernel is one variant's kernel a DTK carries: its uname -r, and
// the kernel files it lacks.
type VariantKernel struct {
	Variant    string   `json:"variant"`
	KernelFull string   `json:"kernel_full"`
	Missing    []string `json:"missing,omitempty"`
}

// Carries says whether the DTK's current image carries variant v's kernel,
// as the check of its files read it: its uname -r and the files it lacks.
// The default kernel is always carried (its files may be missing: see
// Missing), but known only once the check was made.
func (m Image) Carries(v string) (VariantKernel, bool) {
	check, ok := m.KernelFilesOf()
	if !ok {
		return VariantKernel{}, false
	}
	if v == VariantDefault {
		return VariantKernel{KernelFull: m.KernelFull, Missing: check.Missing}, true
	}
	if !check.VariantsRead {
		return VariantKernel{}, false // not known: an earlier dtkbot's check
	}
	for _, vk := range check.Variants {
		if vk.Variant == v {
			return vk, true
		}
	}
	return VariantKernel{}, false
}

// VariantsKnown reports whether it is known which variants' kernels the
// DTK's current image carries: its files were checked by a dtkbot that
// reads them (a check an earlier one recorded says nothing of them).
func (m Image) VariantsKnown() bool {
	check, ok := m.KernelFilesOf()
	return ok && check.VariantsRead
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
	Consumer string `json:"consumer"`
	// Variant is the kernel variant compared: the consumer's modules for
	// that variant of another kernel, against this kernel's same variant.
	Variant string    `json:"variant,omitempty"`
	From    string    `json:"from"`
	Image   string    `json:"image,omitempty"`
	Loads   bool      `json:"loads"`
	Changed []string  `json:"changed,omitempty"`
	Gone    []string  `json:"gone,omitempty"`
	At      time.Time `json:"at"`
}

// String is the verdict in a line, for issues, pull requests, the API and
// the page: "acme-nic: the modules for 5.14.0-427.37.1.el9_4.x86_64 would
// load" or "... would not load: 6 symbol versions changed (printk,
// kmalloc, kfree, ...)".
func (v ABIVerdict) String() string {
	head := v.Consumer
	if v.Variant != VariantDefault {
		head += " (" + v.Variant + ")"
	}
	head += ": the modules for " + v.From
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

// Kernel variants: the kernels a node of one release can boot
// (MachineConfig spec.kernelType default, realtime, 64k-pages), each its
// own `uname -r`: the default kernel (5.14.0-427.37.1.el9_4.x86_64), RT
// (...x86_64+rt from RHEL 9.4, 4.18.0-305.19.1.rt7.91.el8_4.x86_64 before)
// and 64k pages on aarch64 (...aarch64+64k). A DTK image carries the
// variants of its kernel (what openshift/driver-toolkit does: kernel-rt on
// x86_64, kernel-64k on aarch64), so it has none of its own; a consumer's
// image is built for exactly one (a module loads on one uname -r). The
// default variant is "" in records and keys, so state from before variants
// means what it meant; VariantName spells it "default" for people.
const (
	VariantDefault = ""
	VariantRT      = "rt"
	Variant64K     = "64k"
)

// VariantNames are the variants as people write them (consumers[].variants).
var VariantNames = []string{"default", VariantRT, Variant64K}

// VariantName is the variant as people write it: "default", "rt", "64k".
func VariantName(v string) string {
	if v == VariantDefault {
		return "default"
	}
	return v
}

// ParseVariant reads a variant as people write it: "default" (or ""),
// "rt", "64k".
func ParseVariant(name string) (string, error) {
	switch name {
	case "", "default":
		return VariantDefault, nil
	case VariantRT, Variant64K:
		return name, nil
	}
	return "", fmt.Errorf("kernel variant %q is not one of %s", name, strings.Join(VariantNames, ", "))
}

// Ships64K reports whether nodes of the kernel of DTK m can boot its
// 64k-page variant: aarch64 kernels of RHEL 9.2 and later (RHCOS of
// OpenShift 4.13 and later) have kernel-64k (MachineConfig kernelType:
// 64k-pages). Its DTK says whether it carries it (Carries).
func (m Image) Ships64K() bool {
	if m.Arch != VariantArch(Variant64K) {
		return false
	}
	major, minor, _ := strings.Cut(m.RHEL, ".")
	x, err1 := strconv.Atoi(major)
	y, err2 := strconv.Atoi(minor)
	return err1 == nil && (x > 9 || (x == 9 && err2 == nil && y >= 2))
}

// VariantArch is the only arch (in graph terms) a variant's kernels exist
// on, "" for every arch: RT is built for x86_64, 64k pages for aarch64.
func VariantArch(v string) string {
	switch v {
	case VariantRT:
		return "amd64"
	case Variant64K:
		return "arm64"
	}
	return ""
}

// ImageKey identifies an image: its kernel's key for the DTK,
// consumer/kernel key for a consumer's.
func ImageKey(consumer, kernelKey string) string {
	if consumer == "" {
		return kernelKey
	}
	return consumer + "/" + kernelKey
}

// ImageID is an image's identity: whose image it is (Consumer, empty for
// the kernel's DTK) and for which kernel (stream, arch, kernel, variant).
// It is the one place an image's identity is spelt: a new part of a
// kernel's identity is a new field here and in Image.
type ImageID struct {
	Consumer, Stream, Arch, Kernel string
	// Variant is the kernel variant ("" default, rt, 64k): a consumer's
	// image is built for one; a DTK carries them all, and has none.
	Variant string
}

// KernelKey is the key of the kernel the image is for,
// stream/arch/kernel, with "+variant" for a variant (as uname -r writes
// one): rhel-9/amd64/5.14.0-427.37.1.el9_4+rt.
func (id ImageID) KernelKey() string {
	key := id.Stream + "/" + id.Arch + "/" + id.Kernel
	if id.Variant != VariantDefault {
		key += "+" + id.Variant
	}
	return key
}

// Key identifies the image among every image.
func (id ImageID) Key() string { return ImageKey(id.Consumer, id.KernelKey()) }

// DTK is the identity of the DTK image of id's kernel: the one every
// variant's images are built FROM.
func (id ImageID) DTK() ImageID { return ImageID{Stream: id.Stream, Arch: id.Arch, Kernel: id.Kernel} }

// ID is m's identity.
func (m Image) ID() ImageID {
	return ImageID{Consumer: m.Consumer, Stream: m.Stream, Arch: m.Arch, Kernel: m.Kernel, Variant: m.Variant}
}

// KernelKey is the key of m's kernel (its variant's).
func (m Image) KernelKey() string { return m.ID().KernelKey() }

// DTKKey is the key of the DTK image of m's kernel.
func (m Image) DTKKey() string { return m.ID().DTK().Key() }

// Key identifies m among every image.
func (m Image) Key() string { return m.ID().Key() }

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
