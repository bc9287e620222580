// Package rctest is an in-process OpenShift release-controller API for tests
// and the demo: release streams whose tags are published, change phase
// (Pending, Ready, Accepted, Rejected, Failed) and vanish between passes, as
// GET /api/v1/releasestream/{stream}/tags[?phase=] serves them (newest
// first, pullspecs by tag), with ETags and 304s, request counting, and
// switchable failures (a status, or a garbage body).
package rctest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"sync/atomic"
)

// Tag is one release of a stream.
type Tag struct {
	Name        string `json:"name"`
	Phase       string `json:"phase"`
	PullSpec    string `json:"pullSpec"`
	DownloadURL string `json:"downloadURL"`
}

// Server serves release streams.
type Server struct {
	HTTP *httptest.Server

	mu      sync.Mutex
	streams map[string][]Tag // newest first
	// Fail, when set, is the status every request gets; Garbage makes the
	// body a broken document.
	Fail     atomic.Int32
	Garbage  atomic.Bool
	Requests atomic.Int64
	NotMod   atomic.Int64 // 304s served
}

// New starts a server.
func New() *Server { return NewWith(func(h http.Handler) http.Handler { return h }) }

// NewWith starts a server behind wrap (a fault injector, say).
func NewWith(wrap func(http.Handler) http.Handler) *Server {
	s := &Server{streams: map[string][]Tag{}}
	s.HTTP = httptest.NewServer(wrap(s))
	return s
}

// URL is the controller's base URL.
func (s *Server) URL() string { return s.HTTP.URL }

// Close stops the server.
func (s *Server) Close() { s.HTTP.Close() }

// AddStream makes an empty stream (unknown streams answer 404).
func (s *Server) AddStream(stream string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.streams[stream]; !ok {
		s.streams[stream] = []Tag{}
	}
}

// Publish adds a tag at the top of a stream.
func (s *Server) Publish(stream, name, phase, pullspec string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streams[stream] = append([]Tag{{Name: name, Phase: phase, PullSpec: pullspec,
		DownloadURL: "https://openshift-release-artifacts.example/" + name}}, s.streams[stream]...)
}

// SetPhase moves a tag to another phase (an accepted release later rejected).
func (s *Server) SetPhase(stream, name, phase string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.streams[stream] {
		if s.streams[stream][i].Name == name {
			s.streams[stream][i].Phase = phase
		}
	}
}

// Remove takes a tag out of a stream (pruned, as old candidates are).
func (s *Server) Remove(stream, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tags := s.streams[stream][:0]
	for _, t := range s.streams[stream] {
		if t.Name != name {
			tags = append(tags, t)
		}
	}
	s.streams[stream] = tags
}

var tagsPath = regexp.MustCompile(`^/api/v1/releasestream/([^/]+)/tags$`)

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.Requests.Add(1)
	if code := s.Fail.Load(); code != 0 {
		http.Error(w, "release-controller unavailable", int(code))
		return
	}
	m := tagsPath.FindStringSubmatch(r.URL.Path)
	if r.Method != http.MethodGet || m == nil {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	if s.Garbage.Load() {
		_, _ = w.Write([]byte(`{"name": "4-stable", "tags": [{"name": `))
		return
	}
	s.mu.Lock()
	tags, ok := s.streams[m[1]]
	out := []Tag{}
	for _, t := range tags {
		if p := r.URL.Query().Get("phase"); p == "" || p == t.Phase {
			out = append(out, t)
		}
	}
	s.mu.Unlock()
	if !ok {
		http.Error(w, "no release stream "+m[1], http.StatusNotFound)
		return
	}
	body, _ := json.Marshal(map[string]any{"name": m[1], "tags": out})
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
