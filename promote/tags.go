package promote

import (
	"context"
	"errors"
	"fmt"
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
			return "", fmt.Errorf("promoting %s: %w: %v", ref, ErrUnconfirmed, err)
		}
	}
	d, err := t.write(ctx, src, ref, want)
	if after == "" {
		t.settle(ref, want, err)
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

// Remove deletes a tag dtkbot promoted (a withdrawn pre-release's), only
// while it still holds what dtkbot put there: a tag someone moved since is
// a *ConflictError and stays (rule 2). A tag already gone is success.
// Registries that do not delete tags answer registry.ErrUnsupported.
func (t *Tags) Remove(ctx context.Context, ref string) error {
	p, ok := t.owned(ref)
	if !ok {
		return fmt.Errorf("removing %s: dtkbot did not promote it", ref)
	}
	has, err := t.Registry.Digest(ctx, ref)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("removing %s: %w", ref, err)
	case has.String() != p.Digest:
		return &ConflictError{Ref: ref, Has: has, Moved: true}
	}
	return t.Registry.Untag(ctx, ref)
}

// RemoveStaging deletes an image's staging tag once the image is promoted,
// then confirms that keep[0] (its kernel tag) still holds want; when it
// does not, each of keep (the kernel tag and the image's other tags in
// that repository) that a registry deleted along with the staging tag is
// put back (rule 3). It says what became of the staging tag. A registry
// that does not delete tags keeps it (not an error).
func (t *Tags) RemoveStaging(ctx context.Context, staging string, want digest.Digest, keep []string) (string, error) {
	repo := ledger.Repository(staging)
	var body []byte
	var mimeType string
	for _, ref := range keep {
		if ledger.Repository(ref) != repo {
			continue
		}
		// A registry that deletes the manifest with the tag takes every tag
		// of the repository that names it: keep the manifest to put back.
		var err error
		if body, mimeType, err = t.Registry.Manifest(ctx, repo+"@"+want.String()); err != nil {
			return "", fmt.Errorf("reading %s before removing %s: %w", want, staging, err)
		}
		break
	}
	err := t.Registry.Untag(ctx, staging)
	switch {
	case errors.Is(err, registry.ErrUnsupported):
		return "kept: the registry does not delete tags", nil
	case err != nil:
		return "", fmt.Errorf("removing the staging tag %s: %w", staging, err)
	}
	// The kernel tag first: if it still holds the image, the registry
	// removed the tag alone, and the image's other tags are as they were.
	if len(keep) > 0 {
		if has, err := t.Registry.Digest(ctx, keep[0]); err == nil && has == want {
			return "removed", nil
		}
	}
	outcome := "removed"
	for _, ref := range keep {
		has, err := t.Registry.Digest(ctx, ref)
		switch {
		case err == nil && has == want:
			continue
		case errors.Is(err, registry.ErrNotFound) && body != nil && ledger.Repository(ref) == repo:
			if err := t.Registry.PutManifest(ctx, ref, body, mimeType); err != nil {
				return "", fmt.Errorf("putting back %s, which the registry deleted with the staging tag %s: %w", ref, staging, err)
			}
			outcome = "removed (the registry deleted the image's other tags with it: put back)"
		case err != nil:
			return "", fmt.Errorf("confirming %s after removing the staging tag %s: %w", ref, staging, err)
		default:
			return "", fmt.Errorf("confirming %s after removing the staging tag %s: %w", ref, staging, &ConflictError{Ref: ref, Has: has, Want: want, Moved: true})
		}
	}
	return outcome, nil
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
