// Package cvotest reads an update graph as the cluster-version-operator
// does, for tests and the demo: written from its source,
// openshift/cluster-version-operator pkg/cincinnati/cincinnati.go
// (Client.GetUpdates, the graph, node, edge and conditionalEdges types,
// edge.UnmarshalJSON), pkg/clusterconditions/{clusterconditions.go,
// always/always.go,promql/promql.go} (PruneInvalid, the Always and PromQL
// conditions' Valid) and pkg/cvo/availableupdates.go
// (evaluateConditionalUpdate: the Recommended condition), at commit
// 6e719331fb5863141397f35b1f47bed42148a6dd. The module proxy does not serve
// the CVO, so this is our own code; its tests replay the CVO's
// (pkg/cincinnati/cincinnati_test.go, TestGetUpdates).
//
// Beside what GetUpdates keeps and drops, Problems says what the API server
// would refuse when the CVO writes a conditional update into the
// ClusterVersion's status (openshift/api config/v1
// types_cluster_version.go: 1 to 200 risks with unique names, url a URI,
// name and message not empty), and PrintUpgrade what `oc adm upgrade
// --include-not-recommended` prints of it (openshift/oc
// pkg/cli/admin/upgrade/upgrade.go @ 6b8e30c5b39aa742147846341a203905e04834f3).
package cvotest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/blang/semver/v4"
)

// GraphMediaType is the Accept header the CVO sends.
const GraphMediaType = "application/json"

// Release is configv1.Release as GetUpdates fills it (the metadata it
// parses is left out).
type Release struct {
	Version string
	Image   string
}

// Rule is a risk's matching rule (configv1.ClusterCondition).
type Rule struct {
	Type   string `json:"type"`
	PromQL *struct {
		PromQL string `json:"promql"`
	} `json:"promql,omitempty"`
}

// Risk is configv1.ConditionalUpdateRisk.
type Risk struct {
	URL           string `json:"url"`
	Name          string `json:"name"`
	Message       string `json:"message"`
	MatchingRules []Rule `json:"matchingRules"`
}

// ConditionalUpdate is configv1.ConditionalUpdate as GetUpdates returns it.
type ConditionalUpdate struct {
	Release Release
	Risks   []Risk
}

type node struct {
	Version semver.Version `json:"version"`
	Image   string         `json:"payload"`
}

type edge struct{ Origin, Destination int }

