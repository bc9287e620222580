// Package graphtest is an in-process OpenShift update service (Cincinnati
// graph API) for tests and the demo: channels of nodes published in steps,
// edges (each node to the next, or as set) and conditional edges with
// risks, ETags and 304s, the service's 400 for a missing channel, request
// counting, and switchable failures.
package graphtest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
)

// Node is one release in a channel.
type Node struct {
	Version string            `json:"version"`
	Payload string            `json:"payload"`
	Meta    map[string]string `json:"metadata"`
}

// Risk is a conditional edge's risk, as the service writes it.
type Risk struct {
	URL           string         `json:"url"`
	Name          string         `json:"name"`
	Message       string         `json:"message"`
	MatchingRules []MatchingRule `json:"matchingRules"`
}

// MatchingRule is a risk's rule: Always, or PromQL with its query.
type MatchingRule struct {
	Type   string         `json:"type"`
	PromQL *PromQLMatcher `json:"promql,omitempty"`
}

// PromQLMatcher is a PromQL rule's query.
type PromQLMatcher struct {
	PromQL string `json:"promql"`
}

type conditional struct {
	Edges []map[string]string `json:"edges"`
	Risks []Risk              `json:"risks"`
}

// Server serves graphs at /api/upgrades_info/v1/graph.
type Server struct {
	HTTP     *httptest.Server
	mu       sync.Mutex
	channels map[string][]Node // key channel/arch
	// edges are a channel's edges by version, when set (else each node
	// leads to the next); conditionals its conditional edges.
	edges        map[string][][2]string
	conditionals map[string][]conditional
	// Fail, when set, is the status every request gets (500, 503, ...).
	Fail     atomic.Int32
	Requests atomic.Int64
	NotMod   atomic.Int64 // 304s served
}

// New starts a server.
func New() *Server { return NewWith(func(h http.Handler) http.Handler { return h }) }

// NewWith starts a server behind wrap (a fault injector, say).
func NewWith(wrap func(http.Handler) http.Handler) *Server {
	s := &Server{channels: map[string][]Node{}, edges: map[string][][2]string{}, conditionals: map[string][]conditional{}}
	s.HTTP = httptest.NewServer(wrap(s))
	return s
}

// URL is the graph endpoint.
func (s *Server) URL() string { return s.HTTP.URL + "/api/upgrades_info/v1/graph" }

// Close stops the server.
func (s *Server) Close() { s.HTTP.Close() }

// Publish adds a release to a channel for an arch (the next step of a test).
func (s *Server) Publish(channel, arch, version, payload string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := channel + "/" + arch
	s.channels[key] = append(s.channels[key], Node{Version: version, Payload: payload, Meta: map[string]string{
		"io.openshift.upgrades.graph.release.channels": channel,
		"url": "https://access.redhat.com/errata/RHBA-2024:0001",
	}})
}

// SetEdges sets a channel's edges, by version (from, to), in place of each
// node leading to the next.
func (s *Server) SetEdges(channel, arch string, edges [][2]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.edges[channel+"/"+arch] = edges
}

// AddConditionalEdges adds an entry of conditional edges (from, to, by
// version) sharing risks.
func (s *Server) AddConditionalEdges(channel, arch string, edges [][2]string, risks ...Risk) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := conditional{Risks: risks}
	for _, e := range edges {
		c.Edges = append(c.Edges, map[string]string{"from": e[0], "to": e[1]})
	}
	key := channel + "/" + arch
	s.conditionals[key] = append(s.conditionals[key], c)
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.Requests.Add(1)
	if code := s.Fail.Load(); code != 0 {
		http.Error(w, "update service unavailable", int(code))
		return
	}
	if r.URL.Path != "/api/upgrades_info/v1/graph" {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Accept") != "application/json" {
		w.WriteHeader(http.StatusNotAcceptable)
		_ = json.NewEncoder(w).Encode(map[string]string{"kind": "invalid_content_type", "value": "only application/json"})
		return
	}
	channel, arch := r.URL.Query().Get("channel"), r.URL.Query().Get("arch")
	if channel == "" {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"kind": "missing_params", "value": "mandatory client parameters missing: channel"})
		return
	}
	if arch == "" {
		arch = "amd64"
	}
	s.mu.Lock()
	key := channel + "/" + arch
	nodes := append([]Node{}, s.channels[key]...)
	byVersion, set := s.edges[key]
	conds := append([]conditional{}, s.conditionals[key]...)
	s.mu.Unlock()
	edges := [][2]int{}
	if set {
		index := map[string]int{}
		for i, n := range nodes {
			index[n.Version] = i
		}
		for _, e := range byVersion {
			from, ok1 := index[e[0]]
			to, ok2 := index[e[1]]
			if ok1 && ok2 {
				edges = append(edges, [2]int{from, to})
			}
		}
	} else {
		for i := 1; i < len(nodes); i++ {
			edges = append(edges, [2]int{i - 1, i})
		}
	}
	if nodes == nil {
		nodes = []Node{}
	}
	body, _ := json.Marshal(map[string]any{"version": 1, "nodes": nodes, "edges": edges, "conditionalEdges": conds})
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		s.NotMod.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}
