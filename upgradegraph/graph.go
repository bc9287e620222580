// Package upgradegraph computes the update graph dtkbot serves to clusters:
// the upstream graph of a channel and arch (every node, edge and
// conditional edge with its risks, as the update service sent them), with
// one change. An update whose target release ships a kernel without a
// promoted, verified Driver Toolkit image, or without a promoted, verified
// image of each consumer, becomes a conditional update with a risk per
// missing piece: the cluster-version-operator then shows it as not
// recommended, with the risk's name, message and link, and an admin must
// accept it explicitly.
//
// It never passes the upstream through unchecked: a channel or arch dtkbot
// does not watch, or one whose graph it has never read, is an error; a
// release it has not read, or holds, is a risk. It is pure: everything
// comes from the Input (the last good upstream graph and a state
// snapshot); no network, no clock.
package upgradegraph

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"

	"github.com/blang/semver/v4"

	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/watcher"
)

// Options are the config's part of the computation: what dtkbot watches
// and what a release's drivers are.
type Options struct {
	// Channels and Arches are the graphs dtkbot reads (graph.channels,
	// graph.arches).
	Channels []string
	Arches   []string
	// Consumers are the consumers' names: each needs a promoted, verified
	// image for every kernel, and (Variants, by name: "" the default
	// kernel, rt, 64k; none: the default only) of every variant it asks
	// for that a release ships.
	Consumers []string
	Variants  map[string][]string
	// BuildKinds are the pre-release kinds whose kernels are built
	// (prerelease.build).
	BuildKinds []string
}

// variantsOf are the kernel variants consumer c asks for.
func (o Options) variantsOf(c string) []string {
	if v := o.Variants[c]; len(v) > 0 {
		return v
	}
	return []string{ledger.VariantDefault}
}

// Watched reports whether dtkbot reads the graph of channel for arch.
func (o Options) Watched(channel, arch string) bool {
	return slices.Contains(o.Channels, channel) && slices.Contains(o.Arches, arch)
}

// Input is everything a served graph is computed from.
type Input struct {
	Options
	Channel, Arch string
	// Upstream is the last good upstream graph of Channel and Arch (nil:
	// none was ever read).
	Upstream *watcher.Graph
	// Snapshot is the state: releases read, their kernels, held payloads,
	// images of every kind, GitHub issues.
	Snapshot *state.Snapshot
	// PageURL is the coverage page (https://dtkbot.example.com/): a risk
	// links to its kernel there when the kernel has no GitHub issue.
	PageURL string
}

// Errors Compute returns, for the caller to turn into the update service's
// error answers.
var (
	// ErrNotWatched: dtkbot does not read that channel or arch, so it
	// knows nothing of its releases' drivers.
	ErrNotWatched = errors.New("not watched")
	// ErrNoUpstream: dtkbot has never read that graph.
	ErrNoUpstream = errors.New("no upstream graph read yet")
)

// Graph is the update graph document clusters read (the Cincinnati graph
// API, version 1).
type Graph struct {
	Version          int                        `json:"version"`
	Nodes            []watcher.GraphNode        `json:"nodes"`
	Edges            [][2]int                   `json:"edges"`
	ConditionalEdges []watcher.ConditionalEdges `json:"conditionalEdges"`
}

// MarshalJSON writes the document.
func (g Graph) MarshalJSON() ([]byte, error) { return g.AppendJSON(nil) }

// AppendJSON appends the document to b: the nodes as they came (already
// compact), the edges written directly (75,000 edges through reflection
// take 7 ms; BenchmarkUpdateGraph500).
func (g Graph) AppendJSON(b []byte) ([]byte, error) {
	size := 64 + 12*len(g.Edges)
	for _, n := range g.Nodes {
		size += len(n.Raw) + 1
	}
	b = slices.Grow(b, size)
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, int64(g.Version), 10)
	b = append(b, `,"nodes":[`...)
	for i, n := range g.Nodes {
		if i > 0 {
			b = append(b, ',')
		}
		raw, err := n.MarshalJSON()
		if err != nil {
			return nil, err
		}
		b = append(b, raw...)
	}
	b = append(b, `],"edges":[`...)
	for i, e := range g.Edges {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(e[0]), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(e[1]), 10)
		b = append(b, ']')
	}
	b = append(b, `],"conditionalEdges":`...)
	cond := g.ConditionalEdges
	if cond == nil {
		cond = []watcher.ConditionalEdges{}
	}
	c, err := json.Marshal(cond)
	if err != nil {
		return nil, err
	}
	b = append(b, c...)
	return append(b, '}'), nil
}

// Served is a computed graph: the document, and what dtkbot knows of each
// of its releases.
type Served struct {
	Channel, Arch string
	Graph         Graph
	// Releases are dtkbot's readiness of each node, by node index.
	Releases []Readiness

	// What it was computed from: the upstream graph, the page linked.
	upstream *watcher.Graph
	page     string
}

// Compute makes the graph served for in.Channel and in.Arch.
func Compute(in Input) (*Served, error) { return ComputeAfter(in, nil) }

