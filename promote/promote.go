// Package promote writes and removes the tags consumers read, and keeps in
// one place the rules that make that safe (Tags):
//
//  1. A consumer-visible tag other than an image's kernel tag (a release, a
//     floating or a mirror tag) is written only once the image's kernel tag
//     has been seen holding that very digest in this pass: promoted by this
//     pass, or confirmed with a HEAD.
//  2. dtkbot never overwrites or deletes a tag it did not promote: a tag
//     that holds another image, and is not one dtkbot put there, is a
//     *ConflictError, reported and left alone. A tag of dtkbot's that
//     someone else moved is put back only when the drift policy says so
//     (Tags.Repair).
//  3. Every tag removal (a staging tag, a rejected build's, a withdrawn
//     release's) goes through one guarded path (remove): the tag goes only
//     while it holds the image it should, and whatever a registry that
//     deletes the manifest with the tag took with it is put back.
//
// (The fourth rule, that a staging tag is never a tag consumers read, is
// the planner's: plan.CheckStaging and plan.Plan.)
//
// The copies are containers/image's (Remote); the checks are HEADs through
// package registry. It never builds or verifies an image: it is only given
// images the pass verified, pinned by digest.
package promote

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/signature"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/registry"
)

// Registry is what promotion needs of the registries it writes to. Digest,
// Untag and Manifest ask the registry itself, never a mirror. Remote is
// the implementation; tests use it against an in-process registry.
type Registry interface {
	// Digest is the digest ref points at (registry.ErrNotFound: none).
	Digest(ctx context.Context, ref string) (digest.Digest, error)
	// Copy points dst at src (one image pinned by digest, never a
	// manifest list), its digest preserved, and checks afterwards that
	// dst holds it.
	Copy(ctx context.Context, src, dst string) error
	// Untag asks the registry to remove a tag (registries that do not:
	// registry.ErrUnsupported). Some delete the manifest with it: Tags
	// removes tags only through its guarded path.
	Untag(ctx context.Context, ref string) error
	// Tags lists a repository's tags (registry.ErrNoTagList: the
	// registry does not list them).
	Tags(ctx context.Context, repository string) ([]string, error)
	// Manifest reads the manifest ref points at, and PutManifest writes
	// one under a tag: how a tag a registry deleted is put back.
	Manifest(ctx context.Context, ref string) ([]byte, string, error)
	PutManifest(ctx context.Context, ref string, body []byte, mimeType string) error
}

// Remote is Registry over a registry.Client (HEADs, tag deletes, manifest
// reads and writes, on the client's one session per registry) and
// containers/image (copies between repositories) with the same credentials
// and registries.conf.
//
// Within one repository a tag is pointed at an image by writing the
// image's manifest under it: no layer moves, and it costs a manifest GET,
// a PUT and the HEAD that checks it. A mirror repository receives an
// image's layers once, with its first tag, through containers/image's
// copy; later tags of it move none. (containers/image mounts blobs across
// repositories only when its blob-info cache knows where they are, and
// that cache is SQLite, which needs cgo: so kernel images and release tags
// share one repository by design.)
type Remote struct {
	Client *registry.Client

	// manifests are the manifests read, by repository@digest: what is
	// behind a digest cannot change, and an image gets many tags.
	mu        sync.Mutex
	manifests map[string]manifestBytes
}

type manifestBytes struct {
	body     []byte
	mimeType string
}

// NewRemote returns a Remote using reg's credentials and settings.
func NewRemote(reg *registry.Client) *Remote { return &Remote{Client: reg} }

// Digest implements Registry.
func (r *Remote) Digest(ctx context.Context, ref string) (digest.Digest, error) {
	return r.Client.Digest(ctx, ref)
}

// Untag implements Registry.
func (r *Remote) Untag(ctx context.Context, ref string) error { return r.Client.Untag(ctx, ref) }

// Tags implements Registry.
func (r *Remote) Tags(ctx context.Context, repository string) ([]string, error) {
	return r.Client.Tags(ctx, repository)
}

// Manifest implements Registry; a reference pinned by digest is read once.
func (r *Remote) Manifest(ctx context.Context, ref string) ([]byte, string, error) {
	_, pinned := pinnedDigest(ref)
	if pinned == nil {
		r.mu.Lock()
		m, ok := r.manifests[ref]
		r.mu.Unlock()
		if ok {
			return m.body, m.mimeType, nil
		}
	}
	body, mimeType, err := r.Client.Manifest(ctx, ref)
	if err == nil && pinned == nil {
		r.mu.Lock()
		if r.manifests == nil {
			r.manifests = map[string]manifestBytes{}
		}
		if len(r.manifests) > 4096 {
			clear(r.manifests) // a bound, not a policy: they are cheap to read again
		}
		r.manifests[ref] = manifestBytes{body, mimeType}
		r.mu.Unlock()
	}
	return body, mimeType, err
}

