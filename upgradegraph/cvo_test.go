package upgradegraph

// A decoder of update graphs that does what the cluster-version-operator
// does with one, written from its source: openshift/cluster-version-operator
// pkg/cincinnati/cincinnati.go (Client.GetUpdates, the graph, node, edge and
// conditionalEdges types, edge.UnmarshalJSON) and
// pkg/clusterconditions/{clusterconditions.go,always/always.go,promql/promql.go}
// (PruneInvalid, the Always and PromQL conditions' Valid), at commit
// 6e719331fb5863141397f35b1f47bed42148a6dd; its tests
// (pkg/cincinnati/cincinnati_test.go, TestGetUpdates) are replayed below
// against this decoder. The module proxy does not serve the CVO, so this is
// our own code. Beside GetUpdates it checks what the API server enforces
// when the CVO writes the result into the ClusterVersion's status
// (openshift/api config/v1 types_cluster_version.go, ConditionalUpdate and
// ConditionalUpdateRisk): 1 to 200 risks, names unique (listMapKey=name),
// url a URI, name and message not empty; and what the CVO does with a
// risk's name (pkg/cvo/availableupdates.go: the Recommended condition's
// reason when it matches a condition reason's pattern).

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/blang/semver/v4"
)

// cvoRelease is configv1.Release as GetUpdates fills it (no metadata: the
// served nodes are the upstream's, untouched).
type cvoRelease struct {
	Version string
	Image   string
}

type cvoRule struct {
	Type   string `json:"type"`
	PromQL *struct {
		PromQL string `json:"promql"`
	} `json:"promql,omitempty"`
}

type cvoRisk struct {
	URL           string    `json:"url"`
	Name          string    `json:"name"`
	Message       string    `json:"message"`
	MatchingRules []cvoRule `json:"matchingRules"`
}

type cvoConditional struct {
	Release cvoRelease
	Risks   []cvoRisk
}

type cvoNode struct {
	Version semver.Version `json:"version"`
	Image   string         `json:"payload"`
}

type cvoEdge struct{ Origin, Destination int }

func (e *cvoEdge) UnmarshalJSON(data []byte) error {
	var fields []int
	if err := json.Unmarshal(data, &fields); err != nil {
		return err
	}
	if len(fields) != 2 {
		return fmt.Errorf("expected 2 fields, found %d", len(fields))
	}
	e.Origin, e.Destination = fields[0], fields[1]
	return nil
}

type cvoGraph struct {
	Nodes            []cvoNode
	Edges            []cvoEdge
	ConditionalEdges []struct {
		Edges []struct {
			From string `json:"from"`
			To   string `json:"to"`
		} `json:"edges"`
		Risks []cvoRisk `json:"risks"`
	} `json:"conditionalEdges"`
}

// cvoPrune is clusterconditions.PruneInvalid with the standard registry:
// Always (valid without a promql) and PromQL (valid with a non-empty
// query); any other type is unrecognized.
func cvoPrune(rules []cvoRule) []cvoRule {
	var valid []cvoRule
	for _, r := range rules {
		switch {
		case r.Type == "Always" && r.PromQL == nil:
		case r.Type == "PromQL" && r.PromQL != nil && r.PromQL.PromQL != "":
		default:
			continue
		}
		valid = append(valid, r)
	}
	return valid
}

