package watcher

import (
	"testing"

	"github.com/distribution/reference"
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
			if !versionPattern.MatchString(n.Version) {
				t.Errorf("accepted version %q", n.Version)
			}
		}
	})
}
