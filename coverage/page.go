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
	// variants are a stream's kernel variants as its Kernel cell lists
	// them, when a consumer asks for one besides the default kernel;
	// variant says whether the stream's DTK carries (or the release
	// ships) variant v with a known uname -r.
	"variants": variantRows,
	"variant": func(s Stream, v string) bool {
		return slices.ContainsFunc(s.Variants, func(k VariantKernel) bool { return k.Variant == v && k.KernelFull != "" })
	},
	// promoted counts the consumer images promoted.
	"promoted": func(cs []ConsumerImage) int {
		n := 0
		for _, c := range cs {
			if c.State == StatePromoted {
				n++
			}
		}
		return n
	},
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

// variantRow is one kernel variant of a stream as the page lists it: its
// uname -r (or why there is none yet) and its consumer images' tally.
type variantRow struct {
	VariantKernel
	// Note stands for an unknown uname -r: "not carried" when the DTK was
	// read and lacks the variant (its images are missing), else "not read
	// yet".
	Note string
}

// variantRows lists s's kernel variants when a consumer asks for one other
// than the default kernel (a stream of default kernels only says nothing
// new); those no consumer asks for are left out.
func variantRows(s Stream) []variantRow {
	asked := slices.ContainsFunc(s.Variants, func(k VariantKernel) bool { return k.Variant != "default" && k.Wanted > 0 })
	if !asked {
		return nil
	}
	var out []variantRow
	for _, k := range s.Variants {
		if k.Wanted == 0 {
			continue
		}
		row := variantRow{VariantKernel: k}
		if k.KernelFull == "" {
			row.Note = "not read yet"
			if slices.ContainsFunc(s.Consumers, func(c ConsumerImage) bool { return c.Variant == k.Variant && c.State == StateMissing }) {
				row.Note = "not carried by its DTK"
			}
		}
		out = append(out, row)
	}
	return out
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
	ConsumerCounts                []count // consumer images (each once) by state
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
	consumerCounts := map[string]int{}
	for _, k := range ix.Kernels {
		for _, c := range k.Consumers {
			consumerCounts[c.State]++
		}
	}
	for _, s := range States {
		if consumerCounts[s] > 0 {
			d.ConsumerCounts = append(d.ConsumerCounts, count{s, consumerCounts[s]})
		}
	}
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
