package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/distribution/reference"
)

// ErrUnsupported is returned by Untag when the registry does not delete
// tags (distribution's UNSUPPORTED, 405, or a 400 refusing a tag).
var ErrUnsupported = errors.New("the registry does not delete tags")

// Untag asks the registry to remove one tag (repository:tag), with the OCI
// distribution spec's DELETE /v2/<name>/manifests/<tag>, which removes the
// tag and keeps the manifest. Some registries (older Harbor, early zot)
// delete the manifest and every tag naming it instead: package promote
// removes tags only through its guarded path, which reads the manifest
// first and puts back what such a registry took.
// Registries that do not delete tags (distribution/distribution's registry,
// Docker Hub) answer ErrUnsupported; a tag already gone is success. The tag
// is looked at afterwards: a proxy that acknowledges and drops the request
// must not leave a tag thought removed.
//
// containers/image has no such call: its DeleteImage resolves the tag and
// deletes the manifest by digest, which would take every other tag of that
// manifest (the kernel tag) with it.
func (c *Client) Untag(ctx context.Context, ref string) error {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return fmt.Errorf("untagging %q: %w", ref, err)
	}
	if _, ok := named.(reference.NamedTagged); !ok {
		return fmt.Errorf("untagging %q: not a tag reference", ref)
	}
	if _, ok := named.(reference.Canonical); ok {
		return fmt.Errorf("untagging %q: not a tag reference", ref)
	}
	src, err := c.primary(named)
	if err != nil {
		return err
	}
	err = c.do(ctx, src.host, func(ctx context.Context) error {
		resp, err := c.session.sendFor(ctx, src.endpoint, http.MethodDelete, "/v2/"+src.repo+"/manifests/"+src.ref, src.repo, "pull,push,delete", nil)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		var se *StatusError
		switch {
		case !errors.As(err, &se):
			return err
		case se.Status == http.StatusNotFound:
			return nil
		case se.Status == http.StatusMethodNotAllowed || se.Status == http.StatusNotImplemented ||
			(se.Status == http.StatusBadRequest && (se.Code == "UNSUPPORTED" || se.Code == "DIGEST_INVALID")):
			return permanent(fmt.Errorf("%w (%v)", ErrUnsupported, se))
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("untagging %s: %w", ref, err)
	}
	if _, err := c.Digest(ctx, ref); !errors.Is(err, ErrNotFound) {
		if err == nil {
			err = errors.New("the registry acknowledged the deletion, yet the tag is still there")
		}
		return fmt.Errorf("untagging %s: %w", ref, err)
	}
	return nil
}
