package watcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/dtkbot/dtkbot/guard"
	"github.com/dtkbot/dtkbot/version"

	"github.com/distribution/reference"
)

// Release is one payload to read, from the graph, a release-controller or
// the config.
type Release struct {
	Version  string   `json:"version,omitempty"` // empty for a config pullspec until it is read
	Pullspec string   `json:"pullspec"`
	Digest   string   `json:"digest,omitempty"` // empty for a pullspec by tag until it is resolved
	Arch     string   `json:"arch"`             // as the graph names it; "multi" for manifest lists
	Channels []string `json:"channels,omitempty"`
	// Sources say where it was found, and with which phase.
	Sources []Source `json:"sources"`
}

// Source types.
const (
	SourceGraph             = "graph"
	SourceReleaseController = "release-controller"
	SourceConfig            = "config"
)

// Source is one place a release was found.
type Source struct {
	Type string `json:"type"` // graph, release-controller, config
	// Name is the graph channel, the release stream, or the pullspec.
	Name string `json:"name"`
	// Phase is the release-controller's phase of the tag.
	Phase string `json:"phase,omitempty"`
	// URL is the release-controller.
	URL string `json:"url,omitempty"`
}

// Key names the feed a source is part of (a channel of the graph, a stream
// of one release-controller).
func (s Source) Key() string {
	if s.Type == SourceReleaseController {
		return s.Type + " " + s.URL + " " + s.Name
	}
	return s.Type + " " + s.Name
}

// String is how people read it.
func (s Source) String() string {
	switch s.Type {
	case SourceReleaseController:
		return fmt.Sprintf("release-controller %s stream %s (%s)", s.URL, s.Name, s.Phase)
	case SourceGraph:
		return "graph channel " + s.Name
	}
	return "config " + s.Name
}

// MergeSources adds b's sources to a's, a source already there taking b's
// phase; it reports whether anything changed.
func MergeSources(a, b []Source) ([]Source, bool) {
	changed := false
	for _, s := range b {
		i := slices.IndexFunc(a, func(x Source) bool { return x.Key() == s.Key() })
		switch {
		case i < 0:
			a, changed = append(a, s), true
		case a[i].Phase != s.Phase:
			a[i].Phase, changed = s.Phase, true
		}
	}
	return a, changed
}

// GraphStore keeps GraphState between passes and restarts.
type GraphStore interface {
	GraphState(channel, arch string) (GraphState, error)
	SaveGraphState(channel, arch string, st GraphState) error
}

// StreamStore keeps the release-controllers' StreamState.
type StreamStore interface {
	StreamState(key string) (StreamState, error)
	SaveStreamState(key string, st StreamState) error
}

// Discoverer finds the releases to consider.
type Discoverer struct {
	Graph    *GraphClient
	Channels []string
	Arches   []string
	Releases []string // pullspecs from the config
	// ReleaseControllers are read for pre-releases, beside the graph.
	ReleaseControllers []*ReleaseController
	Store              GraphStore
	Streams            StreamStore
}

// Discovery is what one discovery found.
type Discovery struct {
	Releases []Release
	// Withdrawn are release-controller tags now Rejected or Failed (by
	// pullspec and arch): pre-releases to withdraw.
	Withdrawn []Release
	// Read are the feeds (Source.Key) read successfully this time: a
	// pre-release none of its feeds lists any more has vanished.
	Read map[string]bool
	// GraphRequests is how many requests were sent to the graph, and
	// StreamRequests to release-controllers; Changed how many graphs had
	// changed since the last pass.
	GraphRequests, StreamRequests, Changed int
	Skipped                                []string
	// Errors are feeds that could not be read; their last known nodes
	// were used instead, so a failing server fails a pass softly.
	Errors []error
}

// feedsInFlight bounds the feeds (graph channels and arches,
// release-controller streams) read at once: a feed that does not answer
// costs a pass one timeout, not one per feed, and the servers see a
// handful of requests at a time.
const feedsInFlight = 8

