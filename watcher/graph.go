// Package watcher discovers OpenShift releases: it reads the update graph
// (Cincinnati, as api.openshift.com and self-hosted OpenShift Update Services
// serve it) with conditional requests, adds the payloads listed in the
// config, and deduplicates them by payload digest.
//
// It never reads a payload: that is releaseinfo's job.
package watcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"

	"github.com/distribution/reference"
)

// Node is one release of the graph.
type Node struct {
	Version  string            `json:"version"`
	Payload  string            `json:"payload"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// graphBody is the update graph's JSON ("version": 1). Edges are checked for
// shape; conditional edges are not used.
type graphBody struct {
	Version *int       `json:"version"`
	Nodes   []Node     `json:"nodes"`
	Edges   [][]int    `json:"edges"`
	Cond    []struct{} `json:"conditionalEdges"`
}

// GraphState is what a previous fetch of one channel and arch left: enough
// to make the next fetch conditional and to answer it without parsing.
type GraphState struct {
	ETag     string `json:"etag,omitempty"`
	BodyHash string `json:"body_hash,omitempty"`
	Nodes    []Node `json:"nodes,omitempty"`
}

// GraphClient reads the update graph.
type GraphClient struct {
	URL       string
	HTTP      *http.Client
	MaxBytes  int64
	UserAgent string
}

// FetchResult is one channel and arch of the graph.
type FetchResult struct {
	State GraphState
	// Changed is false when the server answered 304 or the body hashed as
	// before: the caller has no further work.
	Changed bool
	// Skipped are nodes that could not be used, with the reason.
	Skipped []string
}

// graphError is the update service's error body: {"kind": ..., "value": ...}.
type graphError struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
}

var versionPattern = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$`)

// Fetch reads channel for arch, conditionally on prev.
func (c *GraphClient) Fetch(ctx context.Context, channel, arch string, prev GraphState) (FetchResult, error) {
	where := fmt.Sprintf("update graph %s (channel %s, arch %s)", c.URL, channel, arch)
	u, err := url.Parse(c.URL)
	if err != nil {
		return FetchResult{}, fmt.Errorf("%s: %w", where, err)
	}
	q := u.Query()
	q.Set("channel", channel)
	q.Set("arch", arch)
	u.RawQuery = q.Encode()
	got, err := jsonGet{HTTP: c.HTTP, UserAgent: c.UserAgent, MaxBytes: c.MaxBytes, Where: where, Describe: func(body []byte) string {
		var ge graphError
		if json.Unmarshal(body, &ge) == nil && ge.Kind != "" {
			return ge.Kind + ": " + ge.Value
		}
		return ""
	}}.get(ctx, u.String(), prev.ETag, prev.BodyHash)
	if err != nil {
		return FetchResult{}, err
	}
	if got.Unchanged {
		st := prev
		st.ETag = got.ETag
		return FetchResult{State: st}, nil
	}
	nodes, skipped, err := ParseGraph(got.Body)
	if err != nil {
		return FetchResult{}, fmt.Errorf("%s: %w", where, err)
	}
	return FetchResult{State: GraphState{ETag: got.ETag, BodyHash: got.Hash, Nodes: nodes}, Changed: true, Skipped: skipped}, nil
}

// HTTPError is an update service answer other than 200 or 304.
type HTTPError struct {
	Status int
	Msg    string
}

func (e *HTTPError) Error() string { return e.Msg }

// Temporary reports whether a later pass may succeed (5xx, 429).
func (e *HTTPError) Temporary() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests
}

// ParseGraph validates a graph body and returns its usable nodes. A body that
// is not a graph is an error; a node that cannot be used (no version, a
// payload not pinned by digest) is skipped with its reason.
func ParseGraph(body []byte) (nodes []Node, skipped []string, err error) {
	var g graphBody
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&g); err != nil {
		return nil, nil, fmt.Errorf("parsing graph: %w", err)
	}
	if dec.More() {
		return nil, nil, errors.New("parsing graph: trailing data after the JSON object")
	}
	if g.Version != nil && *g.Version != 1 {
		return nil, nil, fmt.Errorf("parsing graph: version %d, want 1", *g.Version)
	}
	if g.Nodes == nil {
		return nil, nil, errors.New("parsing graph: no \"nodes\" (is this an update graph?)")
	}
	for i, e := range g.Edges {
		if len(e) != 2 || e[0] < 0 || e[1] < 0 || e[0] >= len(g.Nodes) || e[1] >= len(g.Nodes) {
			return nil, nil, fmt.Errorf("parsing graph: edge %d %v does not join two of the %d nodes", i, e, len(g.Nodes))
		}
	}
	for i, n := range g.Nodes {
		if !versionPattern.MatchString(n.Version) {
			skipped = append(skipped, fmt.Sprintf("node %d: version %q is not a release version", i, n.Version))
			continue
		}
		named, err := reference.ParseNormalizedNamed(n.Payload)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("node %d (%s): payload %q: %v", i, n.Version, n.Payload, err))
			continue
		}
		if _, ok := named.(reference.Canonical); !ok {
			skipped = append(skipped, fmt.Sprintf("node %d (%s): payload %q is not pinned by digest", i, n.Version, n.Payload))
			continue
		}
		nodes = append(nodes, n)
	}
	return nodes, skipped, nil
}
