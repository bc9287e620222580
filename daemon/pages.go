package daemon

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"

	"github.com/dtkbot/dtkbot/coverage"
	"github.com/dtkbot/dtkbot/upgradegraph"
	"github.com/dtkbot/dtkbot/watcher"
)

// coverageIndex is the kernel index of the state, rebuilt only when the
// state changed since (a page view costs one read transaction otherwise).
func (d *Daemon) coverageIndex() (*coverage.Index, error) {
	gen, err := d.Store.Generation()
	if err != nil {
		return nil, err
	}
	d.ixMu.Lock()
	defer d.ixMu.Unlock()
	if d.ix != nil && d.ixGen == gen {
		return d.ix, nil
	}
	snap, err := d.Store.Snapshot()
	if err != nil {
		return nil, err
	}
	d.ix, d.ixGen = coverage.Build(snap, d.now(), coverage.Options{Variants: d.Upgrades.Variants}), snap.Generation
	return d.ix, nil
}

var (
	channelParam = regexp.MustCompile(`^[a-z]+-[0-9]+\.[0-9]+$`)
	minorParam   = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)
	kernelParam  = regexp.MustCompile(`^[0-9A-Za-z._+-]{1,128}$`)
)

// filterOf reads the page's query: channel, minor, state.
func filterOf(r *http.Request) (coverage.Filter, error) {
	q := r.URL.Query()
	f := coverage.Filter{Channel: q.Get("channel"), Minor: q.Get("minor"), State: q.Get("state"), Kind: q.Get("kind"),
		Release: q.Get("release"), Kernel: q.Get("kernel")}
	switch {
	case f.Release != "" && !versionPattern.MatchString(f.Release):
		return f, fmt.Errorf("release %.64q is not a version such as 4.16.15", f.Release)
	case f.Kernel != "" && !kernelParam.MatchString(f.Kernel):
		return f, fmt.Errorf("kernel %.64q is not a kernel such as 5.14.0-427.37.1.el9_4", f.Kernel)
	case q.Get("from") != "" && !versionPattern.MatchString(q.Get("from")):
		return f, fmt.Errorf("from %.64q is not a version such as 4.16.15", q.Get("from"))
	case f.Kind != "" && !slices.Contains(coverage.Kinds, f.Kind):
		return f, fmt.Errorf("kind %q is not one of %v", f.Kind, coverage.Kinds)
	case f.Channel != "" && !channelParam.MatchString(f.Channel):
		return f, fmt.Errorf("channel %q is not a channel such as stable-4.16", f.Channel)
	case f.Minor != "" && !minorParam.MatchString(f.Minor):
		return f, fmt.Errorf("minor %q is not a minor such as 4.16", f.Minor)
	case f.State != "" && !slices.Contains(coverage.States, f.State):
		return f, fmt.Errorf("state %q is not one of %v", f.State, coverage.States)
	}
	return f, nil
}

// page is GET /: the coverage page.
func (d *Daemon) page(w http.ResponseWriter, r *http.Request) {
	f, err := filterOf(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ix, err := d.coverageIndex()
	if err != nil {
		http.Error(w, "reading state: "+err.Error(), http.StatusInternalServerError)
		return
	}
	opts := coverage.PageOptions{Filter: f}
	if d.sched != nil {
		opts.NextPass = d.sched.Next(d.now())
	}
	from := r.URL.Query().Get("from")
	body, err := d.renderPage(ix, opts, from, func() []coverage.UpdateGraph { return d.updatePictures(f.Channel, from, r) })
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Nothing but the page itself: no script, no outside asset.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(body)
}

// renderPage renders the page, or answers from the pages rendered since the
// index last changed: rendering 2,000 releases takes tens of milliseconds,
// a page view should not. The update graphs' pictures (of the state the
// index is of, with the updates from a release) are drawn on a miss only.
func (d *Daemon) renderPage(ix *coverage.Index, opts coverage.PageOptions, from string, graphs func() []coverage.UpdateGraph) ([]byte, error) {
	key := fmt.Sprintf("%+v %d %s", opts.Filter, opts.NextPass.Unix(), from)
	d.ixMu.Lock()
	if d.pagesOf != ix {
		d.pagesOf, d.pages = ix, map[string][]byte{}
	}
	body, ok := d.pages[key]
	d.ixMu.Unlock()
	if ok {
		return body, nil
	}
	opts.UpdateGraphs = graphs()
	var buf bytes.Buffer
	if err := coverage.WritePage(&buf, ix, opts); err != nil {
		return nil, err
	}
	d.ixMu.Lock()
	if d.pagesOf == ix && len(d.pages) < 64 {
		d.pages[key] = buf.Bytes()
	}
	d.ixMu.Unlock()
	return buf.Bytes(), nil
}

// apiReleases is GET /api/v1/releases.
func (d *Daemon) apiReleases(w http.ResponseWriter, r *http.Request) {
	ix, err := d.coverageIndex()
	if err != nil {
		http.Error(w, "reading state: "+err.Error(), http.StatusInternalServerError)
		return
	}
	serveJSON(w, r, ix.ReleasesDoc())
}

// apiKernels is GET /api/v1/kernels.
func (d *Daemon) apiKernels(w http.ResponseWriter, r *http.Request) {
	ix, err := d.coverageIndex()
	if err != nil {
		http.Error(w, "reading state: "+err.Error(), http.StatusInternalServerError)
		return
	}
	serveJSON(w, r, ix.KernelsDoc())
}

// serveJSON writes v with an ETag (its content's hash), answering 304 to a
// client that has it already.
func serveJSON(w http.ResponseWriter, r *http.Request, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if match := r.Header.Get("If-None-Match"); match == etag || match == "*" {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// updatePictures draws the update graphs of the watched channels (only
// channel's, when set) for each watched arch, with the updates from a
// release when from is set.
func (d *Daemon) updatePictures(channel, from string, r *http.Request) []coverage.UpdateGraph {
	var out []coverage.UpdateGraph
	for _, ch := range d.Upgrades.Channels {
		if channel != "" && ch != channel {
			continue
		}
		for _, arch := range d.Upgrades.Arches {
			g := coverage.UpdateGraph{Channel: ch, Arch: arch}
			res, err := d.servedGraph(ch, arch, r)
			switch {
			case err != nil:
				g.Note = err.Error()
			case res.err != nil:
				g.Note = res.err.Error()
			default:
				g.Picture = pictureOf(res.served, from)
				if from != "" && slices.ContainsFunc(res.served.Graph.Nodes, func(n watcher.GraphNode) bool { return n.Version == from }) {
					g.From = from
				}
			}
			out = append(out, g)
		}
	}
	return out
}

// pictureOf draws a served graph for the page: each release links to the
// picture of its updates.
func pictureOf(s *upgradegraph.Served, from string) template.HTML {
	id := coverage.UpdateGraph{Channel: s.Channel, Arch: s.Arch}.ID()
	return s.Picture(upgradegraph.PictureOptions{From: from, Href: func(v string) string {
		return "?" + url.Values{"channel": {s.Channel}, "from": {v}}.Encode() + "#" + id
	}})
}