// ErrManifestList means a promotion was asked for a manifest list: dtkbot
// verifies one image per kernel and arch, and a list's other platforms
// would reach arch-less and floating tags unverified.
var ErrManifestList = errors.New("a manifest list is never promoted: only the verified image of one platform is")

// Copy implements Registry: src must be one image, never a manifest list
// (ErrManifestList).
func (r *Remote) Copy(ctx context.Context, src, dst string) error {
	want, err := pinnedDigest(src)
	if err != nil {
		return err
	}
	body, mimeType, err := r.Manifest(ctx, src)
	if err != nil {
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	if manifest.MIMETypeIsMultiImage(mimeType) {
		return fmt.Errorf("copying %s to %s: %w", src, dst, ErrManifestList)
	}
	if ledger.Repository(src) == ledger.Repository(dst) {
		return r.PutManifest(ctx, dst, body, mimeType)
	}
	srcRef, err := docker.ParseReference("//" + src)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	dstRef, err := docker.ParseReference("//" + dst)
	if err != nil {
		return fmt.Errorf("copying to %s: %w", dst, err)
	}
	// The source is pinned by a digest dtkbot verified; signature policy
	// (verify: in config) is applied to release payloads, not here.
	policy, err := signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		return err
	}
	defer func() { _ = policy.Destroy() }()
	sys := r.Client.SystemContext()
	out, err := copy.Image(ctx, policy, dstRef, srcRef, &copy.Options{
		SourceCtx:       sys,
		DestinationCtx:  sys,
		PreserveDigests: true,
	})
	if err != nil {
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	if got, err := manifest.Digest(out); err != nil || got != want {
		return fmt.Errorf("copying %s to %s: the copy has digest %s (%v)", src, dst, got, err)
	}
	return r.check(ctx, dst, want, "after the copy")
}

// PutManifest implements Registry: the blobs the manifest names must be in
// the repository.
func (r *Remote) PutManifest(ctx context.Context, ref string, body []byte, mimeType string) error {
	if err := r.Client.PutManifest(ctx, ref, body, mimeType); err != nil {
		return err
	}
	return r.check(ctx, ref, digest.FromBytes(body), "after writing it")
}

// check looks at the world, not at the answer: a proxy that acknowledged
// a write without storing it must not leave a promotion recorded that is
// not there.
func (r *Remote) check(ctx context.Context, ref string, want digest.Digest, when string) error {
	have, err := r.Client.Digest(ctx, ref)
	if err != nil {
		return fmt.Errorf("checking %s %s: %w", ref, when, err)
	}
	if have != want {
		return fmt.Errorf("checking %s %s: it points at %s, not %s", ref, when, have, want)
	}
	return nil
}

// pinnedDigest is the digest of a reference pinned by digest.
func pinnedDigest(ref string) (digest.Digest, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("parsing %q: %w", ref, err)
	}
	canonical, ok := named.(reference.Canonical)
	if !ok {
		return "", fmt.Errorf("%s is not pinned by digest: only verified images, by digest, are promoted", ref)
	}
	return canonical.Digest(), nil
}

// ErrConflict is what a *ConflictError wraps.
var ErrConflict = errors.New("the tag holds an image dtkbot did not put there")

// ConflictError is a tag dtkbot would write or remove that holds an image
// it did not put there (or that someone moved since): never overwritten,
// never deleted.
type ConflictError struct {
	Ref  string
	Has  digest.Digest // what it holds
	Want digest.Digest // what dtkbot would put there ("" for a removal)
	// Moved: dtkbot had promoted the tag, and someone moved it since.
	Moved bool
}

func (e *ConflictError) Error() string {
	if e.Moved {
		return fmt.Sprintf("tag %s holds %s, not the image dtkbot promoted there: someone moved it, and dtkbot does not move it back (target.audit.on_drift: report)", e.Ref, e.Has)
	}
	return fmt.Sprintf("tag %s holds %s, which dtkbot did not put there: dtkbot never overwrites or removes a tag it did not promote (remove the tag, or change the target's tags)", e.Ref, e.Has)
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// ErrUnconfirmed means a consumer-visible tag was asked for before its
// image's kernel tag was seen holding the image in this pass.
var ErrUnconfirmed = errors.New("not before the image's kernel tag holds it")
