package upgradegraph

import (
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// svgElements parses a picture (as a page embeds it) and lists its
// elements by tag.
func svgElements(t *testing.T, pic string) map[string][]*html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader("<!DOCTYPE html><body>" + pic))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]*html.Node{}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			out[n.Data] = append(out[n.Data], n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return out
}

func attrOf(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// TestPictureOfTheGraph: each release a circle in its readiness' colour,
// the updates drawn as the transitive reduction (a graph where every
// release leads to every later one is a chain) with a risk marked, or,
// from one release, every update from it; links to each release's updates.
func TestPictureOfTheGraph(t *testing.T) {
	s := mixedWorld(t).compute("amd64")
	pic := string(s.Picture(PictureOptions{Href: func(v string) string { return "?channel=stable-4.16&from=" + v }}))
	els := svgElements(t, pic)
	if len(els["svg"]) != 1 || attrOf(els["svg"][0], "data-channel") != "stable-4.16" || len(els["script"]) != 0 || len(els["style"]) != 0 {
		t.Fatalf("not one self-contained svg:\n%s", pic)
	}
	states := map[string]string{}
	for _, g := range els["g"] {
		if v := attrOf(g, "data-version"); v != "" {
			states[v] = attrOf(g, "data-state")
		}
	}
	want := map[string]string{"4.15.30": Ready, "4.16.0": Ready, "4.16.1": Waiting, "4.16.2": Ready, "4.16.3": Waiting}
	for v, st := range want {
		if states[v] != st {
			t.Errorf("%s drawn %q, want %q", v, states[v], st)
		}
	}
	var edges []string
	for _, p := range els["path"] {
		if from := attrOf(p, "data-from"); from != "" {
			edges = append(edges, from+">"+attrOf(p, "data-to")+":"+attrOf(p, "data-risk"))
		}
	}
	slices.Sort(edges)
	chain := []string{"4.15.30>4.16.0:", "4.16.0>4.16.1:dtkbot", "4.16.1>4.16.2:upstream", "4.16.2>4.16.3:dtkbot"}
	if !slices.Equal(edges, chain) {
		t.Errorf("edges %v, want the chain %v", edges, chain)
	}
	var hrefs []string
	for _, a := range els["a"] {
		hrefs = append(hrefs, attrOf(a, "href"))
	}
	if len(hrefs) != 5 || hrefs[0] != "?channel=stable-4.16&from=4.15.30" {
		t.Errorf("links %v", hrefs)
	}

	from := string(s.Picture(PictureOptions{From: "4.16.0"}))
	edges = nil
	for _, p := range svgElements(t, from)["path"] {
		if f := attrOf(p, "data-from"); f != "" {
			edges = append(edges, f+">"+attrOf(p, "data-to")+":"+attrOf(p, "data-risk"))
		}
	}
	slices.Sort(edges)
	if want := []string{"4.16.0>4.16.1:dtkbot", "4.16.0>4.16.2:upstream", "4.16.0>4.16.3:dtkbot"}; !slices.Equal(edges, want) {
		t.Errorf("from 4.16.0: %v, want %v", edges, want)
	}
	if !strings.Contains(from, `data-version="4.16.0" data-state="ready" data-from="true"`) {
		t.Errorf("the release updated from is not marked")
	}
}

// TestPictureEscapesTheUpstream: a version the upstream sends is text in
// the picture, never markup.
func TestPictureEscapesTheUpstream(t *testing.T) {
	w := newWorld(t)
	w.node(from)
	w.node(`4.16.9"><script>alert(1)</script>`)
	w.edge(from, `4.16.9"><script>alert(1)</script>`)
	pic := string(w.compute("amd64").Picture(PictureOptions{Href: func(v string) string { return "?from=" + v }}))
	if els := svgElements(t, pic); len(els["script"]) != 0 || strings.Contains(pic, "<script>") {
		t.Errorf("markup from the upstream:\n%s", pic)
	}
}
