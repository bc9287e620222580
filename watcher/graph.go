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
	"time"

	"github.com/distribution/reference"

	"github.com/dtkbot/dtkbot/version"
)

// Node is one release of the graph.
type Node struct {
	Version  string            `json:"version"`
	Payload  string            `json:"payload"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Graph is an update graph document as the update service served it (the
// Cincinnati graph API, "version": 1): every node as it came, the edges as
// pairs of node indexes, and the conditional edges with their risks as they
// came. It is the last good graph of a channel and arch, kept in the state:
// discovery reads its usable nodes, and dtkbot serves it again with risks
// of its own (package upgradegraph).
type Graph struct {
	Nodes            []GraphNode        `json:"nodes"`
	Edges            [][2]int           `json:"edges"`
	ConditionalEdges []ConditionalEdges `json:"conditionalEdges"`
}

// GraphNode is one node of a Graph: its bytes as the service sent them
// (compacted), and the two fields dtkbot reads of them.
type GraphNode struct {
	Version string
	Payload string
	Raw     json.RawMessage
}

// MarshalJSON writes the node as it came (a node made by hand, with no
// bytes, as its version and payload).
func (n GraphNode) MarshalJSON() ([]byte, error) {
	if n.Raw == nil {
		return json.Marshal(struct {
			Version string `json:"version"`
			Payload string `json:"payload"`
		}{n.Version, n.Payload})
	}
	return n.Raw, nil
}

// UnmarshalJSON keeps the node's bytes and reads its version and payload.
func (n *GraphNode) UnmarshalJSON(b []byte) error {
	var fields struct {
		Version string `json:"version"`
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return err
	}
	n.Version, n.Payload, n.Raw = fields.Version, fields.Payload, buf.Bytes()
	return nil
}

// ConditionalEdges is one entry of a graph's conditionalEdges: updates
// (from and to name node versions) that share the risks. Risks are kept as
// they came: dtkbot never rewrites the upstream's.
type ConditionalEdges struct {
	Edges []ConditionalEdge `json:"edges"`
	Risks []json.RawMessage `json:"risks"`
}

// ConditionalEdge is one update of a ConditionalEdges, by version.
type ConditionalEdge struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// graphBody is the update graph's JSON as it is checked.
type graphBody struct {
	Version *int               `json:"version"`
	Nodes   []GraphNode        `json:"nodes"`
	Edges   [][]int            `json:"edges"`
	Cond    []ConditionalEdges `json:"conditionalEdges"`
}

// GraphState is what a previous fetch of one channel and arch left: enough
// to make the next fetch conditional and to answer it without parsing, the
// whole graph as it was last read, and when the service last answered or
// failed to.
type GraphState struct {
	ETag     string `json:"etag,omitempty"`
	BodyHash string `json:"body_hash,omitempty"`
	Nodes    []Node `json:"nodes,omitempty"`
	// Upstream is the last good graph, whole. A state written before
	// dtkbot kept it has none: the next fetch then reads the graph whole,
	// unconditionally.
	Upstream *Graph `json:"upstream,omitempty"`
	// ReadAt is when the service last answered with this graph (200 or
	// 304): how old what dtkbot knows of it is.
	ReadAt time.Time `json:"read_at,omitzero"`
	// Failure is why the last read failed, since FailedAt; empty when the
	// last read succeeded.
	Failure  string    `json:"failure,omitempty"`
	FailedAt time.Time `json:"failed_at,omitzero"`
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
	if prev.Upstream == nil {
		// Nothing of the graph itself was kept: read it whole.
		prev.ETag, prev.BodyHash = "", ""
	}
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
	g, err := ReadGraph(got.Body)
	if err != nil {
		return FetchResult{}, fmt.Errorf("%s: %w", where, err)
	}
	nodes, skipped := g.Usable()
	return FetchResult{State: GraphState{ETag: got.ETag, BodyHash: got.Hash, Nodes: nodes, Upstream: g}, Changed: true, Skipped: skipped}, nil
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
	g, err := ReadGraph(body)
	if err != nil {
		return nil, nil, err
	}
	nodes, skipped = g.Usable()
	return nodes, skipped, nil
}

// ReadGraph checks a graph body's shape and keeps it whole: a JSON object
// of version 1 (or none) with nodes, edges that join two of them, and
// conditional edges of the right shape.
func ReadGraph(body []byte) (*Graph, error) {
	var g graphBody
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&g); err != nil {
		return nil, fmt.Errorf("parsing graph: %w", err)
	}
	if dec.More() {
		return nil, errors.New("parsing graph: trailing data after the JSON object")
	}
	if g.Version != nil && *g.Version != 1 {
		return nil, fmt.Errorf("parsing graph: version %d, want 1", *g.Version)
	}
	if g.Nodes == nil {
		return nil, errors.New("parsing graph: no \"nodes\" (is this an update graph?)")
	}
	out := &Graph{Nodes: g.Nodes, Edges: make([][2]int, len(g.Edges)), ConditionalEdges: g.Cond}
	for i, e := range g.Edges {
		if len(e) != 2 || e[0] < 0 || e[1] < 0 || e[0] >= len(g.Nodes) || e[1] >= len(g.Nodes) {
			return nil, fmt.Errorf("parsing graph: edge %d %v does not join two of the %d nodes", i, e, len(g.Nodes))
		}
		out.Edges[i] = [2]int{e[0], e[1]}
	}
	if out.ConditionalEdges == nil {
		out.ConditionalEdges = []ConditionalEdges{}
	}
	return out, nil
}

// Usable returns the nodes dtkbot can read, each skipped one with its
// reason: a version that is no release version, a payload not pinned by
// digest, metadata that is not strings.
func (g *Graph) Usable() (nodes []Node, skipped []string) {
	for i, gn := range g.Nodes {
		var n Node
		if err := json.Unmarshal(gn.Raw, &n); err != nil {
			skipped = append(skipped, fmt.Sprintf("node %d (%s): %v", i, gn.Version, err))
			continue
		}
		if !version.Valid(n.Version) {
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
	return nodes, skipped
}

// PayloadArches are the arches a payload of a graph arch is read for: a
// multi payload (a manifest list) for the two arches drivers are built for
// most, any other for its own.
func PayloadArches(graphArch string) []string {
	if graphArch == "multi" {
		return []string{"amd64", "arm64"}
	}
	return []string{graphArch}
}
