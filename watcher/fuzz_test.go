package watcher

import (
	"slices"
	"testing"

	"github.com/distribution/reference"

	"github.com/dtkbot/dtkbot/version"
)

func FuzzParseGraph(f *testing.F) {
	f.Add([]byte(`{"version":1,"nodes":[{"version":"4.16.15","payload":"` + pinned + `","metadata":{"url":"x"}}],"edges":[],"conditionalEdges":[]}`))
	f.Add([]byte(`{"version":1,"nodes":[],"edges":[[0,1]]}`))
	f.Add([]byte(`{"nodes":[{"version":"4.16.15","payload":"quay.io/a:b"}]}`))
	f.Add([]byte(`<html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		nodes, _, err := ParseGraph(body)
		if err != nil {
			return
		}
		for _, n := range nodes {
			named, err := reference.ParseNormalizedNamed(n.Payload)
			if err != nil {
				t.Fatalf("accepted payload %q: %v", n.Payload, err)
			}
			if _, ok := named.(reference.Canonical); !ok {
				t.Errorf("accepted an unpinned payload %q", n.Payload)
			}
			if !version.Valid(n.Version) {
				t.Errorf("accepted version %q", n.Version)
			}
		}
	})
}

func FuzzStreamTags(f *testing.F) {
	f.Add([]byte(`{"name":"4-stable","tags":[{"name":"4.17.0-rc.1","phase":"Accepted","pullSpec":"quay.io/openshift-release-dev/ocp-release:4.17.0-rc.1-x86_64","downloadURL":"x"}]}`))
	f.Add([]byte(`{"name":"4-stable","tags":[{"name":"nope","phase":"Accepted","pullSpec":"::"}]}`))
	f.Add([]byte(`{"name":"4-stable"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		tags, _, err := ParseStreamTags(body, "4-stable")
		if err != nil {
			return
		}
		for _, tag := range tags {
			if _, err := reference.ParseNormalizedNamed(tag.Pullspec); err != nil {
				t.Fatalf("accepted pullspec %q: %v", tag.Pullspec, err)
			}
			if !version.Valid(tag.Version) || !slices.Contains(knownPhases, tag.Phase) {
				t.Errorf("accepted tag %+v", tag)
			}
		}
	})
}
