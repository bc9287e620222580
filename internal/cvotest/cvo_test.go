package cvotest

import (
	"os"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/internal/loopback"
)

// TestMain keeps the tests on loopback (internal/loopback).
func TestMain(m *testing.M) { os.Exit(loopback.Run(m)) }

// TestDecoderAgreesWithTheCVOsTests replays cases of the CVO's own
// TestGetUpdates (pkg/cincinnati/cincinnati_test.go) against the decoder:
// what it keeps, and what it drops.
func TestDecoderAgreesWithTheCVOsTests(t *testing.T) {
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
			_, updates, conditional, err := GetUpdates([]byte(tc.body), "4.1.0")
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

func versionsOf(rs []Release) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Version)
	}
	return out
}

// describe writes conditional updates as "version risk,risk".
func describe(cs []ConditionalUpdate) []string {
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

// TestProblemsAndRecommended: what the API server refuses, and the
// condition the CVO writes (one risk's name, or MultipleReasons).
func TestProblemsAndRecommended(t *testing.T) {
	always := []Rule{{Type: "Always"}}
	one := ConditionalUpdate{Risks: []Risk{{URL: "https://example.com/1", Name: "BugA", Message: "breaks", MatchingRules: always}}}
	if p := Problems(one); len(p) != 0 {
		t.Errorf("problems of a good update: %v", p)
	}
	if reason, msg := Recommended(one); reason != "BugA" || msg != "breaks https://example.com/1" {
		t.Errorf("%s: %s", reason, msg)
	}
	two := ConditionalUpdate{Risks: []Risk{one.Risks[0], {URL: "/relative", Name: "BugA", Message: "again", MatchingRules: always}}}
	if p := Problems(two); len(p) != 2 || !strings.Contains(p[0], "twice") || !strings.Contains(p[1], "no absolute URI") {
		t.Errorf("problems: %v", p)
	}
	if reason, _ := Recommended(ConditionalUpdate{Risks: []Risk{one.Risks[0], {Name: "BugB"}}}); reason != "MultipleReasons" {
		t.Errorf("reason %s", reason)
	}
	if p := Problems(ConditionalUpdate{}); len(p) != 1 {
		t.Errorf("no risk: %v", p)
	}
}
