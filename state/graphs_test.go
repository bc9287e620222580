package state

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/watcher"
)

// TestUpstreamGraphsAreKeptApart: a graph's state and its upstream graph
// round-trip; GraphView reads the upstream graph only when the caller has
// not got it (by its body's hash); GraphStatuses says which are kept
// without reading them.
func TestUpstreamGraphsAreKeptApart(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "s.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g, err := watcher.ReadGraph([]byte(`{"version":1,"nodes":[{"version":"4.16.15","payload":"quay.io/x/y@sha256:` +
		"c9f58ccb8a9085df4eeb23e21ca201d4c7d39bc434786d58a55381e13215a199" + `"}],"edges":[],"conditionalEdges":[{"edges":[{"from":"4.16.14","to":"4.16.15"}],"risks":[{"name":"A"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	read := time.Date(2026, 8, 1, 10, 0, 0, 0, time.UTC)
	if err := s.SaveGraphState("stable-4.16", "amd64", watcher.GraphState{ETag: `"1"`, BodyHash: "h1", Upstream: g, ReadAt: read}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveGraphState("stable-4.17", "amd64", watcher.GraphState{Failure: "503", FailedAt: read}); err != nil {
		t.Fatal(err)
	}
	st, err := s.GraphState("stable-4.16", "amd64")
	if err != nil || st.ETag != `"1"` || st.Upstream == nil || len(st.Upstream.ConditionalEdges) != 1 || !st.ReadAt.Equal(read) {
		t.Fatalf("%+v %v", st, err)
	}
	if _, st, err := s.GraphView("stable-4.16", "amd64", func(hash string) *watcher.Graph {
		if hash == "h1" {
			return g
		}
		return nil
	}); err != nil || st.Upstream != g {
		t.Errorf("a graph the caller has was read again: %v", err)
	}
	if _, st, _ := s.GraphView("stable-4.16", "amd64", func(string) *watcher.Graph { return nil }); st.Upstream == nil || st.Upstream == g {
		t.Errorf("a graph the caller has not got was not read")
	}
	all, err := s.GraphStatuses()
	if err != nil || !all["stable-4.16/amd64"].Cached || all["stable-4.17/amd64"].Cached || all["stable-4.17/amd64"].Failure != "503" {
		t.Errorf("%+v %v", all, err)
	}
	// A state saved with no graph forgets the one kept.
	if err := s.SaveGraphState("stable-4.16", "amd64", watcher.GraphState{}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.GraphState("stable-4.16", "amd64"); st.Upstream != nil {
		t.Errorf("the graph is still kept")
	}
}
