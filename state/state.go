// Package state is dtkbot's embedded store (bbolt): the cache of payload
// inspections (a payload digest is read once in its life), the conditional
// state of each update graph, the releases seen, the kernel ledger with each
// kernel's lifecycle, the tags promoted, what was notified, and a journal of
// every action applied.
//
// Every write is one bbolt transaction, so a kill -9 at any point leaves the
// file consistent. It is a cache and a journal: the registry and GitHub are
// the truth, and the pass checks them before any irreversible step.
package state

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/dtkbot/dtkbot/releaseinfo"
	"github.com/dtkbot/dtkbot/watcher"
)

// SchemaVersion is the layout version written into new files. Open refuses
// a file of a newer schema rather than misread it. Version 2 added held
// releases, staging references and rejected images; a version 1 file reads
// as it is (the new fields are empty) and is marked 2.
const SchemaVersion = 2

var (
	bucketMeta        = []byte("meta")
	bucketInspections = []byte("inspections")
	bucketGraphs      = []byte("graphs")
	bucketReleases    = []byte("releases")
	bucketKernels     = []byte("kernels")
	bucketTags        = []byte("tags")
	bucketJournal     = []byte("journal")
	bucketNotices     = []byte("notices")
	bucketHeld        = []byte("held")
	bucketStreams     = []byte("streams")
	bucketPins        = []byte("pins")
	bucketConsumers   = []byte("consumers")
	allBuckets        = [][]byte{bucketMeta, bucketInspections, bucketGraphs, bucketReleases, bucketKernels, bucketTags, bucketJournal,
		bucketNotices, bucketHeld, bucketStreams, bucketPins, bucketConsumers}
)

// ErrLocked is returned by Open when another process holds the file.
var ErrLocked = errors.New("state file is in use by another dtkbot process")

// Store is an open state file.
type Store struct {
	db   *bolt.DB
	path string
}

// Open opens (creating if needed) the state file at path. It waits at most
// wait for another process's lock, then fails with ErrLocked.
func Open(path string, wait time.Duration) (*Store, error) {
	if wait <= 0 {
		wait = time.Second
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("opening state %s: %w", path, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: wait})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening state %s: %w (waited %s; stop the other one, or give each its own state:)", path, ErrLocked, wait)
	}
	if err != nil {
		return nil, fmt.Errorf("opening state %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		v := meta.Get([]byte("schema"))
		if v == nil {
			return meta.Put([]byte("schema"), []byte(fmt.Sprint(SchemaVersion)))
		}
		var have int
		fmt.Sscanf(string(v), "%d", &have)
		if have > SchemaVersion {
			return fmt.Errorf("schema version %d is newer than this dtkbot's %d: upgrade dtkbot", have, SchemaVersion)
		}
		if have < SchemaVersion {
			return meta.Put([]byte("schema"), []byte(fmt.Sprint(SchemaVersion)))
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("opening state %s: %w", path, err)
	}
	return s, nil
}

// OpenReadOnly opens an existing state file for reading only.
func OpenReadOnly(path string, wait time.Duration) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("opening state: %w", err)
	}
	if wait <= 0 {
		wait = time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: wait, ReadOnly: true})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening state %s: %w (a running daemon holds it: use its GET /status)", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("opening state %s: %w", path, err)
	}
	return &Store{db: db, path: path}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Path is the file's path.
func (s *Store) Path() string { return s.path }

func getJSON(tx *bolt.Tx, bucket []byte, key string, v any) (bool, error) {
	data := tx.Bucket(bucket).Get([]byte(key))
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("decoding %s/%s: %w", bucket, key, err)
	}
	return true, nil
}

func putJSON(tx *bolt.Tx, bucket []byte, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(key), data)
}

// ---- inspections: releaseinfo.Cache ----