// cvoGetUpdates is GetUpdates after the HTTP exchange: the current release,
// the recommended updates, and the conditional updates, or the error
// reason the CVO would report (RetrievedUpdates=False).
func cvoGetUpdates(body []byte, current string) (cvoRelease, []cvoRelease, []cvoConditional, error) {
	version := semver.MustParse(current)
	var g cvoGraph
	if err := json.Unmarshal(body, &g); err != nil {
		return cvoRelease{}, nil, nil, fmt.Errorf("ResponseInvalid: %w", err)
	}
	currentIdx := -1
	for i, n := range g.Nodes {
		if version.EQ(n.Version) {
			currentIdx = i
			break
		}
	}
	if currentIdx < 0 {
		return cvoRelease{}, nil, nil, fmt.Errorf("VersionNotFound: currently reconciling cluster version %s not found", version)
	}
	release := func(n cvoNode) cvoRelease { return cvoRelease{Version: n.Version.String(), Image: n.Image} }
	cur := release(g.Nodes[currentIdx])
	var updates []cvoRelease
	for _, e := range g.Edges {
		if e.Origin == currentIdx {
			if e.Destination < 0 || e.Destination >= len(g.Nodes) {
				return cur, nil, nil, fmt.Errorf("ResponseInvalid: edge to node %d of %d (the CVO would panic)", e.Destination, len(g.Nodes))
			}
			updates = append(updates, release(g.Nodes[e.Destination]))
		}
	}
	var conditional []cvoConditional
	for _, ce := range g.ConditionalEdges {
		for _, e := range ce.Edges {
			if version.String() != e.From {
				continue
			}
			var target *cvoNode
			for i := range g.Nodes {
				if g.Nodes[i].Version.String() == e.To {
					target = &g.Nodes[i]
					break
				}
			}
			if target == nil {
				return cur, updates, nil, fmt.Errorf("ResponseInvalid: no node for conditional update %s", e.To)
			}
			risks := make([]cvoRisk, len(ce.Risks))
			copy(risks, ce.Risks)
			conditional = append(conditional, cvoConditional{Release: release(*target), Risks: risks})
		}
	}
	// Listed both ways: the conditional update wins.
	for i := len(updates) - 1; i >= 0; i-- {
		for _, c := range conditional {
			if c.Release.Image == updates[i].Image {
				updates = append(updates[:i], updates[i+1:]...)
				break
			}
		}
	}
	// A risk left with no rule drops its whole target.
	for i := len(conditional) - 1; i >= 0; i-- {
		for j, risk := range conditional[i].Risks {
			conditional[i].Risks[j].MatchingRules = cvoPrune(risk.MatchingRules)
			if len(conditional[i].Risks[j].MatchingRules) == 0 {
				conditional = append(conditional[:i], conditional[i+1:]...)
				break
			}
		}
	}
	// A target listed more than once: all of them dropped.
	targets := map[string]int{}
	for _, c := range conditional {
		targets[c.Release.Image]++
	}
	for i := len(conditional) - 1; i >= 0; i-- {
		if targets[conditional[i].Release.Image] > 1 {
			conditional = append(conditional[:i], conditional[i+1:]...)
		}
	}
	return cur, updates, conditional, nil
}

