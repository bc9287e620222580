package upgradegraph

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/watcher"
)

// mixedWorld is a graph with the upstream's own conditional edges: 4.16.1
// waits for its DTK, 4.16.3 for a consumer image, the others are ready.
// Upstream, 4.16.0 -> 4.16.2 and 4.16.3 share a PromQL risk (and 4.16.0 ->
// 4.16.2 is an edge too), 4.16.1 -> 4.16.2 has an Always risk, and 4.15.30
// -> 4.16.1 a risk whose name is the one dtkbot gives 4.16.1's.
func mixedWorld(t *testing.T) *world {
	w := newWorld(t)
	versions := []string{"4.15.30", "4.16.0", "4.16.1", "4.16.2", "4.16.3"}
	kernels := map[string]string{"4.15.30": "5.14.0-284.80.1.el9_2", "4.16.0": kOld, "4.16.1": kNew, "4.16.2": kOld, "4.16.3": kNext}
	for _, v := range versions {
		w.node(v)
		w.release(v, "amd64", ships("rhel-9", kernels[v], "amd64"))
	}
	for i, a := range versions {
		for _, b := range versions[i+1:] {
			w.edge(a, b)
		}
	}
	w.ready("rhel-9", "amd64", "5.14.0-284.80.1.el9_2", "4.15.30")
	w.ready("rhel-9", "amd64", kOld, "4.16.0", "4.16.2")
	w.image("", "rhel-9", "amd64", kNew, ledger.StateBuildRequested, []string{"4.16.1"})
	w.image("", "rhel-9", "amd64", kNext, ledger.StatePromoted, []string{"4.16.3"})
	w.image(kmod, "rhel-9", "amd64", kNext, ledger.StateBuildRequested, []string{"4.16.3"})
	w.conditional([][2]string{{"4.16.0", "4.16.2"}, {"4.16.0", "4.16.3"}}, map[string]any{"url": "https://issues.redhat.com/browse/OCPBUGS-1",
		"name": "ProxyBreaks", "message": "On clusters with a proxy, everything breaks.",
		"matchingRules": []any{map[string]any{"type": "PromQL", "promql": map[string]string{"promql": `max(cluster_proxy_enabled{type=~"https?"})`}}}})
	w.conditional([][2]string{{"4.16.1", "4.16.2"}}, map[string]any{"url": "https://issues.redhat.com/browse/OCPBUGS-2",
		"name": "PassThrough", "message": "Clusters at 4.16.1 must pass through 4.16.2.", "matchingRules": []any{map[string]string{"type": "Always"}}})
	w.conditional([][2]string{{"4.15.30", "4.16.1"}}, map[string]any{"url": "https://example.com/x",
		"name": name("DriverToolkitNotReady", kNew+".x86_64"), "message": "A name that collides.", "matchingRules": []any{map[string]string{"type": "Always"}}})
	return w
}

// TestUpstreamConditionalEdgesAreKept: every node untouched; the
// upstream's conditional edges kept with their risks; dtkbot's risks join
// the upstream's entry of an update (never a second entry, which the CVO
// drops), split from an entry's other targets; an update to a target with
// risks leaves the edges. Then, for a cluster at every version, what the
// CVO reads: every update the upstream offers is offered, recommended only
// when neither the upstream nor dtkbot has a risk for it, with every risk
// of both.
func TestUpstreamConditionalEdgesAreKept(t *testing.T) {
	w := mixedWorld(t)
	up := w.upstream()
	s := w.compute("amd64")
	b := body(t, s)
	var served, upstream map[string]any
	_ = json.Unmarshal(b, &served)
	raw, _ := json.Marshal(up)
	_ = json.Unmarshal(raw, &upstream)
	if !reflect.DeepEqual(served["nodes"], upstream["nodes"]) {
		t.Errorf("nodes changed:\n%v\n%v", served["nodes"], upstream["nodes"])
	}
	if served["version"] != float64(1) {
		t.Errorf("version %v", served["version"])
	}
	for _, e := range s.Graph.Edges {
		if to := s.Graph.Nodes[e[1]].Version; to == "4.16.1" || to == "4.16.3" {
			t.Errorf("an edge to %s, which waits for its drivers", to)
		}
	}
	// The entry of 4.16.1 -> 4.16.2 is the upstream's, byte for byte.
	if !slices.ContainsFunc(s.Graph.ConditionalEdges, func(c watcher.ConditionalEdges) bool {
		return reflect.DeepEqual(c, up.ConditionalEdges[1])
	}) {
		t.Errorf("the upstream's entry %s is not served as it came", mustJSON(up.ConditionalEdges[1]))
	}

	risksOf := map[string][]string{} // "from to" -> the upstream's risk names
	for _, c := range up.ConditionalEdges {
		for _, e := range c.Edges {
			for _, r := range c.Risks {
				var x Risk
				_ = json.Unmarshal(r, &x)
				risksOf[e.From+" "+e.To] = append(risksOf[e.From+" "+e.To], x.Name)
			}
		}
	}
	for _, e := range up.Edges {
		from, to := up.Nodes[e[0]].Version, up.Nodes[e[1]].Version
		recommended, risks, err := offered(t, b, from, to)
		if err != nil {
			t.Errorf("%s -> %s: %v", from, to, err)
			continue
		}
		var want []string
		want = append(want, risksOf[from+" "+to]...)
		for _, r := range s.Releases[e[1]].Risks {
			n := r.Name
			if slices.Contains(risksOf[from+" "+to], n) {
				n += "_dtkbot"
			}
			want = append(want, n)
		}
		var got []string
		for _, r := range risks {
			got = append(got, r.Name)
		}
		if recommended != (len(want) == 0) || !slices.Equal(got, want) {
			t.Errorf("%s -> %s: recommended %v, risks %v; want %v", from, to, recommended, got, want)
		}
	}
	// The PromQL risk still matches by PromQL where it joined dtkbot's.
	_, risks, _ := offered(t, b, "4.16.0", "4.16.3")
	if len(risks) != 2 || risks[0].MatchingRules[0].Type != "PromQL" || !strings.Contains(risks[0].MatchingRules[0].PromQL.PromQL, "cluster_proxy_enabled") ||
		risks[1].MatchingRules[0].Type != "Always" {
		t.Errorf("4.16.0 -> 4.16.3: %+v", risks)
	}
}

