package watcher

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/graphtest"
)

// upstreamBody is a graph with what discovery does not read but a cluster
// does: a node with metadata that is not a string, a second node's
// multi-arch metadata, a conditional edge whose risks carry a PromQL rule
// and a field dtkbot does not know.
const upstreamBody = `{"version":1,"nodes":[
	{"version":"4.16.15","payload":"` + pinned + `","metadata":{"url":"https://access.redhat.com/errata/RHBA-2024:1","io.openshift.upgrades.graph.release.channels":"stable-4.16"}},
	{"version":"4.16.16","payload":"` + pinned2 + `","metadata":{"release.openshift.io/architecture":"multi","x":{"nested":true}},"extra":[1,2]}
	],
	"edges":[[0,1]],
	"conditionalEdges":[{"edges":[{"from":"4.16.15","to":"4.16.16"}],"risks":[
		{"url":"https://issues.redhat.com/browse/OCPBUGS-1","name":"ProxyBreaks","message":"On clusters with a proxy, everything breaks.",
		 "matchingRules":[{"type":"PromQL","promql":{"promql":"max(cluster_proxy_enabled{type=~\"https?\"})"}},{"type":"Always"}],"future":"kept"}]}]}`

const pinned2 = "quay.io/openshift-release-dev/ocp-release@sha256:2f5118a3ad242d5913560428ce2ac9a186972b2dd6d02c3771410988d255c320"

// asJSON decodes JSON into plain values, to compare documents whatever
// their spacing and key order.
func asJSON(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

// TestReadGraphKeepsTheWholeDocument: the graph kept is the upstream's
// whole, nodes (metadata dtkbot cannot read included), edges and
// conditional edges with their risks as they came; discovery still gets
// only the nodes it can use.
func TestReadGraphKeepsTheWholeDocument(t *testing.T) {
	g, err := ReadGraph([]byte(upstreamBody))
	if err != nil {
		t.Fatal(err)
	}
	again, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	want := asJSON(t, []byte(upstreamBody)).(map[string]any)
	got := asJSON(t, again).(map[string]any)
	for _, k := range []string{"nodes", "edges", "conditionalEdges"} {
		if !reflect.DeepEqual(got[k], want[k]) {
			t.Errorf("%s changed:\n got %v\nwant %v", k, got[k], want[k])
		}
	}
	if g.Nodes[1].Version != "4.16.16" || g.Nodes[1].Payload != pinned2 {
		t.Errorf("node 1 read as %q %q", g.Nodes[1].Version, g.Nodes[1].Payload)
	}
	nodes, skipped := g.Usable()
	if len(nodes) != 1 || nodes[0].Version != "4.16.15" || len(skipped) != 1 || !strings.Contains(skipped[0], "4.16.16") {
		t.Errorf("usable %+v, skipped %q", nodes, skipped)
	}
	// Through the state (JSON) and back, it is the same document.
	var st GraphState
	raw, _ := json.Marshal(GraphState{Upstream: g})
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	if back, _ := json.Marshal(st.Upstream); !reflect.DeepEqual(asJSON(t, back), asJSON(t, again)) {
		t.Errorf("the state's copy differs:\n%s\n%s", back, again)
	}
}

// TestFetchReadsTheGraphWholeWhenNoneWasKept: a state written before dtkbot
// kept the whole graph has an ETag and nodes but no graph: the next fetch
// is not conditional, so that a 304 cannot leave dtkbot without one.
func TestFetchReadsTheGraphWholeWhenNoneWasKept(t *testing.T) {
	var conditional atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") != "" {
			conditional.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write([]byte(upstreamBody))
	}))
	defer srv.Close()
	c := &GraphClient{URL: srv.URL}
	old := GraphState{ETag: `"v1"`, BodyHash: "whatever", Nodes: []Node{{Version: "4.16.15", Payload: pinned}}}
	res, err := c.Fetch(context.Background(), "stable-4.16", "amd64", old)
	if err != nil || conditional.Load() != 0 || res.State.Upstream == nil || len(res.State.Upstream.ConditionalEdges) != 1 {
		t.Fatalf("fetch over an old state: %v, %d conditional requests, %+v", err, conditional.Load(), res.State.Upstream)
	}
	// With the graph kept, the next fetch is conditional and keeps it.
	next, err := c.Fetch(context.Background(), "stable-4.16", "amd64", res.State)
	if err != nil || conditional.Load() != 1 || next.Changed || next.State.Upstream == nil {
		t.Errorf("second fetch: %v, %d conditional, changed %v, graph kept %v", err, conditional.Load(), next.Changed, next.State.Upstream != nil)
	}
}

// TestDiscoverRecordsWhenTheGraphWasRead: each pass records when the
// service answered; a failing service leaves the last good graph and its
// time, with the failure and its time beside them; the next answer (a
// 304) clears the failure.
func TestDiscoverRecordsWhenTheGraphWasRead(t *testing.T) {
	g := graphtest.New()
	defer g.Close()
	g.Publish("stable-4.16", "amd64", "4.16.15", pinned)
	store := memGraphStore{}
	d := &Discoverer{Graph: &GraphClient{URL: g.URL()}, Channels: []string{"stable-4.16"}, Arches: []string{"amd64"}, Store: store}
	t1 := time.Date(2026, 8, 1, 10, 0, 0, 0, time.UTC)
	if got := d.Discover(context.Background(), t1, nil, false); got.Err() != nil {
		t.Fatal(got.Err())
	}
	st := store["stable-4.16/amd64"]
	if st.Upstream == nil || len(st.Upstream.Nodes) != 1 || !st.ReadAt.Equal(t1) || st.Failure != "" {
		t.Fatalf("after a good read: %+v", st)
	}
	g.Fail.Store(503)
	t2 := t1.Add(30 * time.Minute)
	if got := d.Discover(context.Background(), t2, nil, false); got.Err() == nil {
		t.Fatal("a failing service should fail the discovery softly")
	}
	st = store["stable-4.16/amd64"]
	if st.Upstream == nil || !st.ReadAt.Equal(t1) || !strings.Contains(st.Failure, "503") || !st.FailedAt.Equal(t2) {
		t.Fatalf("after a failed read: read %s, failure %q at %s, graph kept %v", st.ReadAt, st.Failure, st.FailedAt, st.Upstream != nil)
	}
	g.Fail.Store(0)
	t3 := t2.Add(30 * time.Minute)
	if got := d.Discover(context.Background(), t3, nil, false); got.Err() != nil {
		t.Fatal(got.Err())
	}
	st = store["stable-4.16/amd64"]
	if st.Upstream == nil || !st.ReadAt.Equal(t3) || st.Failure != "" || !st.FailedAt.IsZero() || g.NotMod.Load() != 1 {
		t.Errorf("after recovery (a 304): %+v, 304s %d", st, g.NotMod.Load())
	}
	// A dry run records nothing.
	before := store["stable-4.16/amd64"]
	d.Discover(context.Background(), t3.Add(time.Hour), nil, true)
	if after := store["stable-4.16/amd64"]; !after.ReadAt.Equal(before.ReadAt) {
		t.Errorf("a dry run recorded a read at %s", after.ReadAt)
	}
}
