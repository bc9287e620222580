package upgradegraph

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/dtkbot/dtkbot/version"
	"github.com/dtkbot/dtkbot/watcher"
)

// Target is one update from a version, as a cluster running that version
// is offered it by the served graph, and whether its drivers are ready.
type Target struct {
	Version string `json:"version"`
	Payload string `json:"payload"`
	// Drivers is the readiness of the target's drivers (Ready, Waiting,
	// Unknown, Blocked), and WaitsFor what they wait for: the messages of
	// dtkbot's risks.
	Drivers  string   `json:"drivers"`
	WaitsFor []string `json:"waits_for"`
	// Recommended: the update is offered with no risk at all (an edge);
	// otherwise Risks are every risk a cluster is shown, dtkbot's and the
	// upstream's (which may or may not apply to a cluster: PromQL rules
	// are evaluated in it).
	Recommended bool         `json:"recommended"`
	Risks       []TargetRisk `json:"risks"`
}

// TargetRisk is one risk of a Target.
type TargetRisk struct {
	Name    string `json:"name"`
	Message string `json:"message"`
	URL     string `json:"url"`
	// Source is "dtkbot" or "upstream".
	Source string `json:"source"`
	// Rules are the types of its matching rules (Always, PromQL).
	Rules []string `json:"rules"`
}

// ErrUnknownVersion is a version the graph has no node of.
type ErrUnknownVersion struct{ Version, Channel, Arch string }

func (e *ErrUnknownVersion) Error() string {
	return fmt.Sprintf("%s is not in the update graph of channel %s for arch %s", e.Version, e.Channel, e.Arch)
}

// Targets lists the updates the served graph offers a cluster at from,
// newest first, each with its readiness and risks: what a cluster reads,
// as it reads it (an update listed as an edge and as a conditional edge is
// conditional).
func (s *Served) Targets(from string) ([]Target, error) {
	g := s.Graph
	fromIdx := slices.IndexFunc(g.Nodes, func(n watcher.GraphNode) bool { return canonical(n.Version) == canonical(from) })
	if fromIdx < 0 {
		return nil, &ErrUnknownVersion{Version: from, Channel: s.Channel, Arch: s.Arch}
	}
	byIdx := map[int]*Target{}
	var order []int
	target := func(i int) *Target {
		if t, ok := byIdx[i]; ok {
			return t
		}
		r := s.Releases[i]
		t := &Target{Version: g.Nodes[i].Version, Payload: g.Nodes[i].Payload, Drivers: r.State, WaitsFor: []string{}, Risks: []TargetRisk{}}
		for _, risk := range r.Risks {
			t.WaitsFor = append(t.WaitsFor, risk.Message)
		}
		byIdx[i] = t
		order = append(order, i)
		return t
	}
	for _, e := range g.Edges {
		if e[0] == fromIdx {
			target(e[1]).Recommended = true
		}
	}
	at := map[string]int{}
	for i, n := range g.Nodes {
		if _, ok := at[canonical(n.Version)]; !ok {
			at[canonical(n.Version)] = i
		}
	}
	for _, c := range g.ConditionalEdges {
		for _, e := range c.Edges {
			i, ok := at[e.To] // as the CVO compares them
			if e.From != canonical(from) || !ok {
				continue
			}
			t := target(i)
			t.Recommended = false
			ours := map[string]bool{}
			for _, r := range s.Releases[i].Risks {
				ours[r.Name] = true
			}
			for _, raw := range c.Risks {
				t.Risks = append(t.Risks, readRisk(raw, ours))
			}
		}
	}
	out := make([]Target, 0, len(order))
	for _, i := range order {
		out = append(out, *byIdx[i])
	}
	slices.SortStableFunc(out, func(a, b Target) int { return version.Compare(b.Version, a.Version) })
	return out, nil
}

// readRisk reads a risk as a cluster is shown it.
func readRisk(raw json.RawMessage, ours map[string]bool) TargetRisk {
	var r struct {
		URL           string `json:"url"`
		Name          string `json:"name"`
		Message       string `json:"message"`
		MatchingRules []struct {
			Type string `json:"type"`
		} `json:"matchingRules"`
	}
	_ = json.Unmarshal(raw, &r) // the upstream's as it came: what cannot be read stays empty
	out := TargetRisk{Name: r.Name, Message: r.Message, URL: r.URL, Source: "upstream", Rules: []string{}}
	if ours[r.Name] {
		out.Source = "dtkbot"
	}
	for _, m := range r.MatchingRules {
		out.Rules = append(out.Rules, m.Type)
	}
	return out
}