// Get returns a stored inspection.
func (s *Store) Get(key string) (*releaseinfo.Report, bool) {
	var r releaseinfo.Report
	var ok bool
	_ = s.db.View(func(tx *bolt.Tx) error {
		var err error
		ok, err = getJSON(tx, bucketInspections, key, &r)
		return err
	})
	if !ok {
		return nil, false
	}
	return &r, true
}

// Put stores an inspection. A failed write only costs a re-read later.
func (s *Store) Put(key string, r *releaseinfo.Report) {
	_ = s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx, bucketInspections, key, r) })
}

// ---- graphs: watcher.GraphStore ----

// GraphState returns what the last fetch of channel/arch left.
func (s *Store) GraphState(channel, arch string) (watcher.GraphState, error) {
	var st watcher.GraphState
	err := s.db.View(func(tx *bolt.Tx) error {
		_, err := getJSON(tx, bucketGraphs, channel+"/"+arch, &st)
		return err
	})
	return st, err
}

// SaveGraphState stores st for channel/arch.
func (s *Store) SaveGraphState(channel, arch string, st watcher.GraphState) error {
	return s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx, bucketGraphs, channel+"/"+arch, st) })
}

// StreamState returns what the last read of a release-controller stream
// left (watcher.StreamStore).
func (s *Store) StreamState(key string) (watcher.StreamState, error) {
	var st watcher.StreamState
	err := s.db.View(func(tx *bolt.Tx) error {
		_, err := getJSON(tx, bucketStreams, key, &st)
		return err
	})
	return st, err
}

// SaveStreamState stores a stream's state.
func (s *Store) SaveStreamState(key string, st watcher.StreamState) error {
	return s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx, bucketStreams, key, st) })
}

// Pin is a pullspec by tag resolved to a digest, and when.
type Pin struct {
	Digest string    `json:"digest"`
	At     time.Time `json:"at"`
}

// Pin returns the last resolution of a pullspec by tag.
func (s *Store) Pin(pullspec string) (Pin, bool, error) {
	var p Pin
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		ok, err = getJSON(tx, bucketPins, pullspec, &p)
		return err
	})
	return p, ok, err
}

// PutPin records a resolution.
func (s *Store) PutPin(pullspec string, p Pin) error {
	return s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx, bucketPins, pullspec, p) })
}

// ---- releases ----

// Release is a payload seen and read, with the kernels of its streams.
type Release struct {
	Version  string         `json:"version"`
	Pullspec string         `json:"pullspec"`
	Digest   string         `json:"digest"`
	Arch     string         `json:"arch"` // the arch read (amd64, arm64, ...)
	Channels []string       `json:"channels,omitempty"`
	Streams  []ReleaseShips `json:"streams"`
	// Kind is what the release is (ga, rc, ec, nightly, ...: watcher.Kind).
	Kind string `json:"kind,omitempty"`
	// Sources are where it was found: graph channels, release-controller
	// streams (with the tag's phase), the config.
	Sources []watcher.Source `json:"sources,omitempty"`
	// Signature is the outcome of the signature check ("verified by ...",
	// "unverified: ...", or empty when checks are off).
	Signature string    `json:"signature,omitempty"`
	FirstSeen time.Time `json:"first_seen"`
	// TaggedAt is when its first release tag was promoted.
	TaggedAt time.Time `json:"tagged_at,omitzero"`
	// Withdrawn says why a pre-release no longer counts (its tag was
	// Rejected, or it vanished from its feeds), since when.
	Withdrawn   string    `json:"withdrawn,omitempty"`
	WithdrawnAt time.Time `json:"withdrawn_at,omitzero"`
}

// PreRelease reports whether the release is not a GA release.
func (r Release) PreRelease() bool { return r.Kind != "" && r.Kind != watcher.KindGA }

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

// ---- the kernel ledger ----

// Kernel lifecycle states.
const (
	KernelNew            = "new"
	KernelBuildRequested = "build_requested"
	KernelBuilt          = "built"
	KernelVerified       = "verified"
	KernelPromoted       = "promoted"
	KernelFailed         = "failed"
)

