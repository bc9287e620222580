// Package state is dtkbot's embedded store (bbolt): the cache of payload
// inspections (a payload digest is read once in its life), the conditional
// state of each update graph and release-controller stream, the resolutions
// of pullspecs by tag, the ledger (package ledger: releases, images, tags
// promoted, held payloads, notices), and a journal of every action applied.
//
// Every write is one bbolt transaction, so a kill -9 at any point leaves the
// file consistent. It is a cache and a journal: the registry and GitHub are
// the truth, and the pass checks them before any irreversible step. It
// holds no rules about what the data means: those are ledger's.
package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/releaseinfo"
	"github.com/dtkbot/dtkbot/version"
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
	bucketKernelFiles = []byte("kernel_files")
	// bucketUpstream holds the last good upstream graph of each
	// channel/arch, apart from the rest of its state (bucketGraphs): a
	// megabyte for a large channel, read only when it changed.
	bucketUpstream = []byte("upstream_graphs")
	allBuckets     = [][]byte{bucketMeta, bucketInspections, bucketGraphs, bucketReleases, bucketKernels, bucketTags, bucketJournal,
		bucketNotices, bucketHeld, bucketStreams, bucketPins, bucketConsumers, bucketKernelFiles, bucketUpstream}
)

// ErrLocked is returned by Open when another process holds the file.
var ErrLocked = errors.New("state file is in use by another dtkbot process")

// Store is an open state file.
type Store struct {
	db   *bolt.DB
	path string
}

