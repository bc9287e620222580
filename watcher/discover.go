package watcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/distribution/reference"
)

// Release is one payload to read, from the graph or the config.
type Release struct {
	Version  string   `json:"version,omitempty"` // empty for a config pullspec until it is read
	Pullspec string   `json:"pullspec"`
	Digest   string   `json:"digest,omitempty"` // empty for a config pullspec by tag
	Arch     string   `json:"arch"`             // as the graph names it; "multi" for manifest lists
	Channels []string `json:"channels,omitempty"`
	Source   string   `json:"source"` // graph or config
}

// GraphStore keeps GraphState between passes and restarts.
type GraphStore interface {
	GraphState(channel, arch string) (GraphState, error)
	SaveGraphState(channel, arch string, st GraphState) error
}

// Discoverer finds the releases to consider.
type Discoverer struct {
	Graph    *GraphClient
	Channels []string
	Arches   []string
	Releases []string // pullspecs from the config
	Store    GraphStore
}

// Discovery is what one discovery found.
type Discovery struct {
	Releases []Release
	// GraphRequests is how many requests were sent; Changed how many graphs
	// had changed since the last pass.
	GraphRequests, Changed int
	Skipped                []string
	// Errors are channels that could not be read; their last known nodes
	// were used instead, so a failing graph server fails a pass softly.
	Errors []error
}

// Discover reads every channel and arch (conditionally), adds the config's
// pullspecs, and deduplicates by payload digest. only, when not empty,
// restricts the graph to those channels; readOnly leaves the stored graph
// state as it was (a dry run).
func (d *Discoverer) Discover(ctx context.Context, only []string, readOnly bool) Discovery {
	var out Discovery
	byDigest := map[string]*Release{}
	var order []string
	for _, ch := range d.Channels {
		if len(only) > 0 && !slices.Contains(only, ch) {
			continue
		}
		for _, arch := range d.Arches {
			prev, err := d.Store.GraphState(ch, arch)
			if err != nil {
				out.Errors = append(out.Errors, fmt.Errorf("loading graph state of %s/%s: %w", ch, arch, err))
			}
			out.GraphRequests++
			res, err := d.Graph.Fetch(ctx, ch, arch, prev)
			st := prev
			if err != nil {
				out.Errors = append(out.Errors, err)
			} else {
				st = res.State
				if res.Changed {
					out.Changed++
				}
				out.Skipped = append(out.Skipped, res.Skipped...)
				if !readOnly && (res.Changed || res.State.ETag != prev.ETag) {
					if err := d.Store.SaveGraphState(ch, arch, st); err != nil {
						out.Errors = append(out.Errors, fmt.Errorf("saving graph state of %s/%s: %w", ch, arch, err))
					}
				}
			}
			for _, n := range st.Nodes {
				dg := digestOf(n.Payload)
				key := dg + "/" + arch
				if r, ok := byDigest[key]; ok {
					if !slices.Contains(r.Channels, ch) {
						r.Channels = append(r.Channels, ch)
					}
					continue
				}
				byDigest[key] = &Release{Version: n.Version, Pullspec: n.Payload, Digest: dg, Arch: arch, Channels: []string{ch}, Source: "graph"}
				order = append(order, key)
			}
		}
	}
	for _, p := range d.Releases {
		dg := digestOf(p)
		for _, arch := range d.Arches {
			key := dg + "/" + arch
			if dg == "" {
				key = p + "/" + arch
			}
			if _, ok := byDigest[key]; ok {
				continue
			}
			byDigest[key] = &Release{Pullspec: p, Digest: dg, Arch: arch, Source: "config"}
			order = append(order, key)
		}
	}
	for _, k := range order {
		r := byDigest[k]
		sort.Strings(r.Channels)
		out.Releases = append(out.Releases, *r)
	}
	sort.SliceStable(out.Releases, func(i, j int) bool {
		return CompareVersions(out.Releases[i].Version, out.Releases[j].Version) < 0
	})
	return out
}

// Err joins the discovery's errors.
func (d Discovery) Err() error { return errors.Join(d.Errors...) }

func digestOf(pullspec string) string {
	named, err := reference.ParseNormalizedNamed(pullspec)
	if err != nil {
		return ""
	}
	if c, ok := named.(reference.Canonical); ok {
		return c.Digest().String()
	}
	return ""
}

// leadingNumber reads the number a dotted version starts with (0 for none)
// and returns the rest after its dot. It is on every sort's hot path.
func leadingNumber(s string) (int, string) {
	n, i := 0, 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + int(s[i]-'0')
	}
	if j := strings.IndexByte(s[i:], '.'); j >= 0 {
		return n, s[i+j+1:]
	}
	return n, ""
}

// CompareVersions orders OpenShift versions: 4.9.0 < 4.10.0, and a
// pre-release (4.16.0-rc.1) before its release. Empty sorts last.
func CompareVersions(a, b string) int {
	if a == b {
		return 0
	}
	if a == "" {
		return 1
	}
	if b == "" {
		return -1
	}
	ac, apre, _ := strings.Cut(strings.SplitN(a, "+", 2)[0], "-")
	bc, bpre, _ := strings.Cut(strings.SplitN(b, "+", 2)[0], "-")
	for ac != "" || bc != "" {
		var x, y int
		x, ac = leadingNumber(ac)
		y, bc = leadingNumber(bc)
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	switch {
	case apre == bpre:
		return strings.Compare(a, b)
	case apre == "":
		return 1
	case bpre == "":
		return -1
	}
	return strings.Compare(apre, bpre)
}
