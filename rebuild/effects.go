package rebuild

import (
	"context"
	"errors"

	"github.com/dtkbot/dtkbot/state"
)

// BuildRequest asks for the DTK image of one kernel.
type BuildRequest struct {
	Kernel     string   `json:"kernel_version"`    // VERSION-RELEASE
	KernelFull string   `json:"kernel_full"`       // as uname -r
	RTKernel   string   `json:"rt_kernel_version"` // VERSION-RELEASE, or ""
	RHEL       string   `json:"rhel_version"`
	Stream     string   `json:"stream"`
	Arch       string   `json:"arch"`
	Image      string   `json:"image"` // the full reference to push: the staging reference
	Releases   []string `json:"releases"`
	DTKImage   string   `json:"payload_dtk_image,omitempty"`
	// Consumer and DTK are set for a consumer's build (a driver container
	// built FROM the kernel's DTK): its name, and the DTK pinned by digest.
	Consumer string `json:"consumer,omitempty"`
	DTK      string `json:"dtk_image,omitempty"`
	// Attempt counts the requests of this image, from 1 (0: not counted):
	// a backend that keeps one build object per attempt (a Kubernetes
	// Job) makes a new one for each.
	Attempt int `json:"attempt,omitempty"`
}

// Builder starts (or runs) the build of one kernel's image. It must be safe
// to call again for the same request: the pass only calls it after checking
// that the image is not in the registry, and records the request first.
type Builder interface {
	Build(ctx context.Context, req BuildRequest) error
}

// Promoter points dst (repository:tag) at the image src (pinned by digest)
// and returns the digest dst now has. A tag already at that digest must cost
// no upload.
type Promoter interface {
	Promote(ctx context.Context, src, dst string) (string, error)
}

// Untagger removes a tag (never the manifest behind it): the staging tag,
// once its image is promoted. Registries that cannot delete tags answer
// with an error wrapping registry.ErrUnsupported.
type Untagger interface {
	Untag(ctx context.Context, ref string) error
}

// Notifier tells people about a kernel's current state. It must find and
// update what it published before rather than publish twice.
type Notifier interface {
	Notify(ctx context.Context, k state.Kernel) error
}

// ErrNotConfigured is the result of an effect whose backend is not set up.
var ErrNotConfigured = errors.New("not configured")

// Unconfigured stands in for a Builder, Promoter or Notifier that the config
// does not set up: every call fails with ErrNotConfigured, which the pass
// records as "skipped" and retries on a later pass.
type Unconfigured struct{ What string }

// Build implements Builder.
func (u Unconfigured) Build(context.Context, BuildRequest) error { return u.err() }

// Promote implements Promoter.
func (u Unconfigured) Promote(context.Context, string, string) (string, error) { return "", u.err() }

// Notify implements Notifier.
func (u Unconfigured) Notify(context.Context, state.Kernel) error { return u.err() }

func (u Unconfigured) err() error {
	return &notConfigured{u.What}
}

type notConfigured struct{ what string }

func (n *notConfigured) Error() string { return n.what + " " + ErrNotConfigured.Error() }
func (n *notConfigured) Unwrap() error { return ErrNotConfigured }
