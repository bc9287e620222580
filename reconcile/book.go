package reconcile

import (
	"encoding/json"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/plan"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/version"
)

// book is the ledger as a pass holds it: loaded once, changed in memory and
// written through, transaction by transaction (in a dry run, only in
// memory). Its images are every kind's, by ledger key: the DTKs under
// their kernels' keys, consumers' images under consumer/kernel. It is safe
// for concurrent use (verifications record their images at once).
type book struct {
	mu       sync.Mutex
	store    *state.Store
	dry      bool
	releases map[string]ledger.Release
	images   map[string]ledger.Image
	promoted map[string]ledger.Promotion
	held     map[string]ledger.HeldRelease
}

func openBook(store *state.Store, dry bool) (*book, error) {
	b := &book{store: store, dry: dry, releases: map[string]ledger.Release{}, images: map[string]ledger.Image{}}
	err := store.View(func(tx *state.Tx) error {
		rels, err := tx.Releases()
		if err != nil {
			return err
		}
		for _, rel := range rels {
			b.releases[ledger.ReleaseKey(rel.Digest, rel.Arch)] = rel
		}
		images, err := tx.Images()
		if err != nil {
			return err
		}
		for _, m := range images {
			b.images[m.Key()] = m
		}
		if b.promoted, err = tx.Promotions(); err != nil {
			return err
		}
		b.held, err = tx.HeldReleases()
		return err
	})
	return b, err
}

// write runs a transaction on the store, unless the pass is dry.
func (b *book) write(f func(tx *state.Tx) error) error {
	if b.dry {
		return nil
	}
	return b.store.Update(f)
}

// journal notes an action and what came of it, in the transaction that
// recorded it.
func journal(tx *state.Tx, now time.Time, a plan.Action, result string) error {
	raw, _ := json.Marshal(a)
	return tx.Journal(state.JournalEntry{At: now, Action: raw, Result: result})
}

// ---- images ----

func (b *book) image(key string) (ledger.Image, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.images[key]
	return m, ok
}

// imagesOf lists the images keys names (those it has).
func (b *book) imagesOf(keys []string) []ledger.Image {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []ledger.Image
	for _, key := range keys {
		if m, ok := b.images[key]; ok {
			out = append(out, m)
		}
	}
	return out
}

// putImage keeps m, and journals the action that changed it (when a is
// not nil) in the same transaction.
func (b *book) putImage(m ledger.Image, now time.Time, a *plan.Action, result string) error {
	b.mu.Lock()
	b.images[m.Key()] = m
	b.mu.Unlock()
	return b.write(func(tx *state.Tx) error {
		if err := tx.PutImage(m); err != nil || a == nil {
			return err
		}
		return journal(tx, now, *a, result)
	})
}