// reasonPattern is a Kubernetes condition reason's (pkg/cvo/availableupdates.go).
var reasonPattern = regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`)

// cvoStatusProblems are what the API server would refuse (or the CVO
// would have to rename) when the CVO writes a conditional update.
func cvoStatusProblems(c cvoConditional) []string {
	var out []string
	if len(c.Risks) == 0 || len(c.Risks) > 200 {
		out = append(out, fmt.Sprintf("%d risks, want 1 to 200", len(c.Risks)))
	}
	names := map[string]bool{}
	var messages []string
	for _, r := range c.Risks {
		if names[r.Name] {
			out = append(out, "risk name "+r.Name+" twice")
		}
		names[r.Name] = true
		if r.Name == "" || r.Message == "" {
			out = append(out, fmt.Sprintf("risk %+v lacks a name or message", r))
		}
		if !reasonPattern.MatchString(r.Name) {
			out = append(out, "risk name "+r.Name+" is no condition reason")
		}
		if u, err := url.Parse(r.URL); err != nil || u.Scheme == "" || u.Host == "" {
			out = append(out, "risk url "+r.URL+" is no absolute URI")
		}
		messages = append(messages, r.Message+" "+r.URL)
	}
	if n := len(strings.Join(messages, "\n\n")); n > 32768 {
		out = append(out, fmt.Sprintf("the Recommended condition's message would be %d bytes", n))
	}
	return out
}

// TestCVODecoderAgreesWithTheCVOsTests replays cases of the CVO's own
// TestGetUpdates (pkg/cincinnati/cincinnati_test.go) against the decoder:
// what it keeps, and what it drops.
func TestCVODecoderAgreesWithTheCVOsTests(t *testing.T) {
	node := func(v string) string {
		return `{"version":"` + v + `","payload":"quay.io/openshift-release-dev/ocp-release:` + v + `","metadata":{"url":"https://example.com/errata/` + v + `"}}`
	}
	nodes := `"nodes":[` + node("4.1.0") + `,` + node("4.1.1") + `,` + node("4.1.2") + `,` + node("4.1.3") + `]`
	bugA := `{"url":"https://example.com/bug/123","name":"BugA","message":"On clusters with a Proxy configured, everything breaks.","matchingRules":[{"type":"PromQL","promql":{"promql":"max(cluster_proxy_enabled{type=~\"https?\"})"}}]}`
	bugB := `{"url":"https://example.com/bug/456","name":"BugB","message":"All 4.1.0 clusters are incompatible with 4.1.3.","matchingRules":[{"type":"Always"}]}`
	unknown := `{"url":"https://example.com/bug/789","name":"BugC","message":"no recognized rules","matchingRules":[{"type":"does-not-exist"}]}`
	for _, tc := range []struct {
		name, body  string
		updates     []string
		conditional []string
		err         string
	}{
		{name: "two updates available", body: `{` + nodes + `,"edges":[[0,1],[0,2],[1,2],[2,3]]}`, updates: []string{"4.1.1", "4.1.2"}},
		{name: "conditional updates available", body: `{` + nodes + `,"edges":[[0,1],[0,2],[1,2],[2,3]],"conditionalEdges":[{"edges":[{"from":"4.1.0","to":"4.1.3"}],"risks":[` + bugA + `,` + bugB + `]}]}`,
			updates: []string{"4.1.1", "4.1.2"}, conditional: []string{"4.1.3 BugA,BugB"}},
		{name: "conditional updates available, but have no recognized rules", body: `{` + nodes + `,"conditionalEdges":[{"edges":[{"from":"4.1.0","to":"4.1.1"}],"risks":[` + bugA + `,` + unknown + `]}]}`},
		{name: "condition with risks after invalid risk", body: `{` + nodes + `,"conditionalEdges":[{"edges":[{"from":"4.1.0","to":"4.1.1"}],"risks":[` + unknown + `,` + bugB + `]}]}`},
		{name: "conditional updates available, and overlap with unconditional edge", body: `{` + nodes + `,"edges":[[0,1]],"conditionalEdges":[{"edges":[{"from":"4.1.0","to":"4.1.1"}],"risks":[` + bugA + `]}]}`,
			conditional: []string{"4.1.1 BugA"}},
		{name: "multiple conditional updates with a single target", body: `{` + nodes + `,"conditionalEdges":[{"edges":[{"from":"4.1.0","to":"4.1.1"}],"risks":[` + bugA + `]},{"edges":[{"from":"4.1.0","to":"4.1.1"}],"risks":[` + bugB + `]}]}`},
		{name: "unknown version", body: `{"nodes":[` + node("4.1.1") + `]}`, err: "VersionNotFound"},
		{name: "a version that is no semver", body: `{"nodes":[` + node("4.1.0") + `,{"version":"v4.1.1","payload":"x"}]}`, err: "ResponseInvalid"},
		{name: "an edge of three", body: `{` + nodes + `,"edges":[[0,1,2]]}`, err: "ResponseInvalid"},
		{name: "a conditional edge to no node", body: `{` + nodes + `,"conditionalEdges":[{"edges":[{"from":"4.1.0","to":"4.1.9"}],"risks":[` + bugB + `]}]}`, err: "ResponseInvalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, updates, conditional, err := cvoGetUpdates([]byte(tc.body), "4.1.0")
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
					t.Fatalf("error %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := versionsOf(updates); strings.Join(got, " ") != strings.Join(tc.updates, " ") {
				t.Errorf("updates %v, want %v", got, tc.updates)
			}
			if got := describe(conditional); strings.Join(got, " | ") != strings.Join(tc.conditional, " | ") {
				t.Errorf("conditional %v, want %v", got, tc.conditional)
			}
		})
	}
}

func versionsOf(rs []cvoRelease) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Version)
	}
	return out
}

// describe writes conditional updates as "version risk,risk".
func describe(cs []cvoConditional) []string {
	var out []string
	for _, c := range cs {
		var names []string
		for _, r := range c.Risks {
			names = append(names, r.Name)
		}
		out = append(out, c.Release.Version+" "+strings.Join(names, ","))
	}
	return out
}

// cvoView decodes a served graph for a cluster at current as the CVO does,
// failing the test where the CVO would fail, drop an update or write a
// status the API server refuses.
func cvoView(t *testing.T, body []byte, current string) ([]cvoRelease, []cvoConditional) {
	t.Helper()
	_, updates, conditional, err := cvoGetUpdates(body, current)
	if err != nil {
		t.Fatalf("the CVO at %s: %v", current, err)
	}
	for _, c := range conditional {
		if p := cvoStatusProblems(c); len(p) > 0 {
			t.Errorf("the CVO at %s, update to %s: %v", current, c.Release.Version, p)
		}
	}
	return updates, conditional
}

var errNotOffered = errors.New("not offered")

// offered finds the update to target a cluster at current is offered:
// recommended (no risks) or conditional (its risks).
func offered(t *testing.T, body []byte, current, target string) (recommended bool, risks []cvoRisk, err error) {
	t.Helper()
	updates, conditional := cvoView(t, body, current)
	for _, u := range updates {
		if u.Version == target {
			return true, nil, nil
		}
	}
	for _, c := range conditional {
		if c.Release.Version == target {
			return false, c.Risks, nil
		}
	}
	return false, nil, errNotOffered
}