// Discover reads every channel and arch (conditionally) and every
// release-controller stream, all at once, adds the config's pullspecs, and
// deduplicates by payload digest. only, when not empty, restricts the graph
// to those channels; readOnly leaves the stored graph state as it was (a
// dry run). What it finds does not depend on the order the feeds answer.
func (d *Discoverer) Discover(ctx context.Context, only []string, readOnly bool) Discovery {
	out := Discovery{Read: map[string]bool{}}
	byDigest := map[string]*Release{}
	var order []string

	// The feeds, and what each left last time.
	type graphFeed struct {
		channel, arch string
		prev          GraphState
		res           FetchResult
		err           error
	}
	type streamFeed struct {
		rc     *ReleaseController
		stream string
		src    Source
		key    string
		prev   StreamState
		st     StreamState
		skip   []string
		err    error
	}
	var graphs []*graphFeed
	for _, ch := range d.Channels {
		if len(only) > 0 && !slices.Contains(only, ch) {
			continue
		}
		for _, arch := range d.Arches {
			prev, err := d.Store.GraphState(ch, arch)
			if err != nil {
				out.Errors = append(out.Errors, fmt.Errorf("loading graph state of %s/%s: %w", ch, arch, err))
			}
			graphs = append(graphs, &graphFeed{channel: ch, arch: arch, prev: prev})
		}
	}
	var streams []*streamFeed
	for _, rc := range d.ReleaseControllers {
		for _, stream := range rc.Streams {
			src := Source{Type: SourceReleaseController, Name: stream, URL: rc.URL}
			f := &streamFeed{rc: rc, stream: stream, src: src, key: src.Key() + " " + rc.Arch}
			var err error
			if f.prev, err = d.Streams.StreamState(f.key); err != nil {
				out.Errors = append(out.Errors, fmt.Errorf("loading the state of %s: %w", rc.where(stream), err))
			}
			streams = append(streams, f)
		}
	}
	slots := make(chan struct{}, feedsInFlight)
	var wg sync.WaitGroup
	fetch := func(read func(), failed *error) {
		guard.Go(&wg, func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			read()
		}, func(err error) { *failed = err })
	}
	for _, f := range graphs {
		fetch(func() { f.res, f.err = d.Graph.Fetch(ctx, f.channel, f.arch, f.prev) }, &f.err)
	}
	for _, f := range streams {
		fetch(func() { f.st, f.skip, f.err = f.rc.Fetch(ctx, f.stream, f.prev) }, &f.err)
	}
	wg.Wait()

	for _, f := range graphs {
		ch, arch, prev := f.channel, f.arch, f.prev
		out.GraphRequests++
		st := prev
		if f.err != nil {
			out.Errors = append(out.Errors, f.err)
		} else {
			res := f.res
			out.Read[Source{Type: SourceGraph, Name: ch}.Key()] = true
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
		src := Source{Type: SourceGraph, Name: ch}
		for _, n := range st.Nodes {
			dg := digestOf(n.Payload)
			key := dg + "/" + arch
			if r, ok := byDigest[key]; ok {
				if !slices.Contains(r.Channels, ch) {
					r.Channels = append(r.Channels, ch)
				}
				r.Sources, _ = MergeSources(r.Sources, []Source{src})
				continue
			}
			byDigest[key] = &Release{Version: n.Version, Pullspec: n.Payload, Digest: dg, Arch: arch, Channels: []string{ch}, Sources: []Source{src}}
			order = append(order, key)
		}
	}
	for _, f := range streams {
		rc, src := f.rc, f.src
		phases := rc.Phases
		if len(phases) == 0 {
			phases = []string{PhaseAccepted}
		}
		out.StreamRequests++
		st := f.st
		if f.err != nil {
			out.Errors = append(out.Errors, f.err)
			st = f.prev
		} else {
			out.Read[src.Key()] = true
			out.Skipped = append(out.Skipped, f.skip...)
			if !readOnly && (st.BodyHash != f.prev.BodyHash || st.ETag != f.prev.ETag) {
				if err := d.Streams.SaveStreamState(f.key, st); err != nil {
					out.Errors = append(out.Errors, fmt.Errorf("saving the state of %s: %w", rc.where(f.stream), err))
				}
			}
		}
		for _, tag := range st.Tags {
			s := src
			s.Phase = tag.Phase
			rel := Release{Version: tag.Version, Pullspec: tag.Pullspec, Digest: digestOf(tag.Pullspec), Arch: rc.Arch, Sources: []Source{s}}
			if tag.Phase == PhaseRejected || tag.Phase == PhaseFailed {
				out.Withdrawn = append(out.Withdrawn, rel)
				continue
			}
			if !slices.Contains(phases, tag.Phase) {
				continue
			}
			key := rel.Pullspec + "/" + rc.Arch
			if rel.Digest != "" {
				key = rel.Digest + "/" + rc.Arch
			}
			if r, ok := byDigest[key]; ok {
				r.Sources, _ = MergeSources(r.Sources, rel.Sources)
				continue
			}
			byDigest[key] = &rel
			order = append(order, key)
		}
	}
	for _, p := range d.Releases {
		dg := digestOf(p)
		src := Source{Type: SourceConfig, Name: p}
		out.Read[src.Key()] = true
		for _, arch := range d.Arches {
			key := dg + "/" + arch
			if dg == "" {
				key = p + "/" + arch
			}
			if r, ok := byDigest[key]; ok {
				r.Sources, _ = MergeSources(r.Sources, []Source{src})
				continue
			}
			byDigest[key] = &Release{Pullspec: p, Digest: dg, Arch: arch, Sources: []Source{src}}
			order = append(order, key)
		}
	}
	for _, k := range order {
		r := byDigest[k]
		sort.Strings(r.Channels)
		out.Releases = append(out.Releases, *r)
	}
	sort.SliceStable(out.Releases, func(i, j int) bool {
		return version.Compare(out.Releases[i].Version, out.Releases[j].Version) < 0
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