// ComputeAfter is Compute given the graph served before (nil: none): when
// the upstream graph is the same one and every release's readiness is as
// it was (most changes of the state change neither: a journal entry, a
// build of another channel's kernel), it returns prev itself, so that what
// was made of it (its encoding) serves again.
func ComputeAfter(in Input, prev *Served) (*Served, error) {
	if !in.Watched(in.Channel, in.Arch) {
		return nil, fmt.Errorf("dtkbot does not watch channel %s for arch %s (graph.channels %v, graph.arches %v): %w",
			in.Channel, in.Arch, in.Channels, in.Arches, ErrNotWatched)
	}
	if in.Upstream == nil {
		return nil, fmt.Errorf("the update graph of channel %s for arch %s: %w", in.Channel, in.Arch, ErrNoUpstream)
	}
	up := in.Upstream
	ix := newIndex(in)
	out := &Served{Channel: in.Channel, Arch: in.Arch, Releases: make([]Readiness, len(up.Nodes)), upstream: up, page: in.PageURL,
		Graph: Graph{Version: 1, Nodes: up.Nodes, Edges: [][2]int{}, ConditionalEdges: []watcher.ConditionalEdges{}}}
	for i, n := range up.Nodes {
		out.Releases[i] = ix.readiness(n)
	}
	if prev != nil && prev.upstream == up && prev.page == in.PageURL && prev.Channel == in.Channel && prev.Arch == in.Arch &&
		reflect.DeepEqual(prev.Releases, out.Releases) {
		return prev, nil
	}
	ours := make([][]json.RawMessage, len(up.Nodes)) // dtkbot's risks of each target, as written
	for i, n := range up.Nodes {
		for _, r := range out.Releases[i].Risks {
			raw, err := json.Marshal(r)
			if err != nil {
				return nil, fmt.Errorf("writing risk %s of %s: %w", r.Name, n.Version, err)
			}
			ours[i] = append(ours[i], raw)
		}
	}
	versions := make([]string, len(up.Nodes)) // as the CVO prints them
	at := map[string]int{}                    // version -> its first node, as the CVO finds a target
	for i, n := range up.Nodes {
		versions[i] = canonical(n.Version)
		if _, ok := at[versions[i]]; !ok {
			at[versions[i]] = i
		}
	}
	// A conditional edge's from and to are compared with versions as the
	// CVO prints them, as they are: "4.16.01" names no node.
	risky := func(to string) (int, bool) {
		i, ok := at[to]
		return i, ok && len(ours[i]) > 0
	}

	// Updates to a target with risks of dtkbot's leave the edges: a cluster
	// that reads no conditional edges (before 4.10) must not see them as
	// recommended.
	out.Graph.Edges = make([][2]int, 0, len(up.Edges))
	moved := make([][]string, len(up.Nodes)) // by target: the versions it is an update from
	seen := map[[2]string]bool{}             // an update listed twice is one conditional update, never two
	for _, e := range up.Edges {
		if len(ours[e[1]]) == 0 {
			out.Graph.Edges = append(out.Graph.Edges, e)
			continue
		}
		if k := [2]string{versions[e[0]], versions[e[1]]}; !seen[k] {
			seen[k] = true
			moved[e[1]] = append(moved[e[1]], versions[e[0]])
		}
	}

	// The upstream's conditional edges are kept, risks and all; where one
	// leads to a target with risks of dtkbot's, they join its entry (a
	// target listed in two entries from one version is dropped by the CVO
	// altogether). An entry with several targets is split by target.
	covered := map[[2]string]bool{}
	for _, c := range up.ConditionalEdges {
		var rest []watcher.ConditionalEdge
		var targets []int
		byTarget := map[int][]watcher.ConditionalEdge{}
		for _, e := range c.Edges {
			covered[[2]string{e.From, e.To}] = true
			t, ok := risky(e.To)
			if !ok {
				rest = append(rest, e)
				continue
			}
			if _, seen := byTarget[t]; !seen {
				targets = append(targets, t)
			}
			byTarget[t] = append(byTarget[t], e)
		}
		if len(targets) == 0 {
			out.Graph.ConditionalEdges = append(out.Graph.ConditionalEdges, c)
			continue
		}
		if len(rest) > 0 {
			out.Graph.ConditionalEdges = append(out.Graph.ConditionalEdges, watcher.ConditionalEdges{Edges: rest, Risks: c.Risks})
		}
		for _, t := range targets {
			out.Graph.ConditionalEdges = append(out.Graph.ConditionalEdges,
				watcher.ConditionalEdges{Edges: byTarget[t], Risks: join(c.Risks, ours[t])})
		}
	}
	for t, froms := range moved {
		var edges []watcher.ConditionalEdge
		to := versions[t]
		for _, from := range froms {
			if !covered[[2]string{from, to}] {
				edges = append(edges, watcher.ConditionalEdge{From: from, To: to})
			}
		}
		if len(edges) > 0 {
			out.Graph.ConditionalEdges = append(out.Graph.ConditionalEdges, watcher.ConditionalEdges{Edges: edges, Risks: ours[t]})
		}
	}
	return out, nil
}

// join adds dtkbot's risks to an upstream entry's. Risk names are keys of
// the CVO's lists (the API server refuses a conditional update whose risks
// repeat a name), so one of dtkbot's that would repeat an upstream name is
// renamed.
func join(upstream, ours []json.RawMessage) []json.RawMessage {
	names := map[string]bool{}
	for _, raw := range upstream {
		var r struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(raw, &r) == nil {
			names[r.Name] = true
		}
	}
	out := slices.Clone(upstream)
	for _, raw := range ours {
		var r Risk
		if err := json.Unmarshal(raw, &r); err != nil || !names[r.Name] {
			out = append(out, raw)
			continue
		}
		r.Name += "_dtkbot"
		if renamed, err := json.Marshal(r); err == nil {
			out = append(out, renamed)
		}
	}
	return out
}

// canonical is a version as the CVO prints it (blang/semver's String),
// which is how it matches a conditional edge's from and to: a node with no
// version is 0.0.0 to it; a version that does not parse is left as it is
// (the CVO refuses the whole graph then).
func canonical(v string) string {
	if v == "" {
		return "0.0.0"
	}
	if p, err := semver.Parse(v); err == nil {
		return p.String()
	}
	return v
}
