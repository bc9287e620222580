// Package graphtest is an in-process OpenShift update service (Cincinnati
// graph API) for tests and the demo: channels of nodes published in steps,
// ETags and 304s, the service's 400 for a missing channel, request counting,
// and switchable failures.
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

// Server serves graphs at /api/upgrades_info/v1/graph.
type Server struct {
	HTTP     *httptest.Server
	mu       sync.Mutex
	channels map[string][]Node // key channel/arch
	// Fail, when set, is the status every request gets (500, 503, ...).
	Fail     atomic.Int32
	Requests atomic.Int64
	NotMod   atomic.Int64 // 304s served
}

// New starts a server.
func New() *Server { return NewWith(func(h http.Handler) http.Handler { return h }) }

// NewWith starts a server behind wrap (a fault injector, say).
func NewWith(wrap func(http.Handler) http.Handler) *Server {
	s := &Server{channels: map[string][]Node{}}
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
	nodes := append([]Node{}, s.channels[channel+"/"+arch]...)
	s.mu.Unlock()
	edges := [][2]int{}
	for i := 1; i < len(nodes); i++ {
		edges = append(edges, [2]int{i - 1, i})
	}
	if nodes == nil {
		nodes = []Node{}
	}
	body, _ := json.Marshal(map[string]any{"version": 1, "nodes": nodes, "edges": edges, "conditionalEdges": []any{}})
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