// Kernel is one entry of the ledger: a kernel of one stream and arch, the
// releases that ship it, and what has been done about it.
type Kernel struct {
	Stream     string   `json:"stream"`
	Arch       string   `json:"arch"`
	Kernel     string   `json:"kernel"` // VERSION-RELEASE
	KernelFull string   `json:"kernel_full"`
	RTKernel   string   `json:"rt_kernel,omitempty"`
	RHEL       string   `json:"rhel_version,omitempty"`
	DTKImage   string   `json:"dtk_image,omitempty"` // the payload's DTK, for reference
	Releases   []string `json:"releases"`
	State      string   `json:"state"`
	Attempts   int      `json:"attempts,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	// Image is the kernel tag (repository:tag) consumers read; it only ever
	// receives a verified image.
	Image string `json:"image,omitempty"`
	// Staging is where the build pushes (repository:tag): the image is
	// verified there before it is promoted to Image.
	Staging     string `json:"staging,omitempty"`
	ImageDigest string `json:"image_digest,omitempty"` // the built image's digest once seen
	// Published: the kernel tag holds ImageDigest (promoted there, or found
	// there and verified).
	Published bool `json:"published,omitempty"`
	// StagingRemoved says what became of the staging tag after promotion:
	// "removed", or why it stays.
	StagingRemoved string `json:"staging_removed,omitempty"`
	// Rejections are the built images that failed verification: never
	// promoted, and ignored if they are found at the staging tag again.
	Rejections []Rejection `json:"rejections,omitempty"`
	// NotifiedState is the State last announced, and NotifiedHash the
	// NoticeHash: a notification is due whenever what people are told
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
}

// Rejection is a built image that did not pass verification.
type Rejection struct {
	Digest string    `json:"digest"`
	Image  string    `json:"image"` // where it was found
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// Untagged: its staging tag was removed, so finding it there again
	// means a later build pushed the same image.
	Untagged bool `json:"untagged,omitempty"`
}

// Rejected returns the last rejection of digest d, if it failed
// verification before.
func (k Kernel) Rejected(d string) (Rejection, bool) {
	for i := len(k.Rejections) - 1; i >= 0; i-- {
		if k.Rejections[i].Digest == d {
			return k.Rejections[i], true
		}
	}
	return Rejection{}, false
}

// PinnedImage is the kernel's image by digest (repository@sha256:...), what
// verification read and what promotions copy: in the kernel tag's
// repository once the kernel tag holds it, in the staging repository before;
// Image when the digest is not known yet.
func (k Kernel) PinnedImage() string {
	if k.ImageDigest == "" {
		return k.Image
	}
	ref := k.Image
	if !k.Published && k.Staging != "" {
		ref = k.Staging
	}
	return Repository(ref) + "@" + k.ImageDigest
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

// NoticeHash sums what a notification about k says.
func (k Kernel) NoticeHash() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%d", k.State, strings.Join(k.Releases, ","), k.Image, k.ImageDigest, k.Reason, len(k.Rejections))
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// KernelKey identifies a ledger entry.
func KernelKey(stream, arch, kernel string) string { return stream + "/" + arch + "/" + kernel }

// Key is the entry's KernelKey.
func (k Kernel) Key() string { return KernelKey(k.Stream, k.Arch, k.Kernel) }

// Tag kinds of a Promotion.
const (
	TagKernel   = "kernel"
	TagRelease  = "release"
	TagFloating = "floating"
)

// ConsumerBuild is a downstream image (a driver container, a kmod image)
// of one consumer for one kernel, built FROM that kernel's DTK once the DTK
// is promoted. It has the lifecycle of a kernel's DTK image (new,
// build_requested, built, verified, promoted, failed), in the embedded
// Kernel's fields: Image is the consumer's kernel tag, Staging where its
// build pushes, DTKImage the DTK it is built from, pinned by digest.
type ConsumerBuild struct {
	Consumer string `json:"consumer"`
	Kernel
}

// Key identifies a consumer build: consumer/stream/arch/kernel.
func (c ConsumerBuild) Key() string { return c.Consumer + "/" + c.Kernel.Key() }

// PutConsumerBuild stores a consumer build.
func (t *Tx) PutConsumerBuild(c ConsumerBuild) error {
	return putJSON(t.tx, bucketConsumers, c.Key(), c)
}

// ConsumerBuilds lists every consumer build in key order.
func (t *Tx) ConsumerBuilds() ([]ConsumerBuild, error) {
	var out []ConsumerBuild
	err := t.tx.Bucket(bucketConsumers).ForEach(func(k, v []byte) error {
		var c ConsumerBuild
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("decoding consumer build %s: %w", k, err)
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// ConsumerBuildsOf lists the consumer builds of one kernel.
func (s *Store) ConsumerBuildsOf(kernelKey string) ([]ConsumerBuild, error) {
	var out []ConsumerBuild
	err := s.View(func(t *Tx) error {
		all, err := t.ConsumerBuilds()
		for _, c := range all {
			if c.Kernel.Key() == kernelKey {
				out = append(out, c)
			}
		}
		return err
	})
	return out, err
}

// Promotion records a tag dtkbot has pointed at an image. Only these tags
// are ever audited or re-pointed: a tag dtkbot never promoted is not its own.
type Promotion struct {
	Ref     string `json:"ref"` // repository:tag
	Digest  string `json:"digest"`
	Release string `json:"release,omitempty"`
	Kernel  string `json:"kernel"`
	// KernelKey is the ledger entry whose image the tag holds.
	KernelKey string `json:"kernel_key,omitempty"`
	// Consumer is set for a consumer's tag (its image, not the DTK).
	Consumer string    `json:"consumer,omitempty"`
	Kind     string    `json:"kind,omitempty"` // kernel, release, floating
	At       time.Time `json:"at"`
}

// JournalEntry is one applied action and its result.
type JournalEntry struct {
	At     time.Time       `json:"at"`
	Action json.RawMessage `json:"action"`
	Result string          `json:"result"`
}

// Tx is a read-write view of the store inside one transaction: the pass
// records a release, its kernels and their ledger changes atomically.
type Tx struct{ tx *bolt.Tx }

// Update runs fn in one transaction; nothing of it is kept if fn fails.
func (s *Store) Update(fn func(*Tx) error) error {
	return s.db.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx}) })
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(*Tx) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx}) })
}

// Release returns a stored release.
func (t *Tx) Release(key string) (Release, bool, error) {
	var r Release
	ok, err := getJSON(t.tx, bucketReleases, key, &r)
	return r, ok, err
}

// PutRelease stores a release.
func (t *Tx) PutRelease(r Release) error {
	return putJSON(t.tx, bucketReleases, ReleaseKey(r.Digest, r.Arch), r)
}

// Releases lists every stored release, oldest version first.
func (t *Tx) Releases() ([]Release, error) {
	var out []Release
	err := t.tx.Bucket(bucketReleases).ForEach(func(k, v []byte) error {
		var r Release
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decoding release %s: %w", k, err)
		}
		out = append(out, r)
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return watcher.CompareVersions(out[i].Version, out[j].Version) < 0 })
	return out, err
}

// Kernel returns a ledger entry.
func (t *Tx) Kernel(key string) (Kernel, bool, error) {
	var k Kernel
	ok, err := getJSON(t.tx, bucketKernels, key, &k)
	return k, ok, err
}

// PutKernel stores a ledger entry.
func (t *Tx) PutKernel(k Kernel) error { return putJSON(t.tx, bucketKernels, k.Key(), k) }

// Kernels lists the ledger in key order.
func (t *Tx) Kernels() ([]Kernel, error) {
	var out []Kernel
	err := t.tx.Bucket(bucketKernels).ForEach(func(k, v []byte) error {
		var e Kernel
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("decoding kernel %s: %w", k, err)
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// Promotion returns the record of a promoted tag.
func (t *Tx) Promotion(ref string) (Promotion, bool, error) {
	var p Promotion
	ok, err := getJSON(t.tx, bucketTags, ref, &p)
	return p, ok, err
}

// PutPromotion records a promoted tag.
func (t *Tx) PutPromotion(p Promotion) error { return putJSON(t.tx, bucketTags, p.Ref, p) }

// DeletePromotion forgets a promoted tag (withdrawn).
func (t *Tx) DeletePromotion(ref string) error { return t.tx.Bucket(bucketTags).Delete([]byte(ref)) }

// Promotions lists every promoted tag.
func (t *Tx) Promotions() (map[string]Promotion, error) {
	out := map[string]Promotion{}
	err := t.tx.Bucket(bucketTags).ForEach(func(k, v []byte) error {
		var p Promotion
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("decoding tag %s: %w", k, err)
		}
		out[string(k)] = p
		return nil
	})
	return out, err
}

// Journal appends an entry.
func (t *Tx) Journal(e JournalEntry) error {
	b := t.tx.Bucket(bucketJournal)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	key := make([]byte, 8)
	binary.BigEndian.PutUint64(key, seq)
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

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

// Withdrawn is the set of withdrawn pre-releases, by version/arch.
func (s *Store) Withdrawn() (map[string]bool, error) {
	out := map[string]bool{}
	err := s.View(func(t *Tx) error {
		all, err := t.Releases()
		for _, r := range all {
			if r.Withdrawn != "" {
				out[r.Version+"/"+r.Arch] = true
			}
		}
		return err
	})
	return out, err
}

// Notice returns the record of a kernel's notifications.
func (s *Store) Notice(key string) (Notice, error) {
	n := Notice{Key: key}
	err := s.db.View(func(tx *bolt.Tx) error {
		_, err := getJSON(tx, bucketNotices, key, &n)
		return err
	})
	return n, err
}

// PutNotice records a kernel's notifications.
func (s *Store) PutNotice(n Notice) error {
	return s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx, bucketNotices, n.Key, n) })
}

// BlockedUntil is when a remote API (by name) may be called again after a
// rate limit: kept here so that a restart or a one-shot run honours it.
func (s *Store) BlockedUntil(name string) (time.Time, error) {
	var t time.Time
	err := s.db.View(func(tx *bolt.Tx) error {
		_, err := getJSON(tx, bucketMeta, "blocked_until/"+name, &t)
		return err
	})
	return t, err
}

// SetBlockedUntil records a rate limit's end.
func (s *Store) SetBlockedUntil(name string, t time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx, bucketMeta, "blocked_until/"+name, t) })
}

// PromotionsOf lists the tags pointing at one image digest.
func (s *Store) PromotionsOf(digest string) ([]Promotion, error) {
	var out []Promotion
	err := s.View(func(t *Tx) error {
		all, err := t.Promotions()
		for _, p := range all {
			if p.Digest == digest {
				out = append(out, p)
			}
		}
		return err
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, err
}

// HeldRelease is a payload that cannot be used and will not be read again
// unless asked: its content (behind its digest, so it cannot change) is
// broken. Kept by ReleaseKey.
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
}

// Key is the held release's ReleaseKey.
func (h HeldRelease) Key() string { return ReleaseKey(h.Digest, h.Arch) }

// PutHeld records a held release.
func (t *Tx) PutHeld(h HeldRelease) error { return putJSON(t.tx, bucketHeld, h.Key(), h) }

// DeleteHeld forgets a held release (to read it again).
func (t *Tx) DeleteHeld(key string) error { return t.tx.Bucket(bucketHeld).Delete([]byte(key)) }

// HeldReleases lists the held releases by key.
func (t *Tx) HeldReleases() (map[string]HeldRelease, error) {
	out := map[string]HeldRelease{}
	err := t.tx.Bucket(bucketHeld).ForEach(func(k, v []byte) error {
		var h HeldRelease
		if err := json.Unmarshal(v, &h); err != nil {
			return fmt.Errorf("decoding held release %s: %w", k, err)
		}
		out[string(k)] = h
		return nil
	})
	return out, err
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
}

// LastPass returns the last pass's record (nil when none).
func (s *Store) LastPass() (*PassRecord, error) {
	var p PassRecord
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		ok, err = getJSON(tx, bucketMeta, "last_pass", &p)
		return err
	})
	if !ok {
		return nil, err
	}
	return &p, err
}

// SetLastPass records a pass.
func (s *Store) SetLastPass(p PassRecord) error {
	return s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx, bucketMeta, "last_pass", p) })
}

// Generation changes whenever anything is written: what is built from the
// store can be cached until it does.
func (s *Store) Generation() (uint64, error) {
	var id int
	err := s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
	return uint64(id), err
}

// Snapshot is what pages, reports and the kernel index are built from:
// everything but the inspection cache and the journal.
type Snapshot struct {
	Generation uint64
	Releases   []Release
	Kernels    []Kernel
	Consumers  []ConsumerBuild
	Tags       map[string]Promotion
	Held       []HeldRelease
	Notices    map[string]Notice
	LastPass   *PassRecord
}

// Snapshot reads it in one consistent view.
func (s *Store) Snapshot() (*Snapshot, error) {
	var out *Snapshot
	err := s.View(func(t *Tx) error {
		var err error
		out, err = t.snapshot()
		return err
	})
	return out, err
}

// snapshot reads a Snapshot within t: the part of the store that Export
// holds too. Held releases are in version order, never nil slices.
func (t *Tx) snapshot() (*Snapshot, error) {
	out := &Snapshot{Generation: uint64(t.tx.ID()), Held: []HeldRelease{}, Notices: map[string]Notice{}}
	var err error
	if out.Releases, err = t.Releases(); err != nil {
		return nil, err
	}
	if out.Kernels, err = t.Kernels(); err != nil {
		return nil, err
	}
	if out.Consumers, err = t.ConsumerBuilds(); err != nil {
		return nil, err
	}
	if out.Tags, err = t.Promotions(); err != nil {
		return nil, err
	}
	held, err := t.HeldReleases()
	if err != nil {
		return nil, err
	}
	for _, h := range held {
		out.Held = append(out.Held, h)
	}
	sort.Slice(out.Held, func(i, j int) bool {
		if c := watcher.CompareVersions(out.Held[i].Version, out.Held[j].Version); c != 0 {
			return c < 0
		}
		return out.Held[i].Key() < out.Held[j].Key()
	})
	var lp PassRecord
	if ok, err := getJSON(t.tx, bucketMeta, "last_pass", &lp); err != nil {
		return nil, err
	} else if ok {
		out.LastPass = &lp
	}
	err = t.tx.Bucket(bucketNotices).ForEach(func(k, v []byte) error {
		var n Notice
		if err := json.Unmarshal(v, &n); err != nil {
			return fmt.Errorf("decoding notice %s: %w", k, err)
		}
		out.Notices[n.Key] = n
		return nil
	})
	if out.Releases == nil {
		out.Releases = []Release{}
	}
	if out.Kernels == nil {
		out.Kernels = []Kernel{}
	}
	if out.Consumers == nil {
		out.Consumers = []ConsumerBuild{}
	}
	return out, err
}

// Stamp returns a time kept under name in the store's meta data (the last
// drift audit, say); zero when never set.
func (s *Store) Stamp(name string) (time.Time, error) {
	var t time.Time
	err := s.db.View(func(tx *bolt.Tx) error {
		_, err := getJSON(tx, bucketMeta, "stamp/"+name, &t)
		return err
	})
	return t, err
}

// SetStamp records a time under name.
func (s *Store) SetStamp(name string, t time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx, bucketMeta, "stamp/"+name, t) })
}

// Export is the whole store as JSON, for `dtkbot state export`.
type Export struct {
	Schema      int                            `json:"schema"`
	Graphs      map[string]watcher.GraphState  `json:"graphs"`
	Releases    []Release                      `json:"releases"`
	Kernels     []Kernel                       `json:"kernels"`
	Consumers   []ConsumerBuild                `json:"consumer_builds"`
	Held        []HeldRelease                  `json:"held"`
	Tags        map[string]Promotion           `json:"tags"`
	Inspections map[string]*releaseinfo.Report `json:"inspections"`
	Notices     []Notice                       `json:"notices"`
	Journal     []JournalEntry                 `json:"journal"`
}

// Export reads everything in one consistent view: the snapshot, and the
// graph state, the inspection cache and the journal.
func (s *Store) Export() (*Export, error) {
	out := &Export{Schema: SchemaVersion, Graphs: map[string]watcher.GraphState{}, Inspections: map[string]*releaseinfo.Report{}, Notices: []Notice{}}
	err := s.View(func(t *Tx) error {
		snap, err := t.snapshot()
		if err != nil {
			return err
		}
		out.Releases, out.Kernels, out.Consumers, out.Tags, out.Held = snap.Releases, snap.Kernels, snap.Consumers, snap.Tags, snap.Held
		for _, n := range snap.Notices {
			out.Notices = append(out.Notices, n)
		}
		sort.Slice(out.Notices, func(i, j int) bool { return out.Notices[i].Key < out.Notices[j].Key })
		if err := t.tx.Bucket(bucketGraphs).ForEach(func(k, v []byte) error {
			var g watcher.GraphState
			if err := json.Unmarshal(v, &g); err != nil {
				return fmt.Errorf("decoding graph state %s: %w", k, err)
			}
			g.Nodes = nil // the releases list says it better
			out.Graphs[string(k)] = g
			return nil
		}); err != nil {
			return err
		}
		if err := t.tx.Bucket(bucketInspections).ForEach(func(k, v []byte) error {
			var r releaseinfo.Report
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decoding inspection %s: %w", k, err)
			}
			out.Inspections[string(k)] = &r
			return nil
		}); err != nil {
			return err
		}
		return t.tx.Bucket(bucketJournal).ForEach(func(k, v []byte) error {
			var e JournalEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decoding journal entry %x: %w", k, err)
			}
			out.Journal = append(out.Journal, e)
			return nil
		})
	})
	return out, err
}

// HeldCounts counts what is held, by reason: held releases by their kind
// (content, signature), and streams no build may be based on
// (inconsistent, kernel_unknown, other).
func (s *Store) HeldCounts() (map[string]int, error) {
	counts := map[string]int{}
	err := s.View(func(t *Tx) error {
		held, err := t.HeldReleases()
		if err != nil {
			return err
		}
		for _, h := range held {
			counts[h.Kind]++
		}
		rels, err := t.Releases()
		for _, r := range rels {
			for _, st := range r.Streams {
				if st.Held != "" {
					counts[HeldStreamReason(st.Held)]++
				}
			}
		}
		return err
	})
	return counts, err
}

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

// Counts returns the number of kernels in each state, for metrics.
func (s *Store) Counts() (map[string]int, int, error) {
	counts := map[string]int{}
	releases := 0
	err := s.View(func(t *Tx) error {
		ks, err := t.Kernels()
		if err != nil {
			return err
		}
		for _, k := range ks {
			counts[k.State]++
		}
		releases = t.tx.Bucket(bucketReleases).Stats().KeyN
		return nil
	})
	return counts, releases, err
}
