package coverage

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/dtkbot/dtkbot/version"
)

//go:embed assets/page.html.tmpl
var pageTemplate string

//go:embed assets/style.css
var styleCSS string

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04 MST")
	},
	"duration": func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	// span and lead are durations for people: seconds to days.
	"span": Span,
	"lead": Lead,
	// ref is an image reference as a cell shows it: the repository's
	// name and a short digest (or the tag), the full one in the title.
	"ref": shortRef,
	// brief is the start of a long reason, the rest behind a <details>.
	"brief": func(s string) string {
		if len(s) <= 120 {
			return s
		}
		cut := strings.LastIndexByte(s[:120], ' ')
		if cut < 60 {
			cut = 120
		}
		return s[:cut] + " …"
	},
}).Parse(pageTemplate))

// PageOptions are what the page shows beside the index.
type PageOptions struct {
	Filter Filter
	// NextPass is when the daemon runs next (zero for a report).
	NextPass time.Time
	// UpdateGraphs are pictures of the update graphs dtkbot serves.
	UpdateGraphs []UpdateGraph
}

// UpdateGraph is the picture of one channel's update graph for one arch
// (package upgradegraph draws it), or why there is none.
type UpdateGraph struct {
	Channel, Arch string
	// From is the release whose updates it shows ("": the whole graph).
	From    string
	Picture template.HTML
	Note    string
}

// ID is the picture's anchor on the page.
func (g UpdateGraph) ID() string {
	return "update-graph-" + strings.ReplaceAll(g.Channel+"-"+g.Arch, ".", "-")
}

// shortRef shortens an image reference for a table cell: the last part
// of its repository, and its tag or the first 12 hex digits of its digest
// (127.0.0.1:5000/acme/driver-toolkit@sha256:d99e… → driver-toolkit@sha256:d99eca2978bd).
func shortRef(ref string) string {
	name, digest, pinned := strings.Cut(ref, "@")
	tag := ""
	if !pinned {
		if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
			name, tag = ref[:i], ref[i:]
		}
	}
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if pinned {
		algo, hex, _ := strings.Cut(digest, ":")
		if len(hex) > 12 {
			hex = hex[:12]
		}
		return name + "@" + algo + ":" + hex
	}
	return name + tag
}

type pageData struct {
	*Index
	CSS                           template.CSS
	Filter                        Filter
	NextPass                      time.Time
	SignatureMode, SignatureTrust string
	Channels, Minors, States      []string
	Kinds                         []string
	Lead                          LeadTimes
	Groups                        []group
	Counts                        []count
	Shown, Total                  int
	ShowConsumers                 bool // a column for consumer images
	UpdateGraphs                  []UpdateGraph
	Timeline                      template.HTML
	TimelineRows                  int
}

type group struct {
	Minor, ID string
	Releases  []Release
}

type count struct {
	State string
	N     int
}

// WritePage renders the coverage page: releases grouped by minor, newest
// first, each stream with its kernel and the state of its DTK image.
func WritePage(w io.Writer, ix *Index, opts PageOptions) error {
	d := pageData{Index: ix, CSS: template.CSS(styleCSS), Filter: opts.Filter, NextPass: opts.NextPass, States: States, Kinds: Kinds, Total: len(ix.Releases),
		UpdateGraphs: opts.UpdateGraphs}
	d.Lead, _ = ix.Leads()
	rows := ix.Timeline(opts.Filter, 14)
	d.Timeline, d.TimelineRows = TimelinePicture(rows), len(rows)
	d.ShowConsumers = ix.Consumers()
	if lp := ix.LastPass; lp != nil {
		d.SignatureMode, d.SignatureTrust = lp.SignatureMode, lp.SignatureTrust
	}
	channels, minors, counts := map[string]bool{}, map[string]bool{}, map[string]int{}
	var last *group
	for _, r := range ix.Releases {
		minors[Minor(r.Release)] = true
		for _, c := range r.Channels {
			channels[c] = true
		}
		if r.State != "" {
			counts[r.State]++
		}
		for _, s := range r.Streams {
			counts[s.State]++
		}
		if !opts.Filter.Match(r) {
			continue
		}
		d.Shown++
		if m := Minor(r.Release); last == nil || last.Minor != m {
			d.Groups = append(d.Groups, group{Minor: m, ID: strings.NewReplacer(".", "-", " ", "-").Replace(m)})
			last = &d.Groups[len(d.Groups)-1]
		}
		last.Releases = append(last.Releases, r)
	}
	d.Channels = sortedKeys(channels, func(a, b string) int { return strings.Compare(a, b) })
	d.Minors = sortedKeys(minors, func(a, b string) int { return version.Compare(b+".0", a+".0") })
	for _, s := range States {
		if counts[s] > 0 {
			d.Counts = append(d.Counts, count{s, counts[s]})
		}
	}
	if err := page.Execute(w, d); err != nil {
		return fmt.Errorf("rendering the coverage page: %w", err)
	}
	return nil
}

func sortedKeys(m map[string]bool, cmp func(a, b string) int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, cmp)
	return out
}