// TestAPromotionClearsTheRisk: the same graph computed again once the
// missing images are promoted offers the updates as the upstream does.
func TestAPromotionClearsTheRisk(t *testing.T) {
	w := mixedWorld(t)
	if s := w.compute("amd64"); s.Releases[2].State != Waiting {
		t.Fatalf("4.16.1 is %s", s.Releases[2].State)
	}
	for i := range w.snap.Kernels {
		w.snap.Kernels[i].State = ledger.StatePromoted
	}
	w.image(kmod, "rhel-9", "amd64", kNew, ledger.StatePromoted, []string{"4.16.1"})
	for i := range w.snap.Consumers {
		w.snap.Consumers[i].State = ledger.StatePromoted
	}
	s := w.compute("amd64")
	up := w.upstream()
	if !reflect.DeepEqual(s.Graph.Edges, up.Edges) || !reflect.DeepEqual(s.Graph.ConditionalEdges, up.ConditionalEdges) {
		t.Errorf("with every image promoted the graph is not the upstream's:\n%s\n%s", body(t, s), mustJSON(up))
	}
	if recommended, _, err := offered(t, body(t, s), "4.16.0", "4.16.1"); err != nil || !recommended {
		t.Errorf("4.16.0 -> 4.16.1: recommended %v, %v", recommended, err)
	}
}

// TestTargetsFromAVersion: what `dtkbot upgrade-check` and
// /api/v1/upgrades list: the updates from a version, newest first, each
// ready or not, what it waits for, and every risk a cluster is shown.
func TestTargetsFromAVersion(t *testing.T) {
	s := mixedWorld(t).compute("amd64")
	targets, err := s.Targets("4.16.0")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range targets {
		var risks []string
		for _, r := range tg.Risks {
			risks = append(risks, r.Source+":"+r.Name)
		}
		got = append(got, tg.Version+" "+tg.Drivers+" "+strings.Join(risks, ","))
	}
	want := []string{
		"4.16.3 waiting upstream:ProxyBreaks,dtkbot:" + name("KernelModuleNotReady", kNext+".x86_64", kmod),
		"4.16.2 ready upstream:ProxyBreaks",
		"4.16.1 waiting dtkbot:" + name("DriverToolkitNotReady", kNew+".x86_64"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("targets\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if targets[0].Recommended || len(targets[0].WaitsFor) != 1 || !strings.Contains(targets[0].WaitsFor[0], "No verified simple-kmod image") {
		t.Errorf("4.16.3: %+v", targets[0])
	}
	if last, _ := s.Targets("4.16.3"); len(last) != 0 {
		t.Errorf("from the newest: %+v", last)
	}
	var unknown *ErrUnknownVersion
	if _, err := s.Targets("4.16.99"); !asUnknown(err, &unknown) {
		t.Errorf("an unknown version: %v", err)
	}
}

func asUnknown(err error, target **ErrUnknownVersion) bool {
	e, ok := err.(*ErrUnknownVersion)
	*target = e
	return ok
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestComputeAfterReusesAnUnchangedGraph: computed again with nothing that
// matters changed, the graph is the one before (its encoding serves
// again); with a release's readiness changed, it is a new one.
func TestComputeAfterReusesAnUnchangedGraph(t *testing.T) {
	w := mixedWorld(t)
	up := w.upstream()
	in := Input{Options: w.opts, Channel: "stable-4.16", Arch: "amd64", Upstream: up, Snapshot: w.snap, PageURL: page}
	first, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	w.snap.Tags["quay.io/acme/dtk:unrelated"] = ledger.Promotion{Ref: "quay.io/acme/dtk:unrelated"}
	if again, _ := ComputeAfter(in, first); again != first {
		t.Errorf("an unchanged graph was made again")
	}
	for i := range w.snap.Kernels {
		if w.snap.Kernels[i].Kernel == kNew {
			w.snap.Kernels[i].State = ledger.StatePromoted
		}
	}
	if again, _ := ComputeAfter(in, first); again == first || again.Releases[2].Risks[0].Name == first.Releases[2].Risks[0].Name {
		t.Errorf("a changed readiness kept the graph before")
	}
	in.Upstream = w.upstream() // another upstream graph (the same content, read again)
	if again, _ := ComputeAfter(in, first); again == first {
		t.Errorf("another upstream graph kept the graph before")
	}
}