// Open opens (creating if needed) the state file at path. It waits at most
// wait for another process's lock, then fails with ErrLocked. A file that
// is not a readable bbolt file fails with ErrCorrupt, one of a newer schema
// with ErrNewerSchema: neither is ever used or changed.
func Open(path string, wait time.Duration) (*Store, error) {
	if wait <= 0 {
		wait = time.Second
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("opening state %s: %w", path, err)
		}
	}
	db, err := openBolt(path, &bolt.Options{Timeout: wait})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening state %s: %w (waited %s; stop the other one, or give each its own state:)", path, ErrLocked, wait)
	}
	if err != nil {
		return nil, fmt.Errorf("opening state %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	err = guard(func() error {
		return db.Update(func(tx *bolt.Tx) error {
			meta, err := tx.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			v := meta.Get([]byte("schema"))
			if v != nil {
				have, err := parseSchema(v)
				if err != nil {
					return err
				}
				if have == SchemaVersion {
					return createBuckets(tx)
				}
				// Older: it reads as it is, and is marked current.
			}
			if err := createBuckets(tx); err != nil {
				return err
			}
			return meta.Put([]byte("schema"), []byte(strconv.Itoa(SchemaVersion)))
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("opening state %s: %w", path, err)
	}
	return s, nil
}

func createBuckets(tx *bolt.Tx) error {
	for _, b := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// OpenReadOnly opens an existing state file for reading only; like Open,
// it refuses a corrupt file and one of a newer schema.
func OpenReadOnly(path string, wait time.Duration) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("opening state: %w", err)
	}
	if wait <= 0 {
		wait = time.Second
	}
	db, err := openBolt(path, &bolt.Options{Timeout: wait, ReadOnly: true})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening state %s: %w (a running daemon holds it: use its GET /status)", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("opening state %s: %w", path, err)
	}
	err = guard(func() error {
		return db.View(func(tx *bolt.Tx) error {
			if meta := tx.Bucket(bucketMeta); meta != nil {
				if v := meta.Get([]byte("schema")); v != nil {
					_, err := parseSchema(v)
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		db.Close()
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
		var err error
		st, err = graphState(tx, channel+"/"+arch, nil)
		return err
	})
	return st, err
}

// graphState reads a graph's state and its upstream graph, unless have,
// given the graph's body hash, returns it already.
func graphState(tx *bolt.Tx, key string, have func(bodyHash string) *watcher.Graph) (watcher.GraphState, error) {
	var st watcher.GraphState
	if _, err := getJSON(tx, bucketGraphs, key, &st); err != nil {
		return st, err
	}
	if have != nil && st.BodyHash != "" {
		if st.Upstream = have(st.BodyHash); st.Upstream != nil {
			return st, nil
		}
	}
	var up watcher.Graph
	ok, err := getJSON(tx, bucketUpstream, key, &up)
	if ok && err == nil {
		st.Upstream = &up
	}
	return st, err
}

// GraphView reads, in one consistent view, the snapshot and what the last
// fetch of channel/arch left: what the graph dtkbot serves for them is
// computed from. The upstream graph (a megabyte for a large channel) is
// read only when have, given its body's hash, does not return it already.
func (s *Store) GraphView(channel, arch string, have func(bodyHash string) *watcher.Graph) (*Snapshot, watcher.GraphState, error) {
	var snap *Snapshot
	var st watcher.GraphState
	err := s.View(func(t *Tx) error {
		var err error
		if snap, err = t.snapshot(); err != nil {
			return err
		}
		st, err = graphState(t.tx, channel+"/"+arch, have)
		return err
	})
	return snap, st, err
}

// GraphStatus is what the last fetch of one channel/arch left, without
// the graph itself.
type GraphStatus struct {
	// Cached: a good graph is kept (Upstream is set).
	Cached   bool
	ReadAt   time.Time
	Failure  string
	FailedAt time.Time
}

// GraphStatuses lists, by "channel/arch", what the last fetch of each left:
// whether a good graph is kept, when the service last answered, and why
// its last read failed.
func (s *Store) GraphStatuses() (map[string]GraphStatus, error) {
	out := map[string]GraphStatus{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGraphs).ForEach(func(k, v []byte) error {
			var meta struct {
				ReadAt   time.Time `json:"read_at"`
				Failure  string    `json:"failure"`
				FailedAt time.Time `json:"failed_at"`
			}
			if err := json.Unmarshal(v, &meta); err != nil {
				return fmt.Errorf("decoding graph state %s: %w", k, err)
			}
			out[string(k)] = GraphStatus{Cached: tx.Bucket(bucketUpstream).Get(k) != nil, ReadAt: meta.ReadAt, Failure: meta.Failure, FailedAt: meta.FailedAt}
			return nil
		})
	})
	return out, err
}

// SaveGraphState stores st for channel/arch, its upstream graph apart: it
// is written only when its body's hash changed (each pass records when the
// graph was read; the graph seldom changes).
func (s *Store) SaveGraphState(channel, arch string, st watcher.GraphState) error {
	key := channel + "/" + arch
	return s.db.Update(func(tx *bolt.Tx) error {
		var before watcher.GraphState
		if _, err := getJSON(tx, bucketGraphs, key, &before); err != nil {
			return err
		}
		up := st.Upstream
		st.Upstream = nil
		if err := putJSON(tx, bucketGraphs, key, st); err != nil {
			return err
		}
		switch {
		case up == nil:
			return tx.Bucket(bucketUpstream).Delete([]byte(key))
		case st.BodyHash != "" && st.BodyHash == before.BodyHash && tx.Bucket(bucketUpstream).Get([]byte(key)) != nil:
			return nil // the same graph, by its hash
		}
		return putJSON(tx, bucketUpstream, key, up)
	})
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

// ConsumerImagesOf lists the consumers' images of the kernel whose DTK is
// dtkKey, every variant's, by consumer and variant.
func (s *Store) ConsumerImagesOf(dtkKey string) ([]ledger.Image, error) {
	var out []ledger.Image
	err := s.View(func(t *Tx) error {
		all, err := t.ConsumerImages()
		for _, c := range all {
			if c.DTKKey() == dtkKey {
				out = append(out, c)
			}
		}
		return err
	})
	return out, err
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
func (t *Tx) Release(key string) (ledger.Release, bool, error) {
	var r ledger.Release
	ok, err := getJSON(t.tx, bucketReleases, key, &r)
	return r, ok, err
}

// PutRelease stores a release.
func (t *Tx) PutRelease(r ledger.Release) error {
	return putJSON(t.tx, bucketReleases, ledger.ReleaseKey(r.Digest, r.Arch), r)
}

// Releases lists every stored release, oldest version first.
func (t *Tx) Releases() ([]ledger.Release, error) {
	var out []ledger.Release
	err := t.tx.Bucket(bucketReleases).ForEach(func(k, v []byte) error {
		var r ledger.Release
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decoding release %s: %w", k, err)
		}
		out = append(out, r)
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return version.Compare(out[i].Version, out[j].Version) < 0 })
	return out, err
}

// Image returns an image of the ledger by its key (ledger.Image.Key).
func (t *Tx) Image(key string) (ledger.Image, bool, error) {
	var m ledger.Image
	bucket := bucketKernels
	if strings.Count(key, "/") > 2 {
		bucket = bucketConsumers
	}
	ok, err := getJSON(t.tx, bucket, key, &m)
	return m, ok, err
}

// PutImage stores an image: a DTK with its kernel's key, a consumer's
// image with its consumer's name before it.
func (t *Tx) PutImage(m ledger.Image) error {
	if m.IsDTK() {
		return putJSON(t.tx, bucketKernels, m.Key(), m)
	}
	return putJSON(t.tx, bucketConsumers, m.Key(), m)
}

// DTKs lists the kernels' DTK images in key order.
func (t *Tx) DTKs() ([]ledger.Image, error) { return t.images(bucketKernels, "kernel") }

// ConsumerImages lists the consumers' images in key order.
func (t *Tx) ConsumerImages() ([]ledger.Image, error) {
	return t.images(bucketConsumers, "consumer image")
}

// Images lists every image: the DTKs, then the consumers' images.
func (t *Tx) Images() ([]ledger.Image, error) {
	dtks, err := t.DTKs()
	if err != nil {
		return nil, err
	}
	cs, err := t.ConsumerImages()
	return append(dtks, cs...), err
}

func (t *Tx) images(bucket []byte, what string) ([]ledger.Image, error) {
	var out []ledger.Image
	err := t.tx.Bucket(bucket).ForEach(func(k, v []byte) error {
		var m ledger.Image
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("decoding %s %s: %w", what, k, err)
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

// Promotion returns the record of a promoted tag.
func (t *Tx) Promotion(ref string) (ledger.Promotion, bool, error) {
	var p ledger.Promotion
	ok, err := getJSON(t.tx, bucketTags, ref, &p)
	return p, ok, err
}

// PutPromotion records a promoted tag.
func (t *Tx) PutPromotion(p ledger.Promotion) error { return putJSON(t.tx, bucketTags, p.Ref, p) }

// DeletePromotion forgets a promoted tag (withdrawn).
func (t *Tx) DeletePromotion(ref string) error { return t.tx.Bucket(bucketTags).Delete([]byte(ref)) }

// Promotions lists every promoted tag.
func (t *Tx) Promotions() (map[string]ledger.Promotion, error) {
	out := map[string]ledger.Promotion{}
	err := t.tx.Bucket(bucketTags).ForEach(func(k, v []byte) error {
		var p ledger.Promotion
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("decoding tag %s: %w", k, err)
		}
		out[string(k)] = p
		return nil
	})
	return out, err
}

// The journal's bounds. It is the record of what dtkbot did, for people
// (`dtkbot state export`): nothing reads it back to decide anything (the
// registry and GitHub are the truth). So it keeps what someone may still
// ask about, the last half year, and at most JournalKeep entries (a few
// MB: a new kernel with a consumer journals a few dozen actions).
const (
	JournalKeep   = 10_000
	JournalMaxAge = 180 * 24 * time.Hour
)

// Journal appends an entry, and drops the oldest entries beyond the
// journal's bounds: more than JournalKeep, or older than JournalMaxAge
// before e (the pass's clock, never the machine's).
func (t *Tx) Journal(e JournalEntry) error {
	b := t.tx.Bucket(bucketJournal)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := b.Put(journalKey(seq), data); err != nil {
		return err
	}
	return pruneJournal(b, seq, e.At.Add(-JournalMaxAge))
}

func journalKey(seq uint64) []byte {
	key := make([]byte, 8)
	binary.BigEndian.PutUint64(key, seq)
	return key
}

// pruneJournal deletes from the oldest entry on while there are more than
// JournalKeep or the oldest is from before cutoff. Keys are sequence
// numbers and only this deletes, from the front: the entries are those
// from the first key to last.
func pruneJournal(b *bolt.Bucket, last uint64, cutoff time.Time) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.First() {
		if len(k) == 8 && last-binary.BigEndian.Uint64(k) < JournalKeep {
			var e JournalEntry
			if json.Unmarshal(v, &e) != nil || !e.At.Before(cutoff) {
				return nil // kept: an entry that does not decode is for `state check` to name
			}
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
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
func (s *Store) Notice(key string) (ledger.Notice, error) {
	n := ledger.Notice{Key: key}
	err := s.db.View(func(tx *bolt.Tx) error {
		_, err := getJSON(tx, bucketNotices, key, &n)
		return err
	})
	return n, err
}

// PutNotice records a kernel's notifications.
func (s *Store) PutNotice(n ledger.Notice) error {
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
func (s *Store) PromotionsOf(digest string) ([]ledger.Promotion, error) {
	var out []ledger.Promotion
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

// PutHeld records a held release.
func (t *Tx) PutHeld(h ledger.HeldRelease) error { return putJSON(t.tx, bucketHeld, h.Key(), h) }

// DeleteHeld forgets a held release (to read it again).
func (t *Tx) DeleteHeld(key string) error { return t.tx.Bucket(bucketHeld).Delete([]byte(key)) }

// HeldReleases lists the held releases by key.
func (t *Tx) HeldReleases() (map[string]ledger.HeldRelease, error) {
	out := map[string]ledger.HeldRelease{}
	err := t.tx.Bucket(bucketHeld).ForEach(func(k, v []byte) error {
		var h ledger.HeldRelease
		if err := json.Unmarshal(v, &h); err != nil {
			return fmt.Errorf("decoding held release %s: %w", k, err)
		}
		out[string(k)] = h
		return nil
	})
	return out, err
}

// LastPass returns the last pass's record (nil when none).
func (s *Store) LastPass() (*ledger.PassRecord, error) {
	var p ledger.PassRecord
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
func (s *Store) SetLastPass(p ledger.PassRecord) error {
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
	Releases   []ledger.Release
	Kernels    []ledger.Image // the DTKs
	Consumers  []ledger.Image // the consumers' images
	Tags       map[string]ledger.Promotion
	Held       []ledger.HeldRelease
	Notices    map[string]ledger.Notice
	LastPass   *ledger.PassRecord
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
	out := &Snapshot{Generation: uint64(t.tx.ID()), Held: []ledger.HeldRelease{}, Notices: map[string]ledger.Notice{}}
	var err error
	if out.Releases, err = t.Releases(); err != nil {
		return nil, err
	}
	if out.Kernels, err = t.DTKs(); err != nil {
		return nil, err
	}
	if out.Consumers, err = t.ConsumerImages(); err != nil {
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
		if c := version.Compare(out.Held[i].Version, out.Held[j].Version); c != 0 {
			return c < 0
		}
		return out.Held[i].Key() < out.Held[j].Key()
	})
	var lp ledger.PassRecord
	if ok, err := getJSON(t.tx, bucketMeta, "last_pass", &lp); err != nil {
		return nil, err
	} else if ok {
		out.LastPass = &lp
	}
	err = t.tx.Bucket(bucketNotices).ForEach(func(k, v []byte) error {
		var n ledger.Notice
		if err := json.Unmarshal(v, &n); err != nil {
			return fmt.Errorf("decoding notice %s: %w", k, err)
		}
		out.Notices[n.Key] = n
		return nil
	})
	if out.Releases == nil {
		out.Releases = []ledger.Release{}
	}
	if out.Kernels == nil {
		out.Kernels = []ledger.Image{}
	}
	if out.Consumers == nil {
		out.Consumers = []ledger.Image{}
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
	Releases    []ledger.Release               `json:"releases"`
	Kernels     []ledger.Image                 `json:"kernels"`
	Consumers   []ledger.Image                 `json:"consumer_builds"`
	Held        []ledger.HeldRelease           `json:"held"`
	Tags        map[string]ledger.Promotion    `json:"tags"`
	Inspections map[string]*releaseinfo.Report `json:"inspections"`
	Notices     []ledger.Notice                `json:"notices"`
	Journal     []JournalEntry                 `json:"journal"`
}

// Export reads everything in one consistent view: the snapshot, and the
// graph state, the inspection cache and the journal.
func (s *Store) Export() (*Export, error) {
	out := &Export{Schema: SchemaVersion, Graphs: map[string]watcher.GraphState{}, Inspections: map[string]*releaseinfo.Report{}, Notices: []ledger.Notice{}}
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
			g.Nodes, g.Upstream = nil, nil // the releases list says it better
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
					counts[ledger.HeldStreamReason(st.Held)]++
				}
			}
		}
		return err
	})
	return counts, err
}

// Conflicts counts the tags left alone because they hold someone else's
// image, by kind of image, for metrics.
func (s *Store) Conflicts() (map[string]int, error) {
	out := map[string]int{}
	err := s.View(func(t *Tx) error {
		images, err := t.Images()
		for _, m := range images {
			if len(m.Conflicts) > 0 {
				out[m.Kind()] += len(m.Conflicts)
			}
		}
		return err
	})
	return out, err
}

// Counts returns the number of kernels in each state, for metrics.
func (s *Store) Counts() (map[string]int, int, error) {
	counts := map[string]int{}
	releases := 0
	err := s.View(func(t *Tx) error {
		ks, err := t.DTKs()
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

// KernelFiles returns what was kept of one kernel's files of one DTK image
// (key: the DTK's digest and the kernel's uname -r, KernelFilesKey), as
// the caller encoded it (package kmod's StoredKernel): a DTK's files cannot
// change behind its digest, so they are read from it once.
func (s *Store) KernelFiles(key string) ([]byte, bool, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketKernelFiles).Get([]byte(key)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, out != nil, err
}

// PutKernelFiles keeps data under key (see KernelFiles).
func (s *Store) PutKernelFiles(key string, data []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketKernelFiles).Put([]byte(key), data) })
}

// KernelFilesKey is the key of a kernel's files in a DTK image.
func KernelFilesKey(dtkDigest, kernelFull string) string { return dtkDigest + "/" + kernelFull }
