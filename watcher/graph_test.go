package watcher

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/graphtest"
)

const pinned = "quay.io/openshift-release-dev/ocp-release@sha256:c9f58ccb8a9085df4eeb23e21ca201d4c7d39bc434786d58a55381e13215a199"

func TestParseGraph(t *testing.T) {
	body := `{"version":1,"nodes":[
		{"version":"4.16.15","payload":"` + pinned + `","metadata":{"url":"https://access.redhat.com/errata/RHBA-2024:1"}},
		{"version":"4.16.16","payload":"quay.io/openshift-release-dev/ocp-release:4.16.16-x86_64"},
		{"version":"not-a-version","payload":"` + pinned + `"}
	],"edges":[[0,1]],"conditionalEdges":[]}`
	nodes, skipped, err := ParseGraph([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].Version != "4.16.15" || len(skipped) != 2 {
		t.Errorf("nodes %+v skipped %q", nodes, skipped)
	}
	if !strings.Contains(skipped[0], "not pinned by digest") {
		t.Errorf("skipped %q", skipped)
	}
}

func TestParseGraphRejectsMalformed(t *testing.T) {
	for name, body := range map[string]string{
		"not JSON":       `<html>maintenance</html>`,
		"truncated":      `{"version":1,"nodes":[{"version":"4.16.15"`,
		"wrong version":  `{"version":2,"nodes":[],"edges":[]}`,
		"no nodes":       `{"version":1,"kind":"missing_params"}`,
		"edge out":       `{"version":1,"nodes":[{"version":"4.16.15","payload":"` + pinned + `"}],"edges":[[0,5]]}`,
		"edge shape":     `{"version":1,"nodes":[],"edges":[[0]]}`,
		"trailing data":  `{"version":1,"nodes":[],"edges":[]} {}`,
		"nodes mistyped": `{"version":1,"nodes":{"a":1}}`,
	} {
		if _, _, err := ParseGraph([]byte(body)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestFetchIsConditional(t *testing.T) {
	g := graphtest.New()
	defer g.Close()
	g.Publish("stable-4.16", "amd64", "4.16.15", pinned)
	c := &GraphClient{URL: g.URL()}
	first, err := c.Fetch(context.Background(), "stable-4.16", "amd64", GraphState{})
	if err != nil || !first.Changed || len(first.State.Nodes) != 1 || first.State.ETag == "" {
		t.Fatalf("first %+v %v", first, err)
	}
	second, err := c.Fetch(context.Background(), "stable-4.16", "amd64", first.State)
	if err != nil || second.Changed || len(second.State.Nodes) != 1 || g.NotMod.Load() != 1 {
		t.Fatalf("second %+v %v (304s %d)", second, err, g.NotMod.Load())
	}
	// A server without ETags: the body hash says nothing changed.
	noETag := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"version":1,"nodes":[{"version":"4.16.15","payload":"` + pinned + `"}],"edges":[]}`))
	}))
	defer noETag.Close()
	c = &GraphClient{URL: noETag.URL}
	a, _ := c.Fetch(context.Background(), "stable-4.16", "amd64", GraphState{})
	b, err := c.Fetch(context.Background(), "stable-4.16", "amd64", a.State)
	if err != nil || !a.Changed || b.Changed {
		t.Errorf("body hash: %v %v %v", a.Changed, b.Changed, err)
	}
}

func TestFetchErrors(t *testing.T) {
	g := graphtest.New()
	defer g.Close()
	c := &GraphClient{URL: g.URL()}
	_, err := c.Fetch(context.Background(), "", "amd64", GraphState{})
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "missing_params") {
		t.Errorf("missing channel: %v", err)
	}
	c404 := &GraphClient{URL: g.HTTP.URL + "/nope"}
	if _, err := c404.Fetch(context.Background(), "stable-4.16", "amd64", GraphState{}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("404: %v", err)
	}
	g.Fail.Store(503)
	_, err = c.Fetch(context.Background(), "stable-4.16", "amd64", GraphState{})
	var he *HTTPError
	if !errors.As(err, &he) || !he.Temporary() || !strings.Contains(err.Error(), "stable-4.16") {
		t.Errorf("503: %v", err)
	}
	g.Fail.Store(0)
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"version":1,"nodes":[` + strings.Repeat(" ", 2048) + `]}`))
	}))
	defer big.Close()
	cb := &GraphClient{URL: big.URL, MaxBytes: 1024}
	if _, err := cb.Fetch(context.Background(), "stable-4.16", "amd64", GraphState{}); err == nil || !strings.Contains(err.Error(), "over the 1024-byte limit") {
		t.Errorf("size limit: %v", err)
	}
}

type memGraphStore map[string]GraphState

func (m memGraphStore) GraphState(ch, arch string) (GraphState, error) { return m[ch+"/"+arch], nil }
func (m memGraphStore) SaveGraphState(ch, arch string, st GraphState) error {
	m[ch+"/"+arch] = st
	return nil
}

func TestDiscoverDeduplicatesAndFailsSoftly(t *testing.T) {
	g := graphtest.New()
	defer g.Close()
	other := strings.Replace(pinned, "c9f5", "aaaa", 1)
	g.Publish("stable-4.16", "amd64", "4.16.15", pinned)
	g.Publish("fast-4.16", "amd64", "4.16.15", pinned)
	g.Publish("fast-4.16", "amd64", "4.16.16", other)
	store := memGraphStore{}
	d := &Discoverer{Graph: &GraphClient{URL: g.URL()}, Channels: []string{"stable-4.16", "fast-4.16"}, Arches: []string{"amd64"},
		Releases: []string{pinned, "mirror.example.com/ocp/release:4.17.0-ec.1"}, Store: store}
	got := d.Discover(context.Background(), time.Now(), nil, false)
	if got.Err() != nil || len(got.Releases) != 3 || got.GraphRequests != 2 {
		t.Fatalf("%+v", got)
	}
	if got.Releases[0].Version != "4.16.15" || strings.Join(got.Releases[0].Channels, ",") != "fast-4.16,stable-4.16" {
		t.Errorf("first release %+v", got.Releases[0])
	}
	// The service fails: the pass still knows the last nodes, and says so.
	g.Fail.Store(500)
	failed := d.Discover(context.Background(), time.Now(), nil, false)
	if failed.Err() == nil || len(failed.Releases) != 3 {
		t.Errorf("a failing graph should fail softly: %d releases, err %v", len(failed.Releases), failed.Err())
	}
	g.Fail.Store(0)
	if again := d.Discover(context.Background(), time.Now(), []string{"fast-4.16"}, false); again.Err() != nil || again.GraphRequests != 1 {
		t.Errorf("recovery / channel filter: %+v", again)
	}
}
