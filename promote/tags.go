package promote

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/registry"
)

// Tags writes and removes one pass's tags under the rules of the package
// doc. Make one per pass: what it has confirmed holds for that pass only.
// It is safe for concurrent use.
type Tags struct {
	Registry Registry
	// Owned says whether dtkbot promoted ref, and to which digest: only
	// such tags are ever overwritten or removed.
	Owned func(ref string) (ledger.Promotion, bool)
	// Repair lets a tag of dtkbot's that someone moved be put back
	// (target.audit.on_drift: repoint); otherwise it is a conflict.
	Repair bool

	mu        sync.Mutex
	confirmed map[string]digest.Digest // kernel tags seen holding an image this pass
	refused   map[string]error         // kernel tags seen not holding it, or failed
}

// Promote points ref at src (pinned by digest), verified before by the
// pass, and returns the digest ref holds. after is the image's kernel tag
// ("" when ref is the kernel tag itself): ref is written only once after
// was seen holding src's digest in this pass (rule 1): promoted by this
// pass, or confirmed by one HEAD (Confirm). A tag that already holds the
// image costs one HEAD and no write; a tag that holds another image is
// overwritten only when dtkbot put that image there (rule 2).
func (t *Tags) Promote(ctx context.Context, src, ref, after string) (digest.Digest, error) {
	want, err := pinnedDigest(src)
	if err != nil {
		return "", fmt.Errorf("promoting %s: %w", ref, err)
	}
	if after != "" {
		if err := t.Confirm(ctx, after, want); err != nil {
			return "", fmt.Errorf("%w: %v", ErrUnconfirmed, err)
		}
	}
	d, err := t.write(ctx, src, ref, want)
	if after == "" {
		var refused error
		if err != nil {
			refused = fmt.Errorf("promoting %s failed in this pass", ref)
		}
		t.settle(ref, want, refused)
	}
	return d, err
}

// write is Promote's HEAD and, when needed, copy.
func (t *Tags) write(ctx context.Context, src, ref string, want digest.Digest) (digest.Digest, error) {
	has, err := t.Registry.Digest(ctx, ref)
	switch {
	case err == nil && has == want:
	case err != nil && !errors.Is(err, registry.ErrNotFound):
		return "", fmt.Errorf("promoting %s: %w", ref, err)
	default:
		if err == nil {
			if cerr := t.mayOverwrite(ref, has, want); cerr != nil {
				return "", cerr
			}
		}
		if err := t.Registry.Copy(ctx, src, ref); err != nil {
			return "", fmt.Errorf("promoting %s: %w", ref, err)
		}
	}
	return want, nil
}

// Confirm looks (one HEAD, once a pass) whether an image's kernel tag holds
// want, so its other tags may be written in this pass. A tag that holds
// another image is a *ConflictError (moved, when dtkbot had promoted it); a
// kernel tag whose promotion failed in this pass is not looked at again.
func (t *Tags) Confirm(ctx context.Context, kernelRef string, want digest.Digest) error {
	t.mu.Lock()
	held, refused := t.confirmed[kernelRef], t.refused[kernelRef+"@"+want.String()]
	t.mu.Unlock()
	switch {
	case held == want:
		return nil
	case refused != nil:
		return refused
	}
	has, err := t.Registry.Digest(ctx, kernelRef)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		err = fmt.Errorf("%s does not exist", kernelRef)
	case err != nil:
		err = fmt.Errorf("confirming %s: %w", kernelRef, err)
	case has != want:
		_, owned := t.owned(kernelRef)
		err = &ConflictError{Ref: kernelRef, Has: has, Want: want, Moved: owned}
	}
	t.settle(kernelRef, want, err)
	return err
}

// Remove withdraws a tag dtkbot promoted (a withdrawn pre-release's),
// only while it still holds what dtkbot put there: a tag someone moved
// since is a *ConflictError and stays (rule 2). keep are the tags dtkbot
// knows hold that image in the same repository (its kernel tag, the tags
// of other releases): put back if the registry deletes them with it. It
// says what became of the tag (see remove).
func (t *Tags) Remove(ctx context.Context, ref string, keep []string) (string, error) {
	p, ok := t.owned(ref)
	if !ok {
		return "", fmt.Errorf("removing %s: dtkbot did not promote it", ref)
	}
	outcome, err := t.remove(ctx, ref, digest.Digest(p.Digest), keep)
	var conflict *ConflictError
	if errors.As(err, &conflict) {
		conflict.Moved = true
	}
	return outcome, err
}

// RemoveStaging deletes a staging tag that holds want: a promoted image's
// once its kernel tag holds it (keep: the image's tags in that repository,
// the kernel tag first), or a rejected image's (keep: none), so the next
// build pushes to a clean tag. A staging tag that holds another image now
// (a later build's) is kept, and said so; so is one a registry will not
// delete. It says what became of the tag (see remove).
func (t *Tags) RemoveStaging(ctx context.Context, staging string, want digest.Digest, keep []string) (string, error) {
	outcome, err := t.remove(ctx, staging, want, keep)
	var conflict *ConflictError
	if errors.As(err, &conflict) {
		return fmt.Sprintf("kept: it holds %s now, not %s", conflict.Has, want), nil
	}
	return outcome, err
}

