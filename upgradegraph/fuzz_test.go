package upgradegraph

import (
	"encoding/json"
	"testing"

	"github.com/blang/semver/v4"

	"github.com/dtkbot/dtkbot/internal/cvotest"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/watcher"
)

// FuzzServedGraph: for any upstream graph dtkbot accepts, the graph served
// (every release unread, so every update carries a risk of dtkbot's) is a
// document the CVO reads wherever it reads the upstream's, and offers every
// update the upstream offers: dtkbot's risks never make the CVO drop one.
func FuzzServedGraph(f *testing.F) {
	p := "quay.io/openshift-release-dev/ocp-release@sha256:" + "c9f58ccb8a9085df4eeb23e21ca201d4c7d39bc434786d58a55381e13215a199"
	f.Add([]byte(`{"version":1,"nodes":[{"version":"4.16.1","payload":"` + p + `"},{"version":"4.16.2","payload":"` + p + `"},{"version":"4.16.3","payload":"x"}],` +
		`"edges":[[0,1],[0,2],[1,2]],"conditionalEdges":[{"edges":[{"from":"4.16.1","to":"4.16.2"},{"from":"4.16.1","to":"4.16.3"}],` +
		`"risks":[{"url":"https://example.com/1","name":"A","message":"m","matchingRules":[{"type":"PromQL","promql":{"promql":"1"}}]}]}]}`))
	f.Add([]byte(`{"nodes":[{"version":"4.1.0","payload":"a"},{"version":"4.1.1","payload":"b"}],"edges":[[0,1],[0,1]],` +
		`"conditionalEdges":[{"edges":[{"from":"4.1.0","to":"4.1.1"}],"risks":[{"name":"ReleaseNotInspected_4_1_1_amd64","url":"https://x","message":"m","matchingRules":[{"type":"Always"}]}]}]}`))
	f.Add([]byte(`{"version":1,"nodes":[],"edges":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		up, err := watcher.ReadGraph(body)
		if err != nil {
			return
		}
		s, err := Compute(Input{Options: Options{Channels: []string{"stable-4.16"}, Arches: []string{"amd64"}, Consumers: []string{"kmod"}},
			Channel: "stable-4.16", Arch: "amd64", Upstream: up, Snapshot: &state.Snapshot{}, PageURL: "https://dtkbot.example.com/"})
		if err != nil {
			t.Fatal(err)
		}
		served, err := s.Graph.AppendJSON(nil)
		if err != nil || !json.Valid(served) {
			t.Fatalf("the served graph is no JSON (%v): %s", err, served)
		}
		for _, e := range s.Graph.Edges {
			if e[0] < 0 || e[1] < 0 || e[0] >= len(s.Graph.Nodes) || e[1] >= len(s.Graph.Nodes) {
				t.Fatalf("edge %v out of %d nodes", e, len(s.Graph.Nodes))
			}
		}
		// What the CVO offers is compared where an update can be named:
		// nodes of distinct versions and payloads (it tells targets apart
		// by payload, conditional ones by version).
		versions, payloads := map[string]bool{}, map[string]bool{}
		for _, n := range up.Nodes {
			if versions[canonical(n.Version)] || payloads[n.Payload] {
				return
			}
			versions[canonical(n.Version)], payloads[n.Payload] = true, true
		}
		upstream, _ := json.Marshal(up)
		for _, n := range up.Nodes {
			if _, err := semver.Parse(n.Version); err != nil {
				continue
			}
			_, upUpdates, upConditional, upErr := cvotest.GetUpdates(upstream, n.Version)
			_, updates, conditional, err := cvotest.GetUpdates(served, n.Version)
			if upErr != nil {
				continue // the CVO refuses the upstream's too
			}
			if err != nil {
				t.Fatalf("the CVO reads the upstream's graph at %s but not dtkbot's: %v\n%s", n.Version, err, served)
			}
			offered := map[string]bool{}
			for _, u := range updates {
				offered[u.Version] = true
			}
			for _, c := range conditional {
				offered[c.Release.Version] = true
				for _, r := range c.Risks {
					if isOurs(s, r.Name) && (!cvotest.ReasonPattern.MatchString(r.Name) || r.Message == "" || len(r.MatchingRules) != 1) {
						t.Errorf("dtkbot's risk %+v", r)
					}
				}
			}
			for _, u := range upUpdates {
				if !offered[u.Version] {
					t.Fatalf("at %s the upstream offers %s, dtkbot's graph does not\n%s", n.Version, u.Version, served)
				}
			}
			for _, c := range upConditional {
				if !offered[c.Release.Version] {
					t.Fatalf("at %s the upstream offers %s (conditional), dtkbot's graph does not\n%s", n.Version, c.Release.Version, served)
				}
			}
		}
	})
}

func isOurs(s *Served, name string) bool {
	for _, r := range s.Releases {
		for _, risk := range r.Risks {
			if risk.Name == name {
				return true
			}
		}
	}
	return false
}