// imageList lists the images of every kind whose kernel ships in release
// only ("" for all), in key order.
func (b *book) imageList(only string) []ledger.Image {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []ledger.Image
	for _, m := range b.images {
		if only == "" || slices.Contains(m.Releases, only) {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// dtkList lists the kernels' DTK images, as imageList.
func (b *book) dtkList(only string) []ledger.Image {
	return slices.DeleteFunc(b.imageList(only), func(m ledger.Image) bool { return !m.IsDTK() })
}

// consumersOf lists the consumers' images of the kernel whose DTK is
// dtkKey, every variant's, by consumer and variant.
func (b *book) consumersOf(dtkKey string) []ledger.Image {
	return slices.DeleteFunc(b.imageList(""), func(m ledger.Image) bool { return m.IsDTK() || m.DTKKey() != dtkKey })
}

// ---- releases and held payloads ----

func (b *book) release(key string) (ledger.Release, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rel, ok := b.releases[key]
	return rel, ok
}

func (b *book) putRelease(rel ledger.Release) error {
	b.mu.Lock()
	b.releases[ledger.ReleaseKey(rel.Digest, rel.Arch)] = rel
	b.mu.Unlock()
	return b.write(func(tx *state.Tx) error { return tx.PutRelease(rel) })
}

// recordRelease keeps a release newly read with the images it changed,
// and forgets that it was held, in one transaction.
func (b *book) recordRelease(rel ledger.Release, images []ledger.Image) error {
	key := ledger.ReleaseKey(rel.Digest, rel.Arch)
	b.mu.Lock()
	b.releases[key] = rel
	for _, m := range images {
		b.images[m.Key()] = m
	}
	_, wasHeld := b.held[key]
	delete(b.held, key)
	b.mu.Unlock()
	return b.write(func(tx *state.Tx) error {
		if err := tx.PutRelease(rel); err != nil {
			return err
		}
		for _, m := range images {
			if err := tx.PutImage(m); err != nil {
				return err
			}
		}
		if wasHeld {
			return tx.DeleteHeld(key)
		}
		return nil
	})
}

// releaseList lists the releases of version only ("" for all), in version
// order.
func (b *book) releaseList(only string) []ledger.Release {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []ledger.Release
	for _, rel := range b.releases {
		if only == "" || rel.Version == only {
			out = append(out, rel)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := version.Compare(out[i].Version, out[j].Version); c != 0 {
			return c < 0
		}
		return out[i].Arch < out[j].Arch
	})
	return out
}

// releaseMap and heldMap are copies, for the plan.
func (b *book) releaseMap() map[string]ledger.Release {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.releases)
}

func (b *book) heldMap() map[string]ledger.HeldRelease {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.held)
}

// heldList lists the held payloads of version only ("" for all).
func (b *book) heldList(only string) []ledger.HeldRelease {
	var out []ledger.HeldRelease
	for _, h := range b.heldMap() {
		if only == "" || h.Version == only {
			out = append(out, h)
		}
	}
	return out
}

// hold keeps a held payload; it reports whether it was held already.
func (b *book) hold(h ledger.HeldRelease) (before bool, err error) {
	b.mu.Lock()
	_, before = b.held[h.Key()]
	b.held[h.Key()] = h
	b.mu.Unlock()
	return before, b.write(func(tx *state.Tx) error { return tx.PutHeld(h) })
}

// heldSince is when a payload was first held (now if it is not).
func (b *book) heldSince(key string, now time.Time) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h, ok := b.held[key]; ok {
		return h.Since
	}
	return now
}

// ---- promoted tags ----

// owned is what dtkbot promoted at ref (promote.Tags.Owned).
func (b *book) owned(ref string) (ledger.Promotion, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	pr, ok := b.promoted[ref]
	return pr, ok
}

func (b *book) promotions() map[string]ledger.Promotion {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.promoted)
}

// promote keeps a tag dtkbot promoted, journaling the action that placed
// it.
func (b *book) promote(pr ledger.Promotion, now time.Time, a plan.Action, result string) error {
	b.mu.Lock()
	b.promoted[pr.Ref] = pr
	b.mu.Unlock()
	return b.write(func(tx *state.Tx) error {
		if err := tx.PutPromotion(pr); err != nil {
			return err
		}
		return journal(tx, now, a, result)
	})
}

// forget forgets a tag dtkbot promoted, journaling why.
func (b *book) forget(ref string, now time.Time, a plan.Action, result string) error {
	b.mu.Lock()
	delete(b.promoted, ref)
	b.mu.Unlock()
	return b.write(func(tx *state.Tx) error {
		if err := tx.DeletePromotion(ref); err != nil {
			return err
		}
		return journal(tx, now, a, result)
	})
}

// tagsHolding lists the tags dtkbot promoted, in ref's repository, that
// hold digest d (ref aside): what a removal of ref must leave as it was.
func (b *book) tagsHolding(ref, d string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for other, pr := range b.promoted {
		if pr.Digest == d && other != ref && ledger.Repository(other) == ledger.Repository(ref) {
			out = append(out, other)
		}
	}
	slices.Sort(out)
	return out
}