func (e *edge) UnmarshalJSON(data []byte) error {
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

type graph struct {
	Nodes            []node
	Edges            []edge
	ConditionalEdges []struct {
		Edges []struct {
			From string `json:"from"`
			To   string `json:"to"`
		} `json:"edges"`
		Risks []Risk `json:"risks"`
	} `json:"conditionalEdges"`
}

// prune is clusterconditions.PruneInvalid with the standard registry:
// Always (valid without a promql) and PromQL (valid with a non-empty
// query); any other type is unrecognized.
func prune(rules []Rule) []Rule {
	var valid []Rule
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

// Fetch asks upstream for the graph as the CVO does (arch, channel, id and
// version added to the URL's query, its Accept header) and reads it: an
// answer other than 200 is ResponseFailed.
func Fetch(ctx context.Context, hc *http.Client, upstream, arch, channel, id, current string) (Release, []Release, []ConditionalUpdate, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return Release{}, nil, nil, fmt.Errorf("InvalidRequest: %w", err)
	}
	q := u.Query()
	q.Add("arch", arch)
	q.Add("channel", channel)
	q.Add("id", id)
	q.Add("version", current)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Release{}, nil, nil, fmt.Errorf("InvalidRequest: %w", err)
	}
	req.Header.Set("Accept", GraphMediaType)
	resp, err := hc.Do(req)
	if err != nil {
		return Release{}, nil, nil, fmt.Errorf("RemoteFailed: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Release{}, nil, nil, fmt.Errorf("ResponseFailed: unexpected HTTP status: %s", resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Release{}, nil, nil, fmt.Errorf("ResponseFailed: %w", err)
	}
	return GetUpdates(body, current)
}

// GetUpdates is GetUpdates after the HTTP exchange: the current release,
// the recommended updates, and the conditional updates, or the error the
// CVO would report (RetrievedUpdates=False), its reason first.
func GetUpdates(body []byte, current string) (Release, []Release, []ConditionalUpdate, error) {
	version, err := semver.Parse(current)
	if err != nil {
		return Release{}, nil, nil, fmt.Errorf("InvalidRequest: %w", err)
	}
	var g graph
	if err := json.Unmarshal(body, &g); err != nil {
		return Release{}, nil, nil, fmt.Errorf("ResponseInvalid: %w", err)
	}
	currentIdx := -1
	for i, n := range g.Nodes {
		if version.EQ(n.Version) {
			currentIdx = i
			break
		}
	}
	if currentIdx < 0 {
		return Release{}, nil, nil, fmt.Errorf("VersionNotFound: currently reconciling cluster version %s not found", version)
	}
	release := func(n node) Release { return Release{Version: n.Version.String(), Image: n.Image} }
	cur := release(g.Nodes[currentIdx])
	var updates []Release
	for _, e := range g.Edges {
		if e.Origin == currentIdx {
			if e.Destination < 0 || e.Destination >= len(g.Nodes) {
				return cur, nil, nil, fmt.Errorf("ResponseInvalid: edge to node %d of %d (the CVO would panic)", e.Destination, len(g.Nodes))
			}
			updates = append(updates, release(g.Nodes[e.Destination]))
		}
	}
	var conditional []ConditionalUpdate
	for _, ce := range g.ConditionalEdges {
		for _, e := range ce.Edges {
			if version.String() != e.From {
				continue
			}
			var target *node
			for i := range g.Nodes {
				if g.Nodes[i].Version.String() == e.To {
					target = &g.Nodes[i]
					break
				}
			}
			if target == nil {
				return cur, updates, nil, fmt.Errorf("ResponseInvalid: no node for conditional update %s", e.To)
			}
			risks := make([]Risk, len(ce.Risks))
			copy(risks, ce.Risks)
			conditional = append(conditional, ConditionalUpdate{Release: release(*target), Risks: risks})
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
			conditional[i].Risks[j].MatchingRules = prune(risk.MatchingRules)
			if len(conditional[i].Risks[j].MatchingRules) == 0 {
				conditional = append(conditional[:i], conditional[i+1:]...)
				break
			}
		}
	}
	// A target listed more than once: all of them dropped ("Upstream
	// declares N conditional updates to X; dropping them all").
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

// ReasonPattern is a Kubernetes condition reason's: a risk name the CVO
// uses as its Recommended condition's reason (else ExposedToRisks).
var ReasonPattern = regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`)

// Problems are what the API server would refuse (or the CVO would have to
// rename) when the CVO writes c into the ClusterVersion's status.
func Problems(c ConditionalUpdate) []string {
	var out []string
	if len(c.Risks) == 0 || len(c.Risks) > 200 {
		out = append(out, fmt.Sprintf("%d risks, want 1 to 200", len(c.Risks)))
	}
	names := map[string]bool{}
	for _, r := range c.Risks {
		if names[r.Name] {
			out = append(out, "risk name "+r.Name+" twice")
		}
		names[r.Name] = true
		if r.Name == "" || r.Message == "" {
			out = append(out, fmt.Sprintf("risk %+v lacks a name or message", r))
		}
		if !ReasonPattern.MatchString(r.Name) {
			out = append(out, "risk name "+r.Name+" is no condition reason")
		}
		if u, err := url.Parse(r.URL); err != nil || u.Scheme == "" || u.Host == "" {
			out = append(out, "risk url "+r.URL+" is no absolute URI")
		}
	}
	if _, msg := Recommended(c); len(msg) > 32768 {
		out = append(out, fmt.Sprintf("the Recommended condition's message would be %d bytes", len(msg)))
	}
	return out
}

// Recommended is the reason and message of the Recommended=False
// condition the CVO writes for c when every risk applies (an Always risk
// does; a PromQL risk may): the one risk's name, or MultipleReasons; each
// risk's message and URL.
func Recommended(c ConditionalUpdate) (reason, message string) {
	var messages []string
	for _, r := range c.Risks {
		want := r.Name
		if !ReasonPattern.MatchString(want) {
			want = "ExposedToRisks"
		}
		switch {
		case reason == "":
			reason = want
		case reason != want:
			reason = "MultipleReasons"
		}
		messages = append(messages, r.Message+" "+r.URL)
	}
	return reason, strings.Join(messages, "\n\n")
}

// PrintUpgrade writes what `oc adm upgrade --include-not-recommended`
// prints of a cluster's updates (its Upstream, Channel, Recommended
// updates and Updates with known issues sections), every risk taken to
// apply.
func PrintUpgrade(w io.Writer, upstream, channel string, updates []Release, conditional []ConditionalUpdate) {
	fmt.Fprintf(w, "Upstream: %s\nChannel: %s\n", upstream, channel)
	if len(updates) > 0 {
		fmt.Fprintf(w, "\nRecommended updates:\n\n")
		tw := tabwriter.NewWriter(w, 14, 2, 1, ' ', 0)
		fmt.Fprintf(tw, "  VERSION\tIMAGE\n")
		sorted := append([]Release{}, updates...)
		sort.Slice(sorted, func(i, j int) bool { return newer(sorted[i].Version, sorted[j].Version) })
		for _, u := range sorted {
			fmt.Fprintf(tw, "  %s\t%s\n", u.Version, u.Image)
		}
		tw.Flush()
	} else {
		fmt.Fprintf(w, "No updates available. You may still upgrade to a specific release image with --to-image or wait for new updates to be available.\n")
	}
	if len(conditional) == 0 {
		fmt.Fprintf(w, "\nNo updates which are not recommended based on your cluster configuration are available.\n")
		return
	}
	sorted := append([]ConditionalUpdate{}, conditional...)
	sort.Slice(sorted, func(i, j int) bool { return newer(sorted[i].Release.Version, sorted[j].Release.Version) })
	fmt.Fprintf(w, "\nUpdates with known issues:\n")
	for _, c := range sorted {
		reason, message := Recommended(c)
		fmt.Fprintf(w, "\n  Version: %s\n  Image: %s\n", c.Release.Version, c.Release.Image)
		fmt.Fprintf(w, "  Reason: %s\n  Message: %s\n", reason, strings.ReplaceAll(strings.TrimSpace(message), "\n", "\n  "))
	}
}

func newer(a, b string) bool {
	va, errA := semver.Parse(a)
	vb, errB := semver.Parse(b)
	if errA != nil || errB != nil {
		return a > b
	}
	return va.GT(vb)
}