// remove is the one way dtkbot deletes a tag, whatever the tag (rules 2
// and 3 of the package doc): ref goes only while it holds want (a tag
// already gone is success; one that holds another image is a
// *ConflictError, and stays).
// Some registries (older Harbor, early zot) delete the manifest a tag
// names, and with it every tag of the repository naming it, which may be
// tags dtkbot never promoted: so the manifest and the repository's tags
// are read first, and after the DELETE one HEAD by digest says whether
// the manifest is still there. When it is not, every tag listed before
// and gone now (ref aside), and each of keep, is put back. A registry
// that does not delete tags keeps ref (not an error). It says what became
// of the tag: "removed", "already gone", "kept: …", or "removed (… put
// back …)".
func (t *Tags) remove(ctx context.Context, ref string, want digest.Digest, keep []string) (string, error) {
	has, err := t.Registry.Digest(ctx, ref)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return "already gone", nil
	case err != nil:
		return "", fmt.Errorf("removing %s: %w", ref, err)
	case has != want:
		return "", &ConflictError{Ref: ref, Has: has}
	}
	repo := ledger.Repository(ref)
	pinned := repo + "@" + want.String()
	body, mimeType, err := t.Registry.Manifest(ctx, pinned)
	if err != nil {
		return "", fmt.Errorf("reading %s before removing %s: %w", pinned, ref, err)
	}
	before, err := t.Registry.Tags(ctx, repo)
	switch {
	case errors.Is(err, registry.ErrNoTagList):
		before = nil // only keep can be put back
	case err != nil:
		return "", fmt.Errorf("listing the tags of %s before removing %s: %w", repo, ref, err)
	}
	err = t.Registry.Untag(ctx, ref)
	switch {
	case errors.Is(err, registry.ErrUnsupported):
		return "kept: the registry does not delete tags", nil
	case err != nil:
		return "", fmt.Errorf("removing %s: %w", ref, err)
	}
	_, err = t.Registry.Digest(ctx, pinned)
	switch {
	case err == nil:
		return "removed", nil // the registry removed the tag alone
	case !errors.Is(err, registry.ErrNotFound):
		return "", fmt.Errorf("confirming %s after removing %s: %w", pinned, ref, err)
	}
	// The registry deleted the manifest with the tag: put back the tags it
	// took.
	gone, err := t.takenWith(ctx, ref, before, keep)
	if err != nil {
		return "", fmt.Errorf("finding the tags the registry deleted with %s: %w", ref, err)
	}
	for _, tag := range gone {
		if err := t.Registry.PutManifest(ctx, tag, body, mimeType); err != nil {
			return "", fmt.Errorf("putting back %s, which the registry deleted with %s: %w", tag, ref, err)
		}
	}
	if len(gone) == 0 {
		return "removed (the registry deleted the manifest too; no other tag named it)", nil
	}
	tags := make([]string, len(gone))
	for i, g := range gone {
		tags[i] = g[len(repo)+1:]
	}
	return fmt.Sprintf("removed (the registry deleted the manifest and %d other %s of %s with it: put back %s)", len(gone),
		plural(len(gone), "tag", "tags"), repo, strings.Join(tags, ", ")), nil
}

// takenWith lists the tags of ref's repository that a deletion of ref took
// with it: those listed before and not now (before: nil when the registry
// does not list tags), and those of keep a HEAD finds gone.
func (t *Tags) takenWith(ctx context.Context, ref string, before, keep []string) ([]string, error) {
	repo := ledger.Repository(ref)
	gone := map[string]bool{}
	listed := map[string]bool{}
	if before != nil {
		after, err := t.Registry.Tags(ctx, repo)
		if err != nil {
			return nil, err
		}
		now := map[string]bool{}
		for _, tag := range after {
			now[tag] = true
		}
		for _, tag := range before {
			listed[repo+":"+tag] = true
			if !now[tag] {
				gone[repo+":"+tag] = true
			}
		}
	}
	for _, k := range keep {
		if ledger.Repository(k) != repo || listed[k] {
			continue
		}
		switch _, err := t.Registry.Digest(ctx, k); {
		case errors.Is(err, registry.ErrNotFound):
			gone[k] = true
		case err != nil:
			return nil, err
		}
	}
	delete(gone, ref)
	out := make([]string, 0, len(gone))
	for k := range gone {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// mayOverwrite applies rule 2 to a tag that holds has, not want.
func (t *Tags) mayOverwrite(ref string, has, want digest.Digest) error {
	p, ok := t.owned(ref)
	switch {
	case !ok:
		return &ConflictError{Ref: ref, Has: has, Want: want}
	case p.Digest == has.String(), t.Repair:
		return nil // dtkbot's own tag moving on (a floating tag), or drift put back
	}
	return &ConflictError{Ref: ref, Has: has, Want: want, Moved: true}
}

func (t *Tags) owned(ref string) (ledger.Promotion, bool) {
	if t.Owned == nil {
		return ledger.Promotion{}, false
	}
	return t.Owned(ref)
}

// settle remembers what a kernel tag was seen to hold, or that it does not
// hold want, for the rest of the pass.
func (t *Tags) settle(ref string, want digest.Digest, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.confirmed == nil {
		t.confirmed, t.refused = map[string]digest.Digest{}, map[string]error{}
	}
	if err != nil {
		t.refused[ref+"@"+want.String()] = err
		return
	}
	t.confirmed[ref] = want
	delete(t.refused, ref+"@"+want.String())
}
