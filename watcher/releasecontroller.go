package watcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/distribution/reference"

	"github.com/dtkbot/dtkbot/version"
)

// Release-controller phases (openshift/release-controller
// pkg/release-controller/types.go).
const (
	PhasePending  = "Pending"
	PhaseReady    = "Ready"
	PhaseAccepted = "Accepted"
	PhaseRejected = "Rejected"
	PhaseFailed   = "Failed"
)

var knownPhases = []string{PhasePending, PhaseReady, PhaseAccepted, PhaseRejected, PhaseFailed}

// ReleaseController reads release streams of an OpenShift release-controller
// (https://<arch>.ocp.releases.ci.openshift.org: public, no auth, no SLA):
// GET /api/v1/releasestream/{stream}/tags, newest first, each tag with its
// phase and a pullspec by tag.
type ReleaseController struct {
	// URL is the controller's base URL.
	URL string
	// Arch is the graph arch of its payloads (amd64, arm64, ..., multi).
	Arch string
	// Streams are the release streams read (4-stable, 4-dev-preview).
	Streams []string
	// Phases are the phases that make a tag a release to consider (default
	// Accepted).
	Phases    []string
	HTTP      *http.Client
	MaxBytes  int64
	UserAgent string
}

// rcTags is the body of /api/v1/releasestream/{stream}/tags.
type rcTags struct {
	Name *string `json:"name"`
	Tags []rcTag `json:"tags"`
}

type rcTag struct {
	Name     string `json:"name"`
	Phase    string `json:"phase"`
	PullSpec string `json:"pullSpec"`
}

// StreamTag is one tag of a release stream.
type StreamTag struct {
	Version  string `json:"version"`
	Phase    string `json:"phase"`
	Pullspec string `json:"pullspec"`
}

// StreamState is what a previous read of one stream left: enough to make
// the next one conditional and to answer it without parsing.
type StreamState struct {
	ETag     string      `json:"etag,omitempty"`
	BodyHash string      `json:"body_hash,omitempty"`
	Tags     []StreamTag `json:"tags,omitempty"`
}

func (rc *ReleaseController) where(stream string) string {
	return fmt.Sprintf("release-controller %s (stream %s)", rc.URL, stream)
}

// Fetch reads one stream, conditionally on prev (an ETag when the server
// gives one, else a hash of the body). Tags that cannot be used (a name
// that is no version, a pullspec that does not parse, an unknown phase) are
// skipped with the reason.
func (rc *ReleaseController) Fetch(ctx context.Context, stream string, prev StreamState) (StreamState, []string, error) {
	where := rc.where(stream)
	base, err := url.Parse(strings.TrimSuffix(rc.URL, "/"))
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") {
		return prev, nil, fmt.Errorf("%s: not an http(s) URL", where)
	}
	u := base.JoinPath("api", "v1", "releasestream", stream, "tags")
	got, err := jsonGet{HTTP: rc.HTTP, UserAgent: rc.UserAgent, MaxBytes: rc.MaxBytes, Where: where}.get(ctx, u.String(), prev.ETag, prev.BodyHash)
	if err != nil {
		return prev, nil, err
	}
	if got.Unchanged {
		st := prev
		st.ETag = got.ETag
		return st, nil, nil
	}
	tags, skipped, err := ParseStreamTags(got.Body, stream)
	if err != nil {
		return prev, nil, fmt.Errorf("%s: %w", where, err)
	}
	return StreamState{ETag: got.ETag, BodyHash: got.Hash, Tags: tags}, skipped, nil
}

// ParseStreamTags validates a release stream's tags body.
func ParseStreamTags(body []byte, stream string) ([]StreamTag, []string, error) {
	var t rcTags
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&t); err != nil {
		return nil, nil, fmt.Errorf("parsing release stream tags: %w", err)
	}
	if dec.More() {
		return nil, nil, errors.New("parsing release stream tags: trailing data after the JSON object")
	}
	if t.Name == nil || t.Tags == nil {
		return nil, nil, errors.New(`parsing release stream tags: no "name" or "tags" (is this a release-controller?)`)
	}
	if *t.Name != stream {
		return nil, nil, fmt.Errorf("parsing release stream tags: the answer is about stream %q, not %q", *t.Name, stream)
	}
	var out []StreamTag
	var skipped []string
	for i, tag := range t.Tags {
		switch {
		case !version.Valid(tag.Name):
			skipped = append(skipped, fmt.Sprintf("stream %s tag %d: %q is not a release version", stream, i, tag.Name))
			continue
		case !slices.Contains(knownPhases, tag.Phase):
			skipped = append(skipped, fmt.Sprintf("stream %s tag %s: unknown phase %q", stream, tag.Name, tag.Phase))
			continue
		}
		if _, err := reference.ParseNormalizedNamed(tag.PullSpec); err != nil {
			skipped = append(skipped, fmt.Sprintf("stream %s tag %s: pullspec %q: %v", stream, tag.Name, tag.PullSpec, err))
			continue
		}
		out = append(out, StreamTag{Version: tag.Name, Phase: tag.Phase, Pullspec: tag.PullSpec})
	}
	return out, skipped, nil
}
