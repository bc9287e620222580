package coverage

import (
	"fmt"
	"html/template"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/dtkbot/dtkbot/version"
)

// TimelineRow is one release stream's lead time: when its kernel was first
// seen (perhaps in an earlier release, or a release-controller's
// candidate), when the release itself was, when the kernel's DTK was
// promoted and when each consumer's image was (or what became of it).
type TimelineRow struct {
	Release, Stream, Arch, Kernel string
	ReleaseSeen, KernelSeen       time.Time
	DTKPromoted                   time.Time
	DTKState                      string
	Consumers                     []TimelineConsumer
}

// TimelineConsumer is a consumer's image on a timeline row.
type TimelineConsumer struct {
	Consumer, State string
	Promoted        time.Time
}

// Timeline lists the newest release streams the filter lets through whose
// kernel is known (at most max), newest first, with their lead times.
func (ix *Index) Timeline(f Filter, max int) []TimelineRow {
	kernels := map[string]Kernel{}
	for _, k := range ix.Kernels {
		kernels[k.Stream+"/"+k.Arch+"/"+k.Kernel] = k
	}
	var rows []TimelineRow
	for _, r := range ix.Releases {
		if !f.Match(r) || r.FirstSeen.IsZero() {
			continue
		}
		for _, s := range r.Streams {
			k, ok := kernels[s.Stream+"/"+r.Arch+"/"+s.Kernel]
			if !ok || s.Kernel == "" {
				continue
			}
			row := TimelineRow{Release: r.Release, Stream: s.Stream, Arch: r.Arch, Kernel: s.KernelFull, ReleaseSeen: r.FirstSeen,
				KernelSeen: k.FirstSeen, DTKPromoted: k.PromotedAt, DTKState: k.State}
			for _, c := range s.Consumers {
				row.Consumers = append(row.Consumers, TimelineConsumer{Consumer: c.Consumer, State: c.State, Promoted: c.PromotedAt})
			}
			rows = append(rows, row)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return version.Compare(rows[j].Release, rows[i].Release) < 0 })
	if len(rows) > max {
		rows = rows[:max]
	}
	return rows
}

// Span says a duration as people do: seconds, minutes, hours, then days.
func Span(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < 10*time.Second:
		return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.1f", d.Seconds()), "0"), ".") + " s"
	case d < time.Minute:
		return fmt.Sprintf("%.0f s", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%.0f min", d.Minutes())
	case d < 48*time.Hour:
		return fmt.Sprintf("%.0f h", d.Hours())
	}
	return fmt.Sprintf("%.0f days", d.Hours()/24)
}

// Lead says an offset from a release's first sight: "3 days ahead",
// "2 s after".
func Lead(d time.Duration) string {
	if d <= 0 {
		return Span(d) + " ahead"
	}
	return Span(d) + " after"
}

// Timeline picture geometry, in the SVG's own units.
const (
	tlWidth  = 500
	tlLabel  = 112 // the rows' labels
	tlRight  = 52  // what is not (yet) promoted
	tlRow    = 24
	tlTop    = 62
	tlBottom = 34
)

// Mark colours, as the update graph's and the page's states have them.
const (
	colourSeen     = "#57606a"
	colourDTK      = "#0969da"
	colourKmod     = "#1a7f37"
	colourRejected = "#cf222e"
	colourWaiting  = "#9a6700"
)

// TimelinePicture draws the rows as a self-contained SVG (no script, no
// style sheet), time running left to right, each row's 0 the moment its
// release was first seen: the kernel seen (a ring: left of 0 when an
// earlier release or a candidate shipped it), its DTK promoted (a
// diamond), each consumer's image promoted (a square; a cross when it was
// rejected or failed, a dot at the right when it is still to come). What
// is left of the 0 line was ready before the release was.
func TimelinePicture(rows []TimelineRow) template.HTML {
	if len(rows) == 0 {
		return ""
	}
	lo, hi := time.Duration(0), time.Duration(0)
	for _, r := range rows {
		for _, t := range r.times() {
			d := t.Sub(r.ReleaseSeen)
			lo, hi = min(lo, d), max(hi, d)
		}
	}
	if hi-lo < time.Second {
		hi = lo + time.Second
	}
	step := tickStep(hi - lo)
	lo = time.Duration(math.Floor(float64(lo)/float64(step))) * step
	hi = time.Duration(math.Ceil(float64(hi)/float64(step))) * step
	x0, x1 := float64(tlLabel+10), float64(tlWidth-tlRight)
	x := func(d time.Duration) float64 { return x0 + (x1-x0)*float64(d-lo)/float64(hi-lo) }
	height := tlTop + len(rows)*tlRow + tlBottom

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="100%%" role="img" aria-labelledby="timeline-title" font-family="system-ui, sans-serif" font-size="11">`, tlWidth, height)
	b.WriteString(`<title id="timeline-title">Lead times: per release, its kernel first seen, its Driver Toolkit image promoted, each consumer's image promoted, against when the release was first seen</title>`)
	legend := []struct {
		shape string
		x, y  int
		text  string
	}{
		{ring(14, 14, colourSeen), 26, 18, "kernel first seen"}, {diamond(140, 14, colourDTK), 150, 18, "DTK promoted"},
		{square(250, 14, colourKmod), 260, 18, "kmod image promoted"},
		{cross(14, 32, colourRejected), 26, 36, "rejected or failed"}, {dot(140, 32, colourWaiting), 150, 36, "still to come"},
	}
	for _, l := range legend {
		b.WriteString(l.shape)
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`, l.x, l.y, colourSeen, l.text)
	}
	// The ticks, and the 0 of each row: when its release was first seen.
	bottom := tlTop + len(rows)*tlRow
	for d := lo; d <= hi; d += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#d0d7de"/>`, x(d), tlTop-6, x(d), bottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="%s">%s</text>`, x(d), bottom+14, colourSeen, template.HTMLEscapeString(tickLabel(d)))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#1b1f24" stroke-dasharray="3 2"/>`, x(0), tlTop-10, x(0), bottom)
	anchor := "middle"
	switch {
	case x(0) > x1-50:
		anchor = "end"
	case x(0) < x0+50:
		anchor = "start"
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="%s" fill="#1b1f24">release first seen</text>`, x(0), tlTop-12, anchor)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="%s">← ready before the release · after it →</text>`, x0+(x1-x0)/2, bottom+28, colourSeen)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="%s">not yet</text>`, tlWidth-tlRight/2, tlTop-12, colourSeen)

	for i, r := range rows {
		y := tlTop + i*tlRow + tlRow/2
		esc := template.HTMLEscapeString
		fmt.Fprintf(&b, `<g data-release="%s" data-stream="%s" data-kernel="%s">`, esc(r.Release), esc(r.Stream), esc(r.Kernel))
		fmt.Fprintf(&b, `<title>%s</title>`, esc(r.describe()))
		if i%2 == 1 {
			fmt.Fprintf(&b, `<rect x="0" y="%d" width="%d" height="%d" fill="#f6f8fa"/>`, y-tlRow/2, tlWidth, tlRow)
		}
		fmt.Fprintf(&b, `<text x="4" y="%d" fill="#1b1f24"><tspan font-weight="600">%s</tspan> %s</text>`, y+4, esc(r.Release), esc(r.Stream))
		seen := x(r.KernelSeen.Sub(r.ReleaseSeen))
		end := seen
		if !r.DTKPromoted.IsZero() {
			end = x(r.DTKPromoted.Sub(r.ReleaseSeen))
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="2"/>`, seen, y, end, y, colourSeen)
		b.WriteString(mark("kernel-seen", ring(seen, float64(y), colourSeen)))
		if r.DTKPromoted.IsZero() {
			b.WriteString(mark("dtk-"+r.DTKState, dtkPending(float64(tlWidth-tlRight/2-8), float64(y), r.DTKState)))
		} else {
			b.WriteString(mark("dtk-promoted", diamond(end, float64(y), colourDTK)))
		}
		for j, c := range r.Consumers {
			off := float64(j * 4)
			switch {
			case !c.Promoted.IsZero():
				cx := x(c.Promoted.Sub(r.ReleaseSeen))
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="2"/>`, end, y, cx, y, colourKmod)
				b.WriteString(mark("kmod-promoted", square(cx+off, float64(y), colourKmod)))
			case c.State == StateFailed:
				b.WriteString(mark("kmod-rejected", cross(float64(tlWidth-tlRight/2+8)+off, float64(y), colourRejected)))
			default:
				b.WriteString(mark("kmod-"+c.State, dot(float64(tlWidth-tlRight/2+8)+off, float64(y), colourWaiting)))
			}
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // every text in it is escaped above
}

// times are the moments a row draws.
func (r TimelineRow) times() []time.Time {
	out := []time.Time{r.KernelSeen}
	if !r.DTKPromoted.IsZero() {
		out = append(out, r.DTKPromoted)
	}
	for _, c := range r.Consumers {
		if !c.Promoted.IsZero() {
			out = append(out, c.Promoted)
		}
	}
	return out
}

// describe is a row's tooltip: each moment against the release's.
func (r TimelineRow) describe() string {
	parts := []string{fmt.Sprintf("%s %s (%s), kernel %s: first seen %s", r.Release, r.Stream, r.Arch, r.Kernel, Lead(r.KernelSeen.Sub(r.ReleaseSeen)))}
	if r.DTKPromoted.IsZero() {
		parts = append(parts, "DTK "+r.DTKState)
	} else {
		parts = append(parts, "DTK promoted "+Lead(r.DTKPromoted.Sub(r.ReleaseSeen)))
	}
	for _, c := range r.Consumers {
		if c.Promoted.IsZero() {
			parts = append(parts, c.Consumer+" "+c.State)
		} else {
			parts = append(parts, c.Consumer+" promoted "+Lead(c.Promoted.Sub(r.ReleaseSeen)))
		}
	}
	return strings.Join(parts, "; ") + " (against when the release was first seen)"
}

// tickStep is a round step giving four to eight ticks over span.
func tickStep(span time.Duration) time.Duration {
	for _, s := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute,
		10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
		24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour, 28 * 24 * time.Hour} {
		if span/s <= 7 {
			return s
		}
	}
	return 56 * 24 * time.Hour
}

func tickLabel(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < 0:
		return "−" + Span(d)
	}
	return "+" + Span(d)
}

func mark(kind, shape string) string {
	return strings.Replace(shape, "<", `<g data-mark="`+kind+`">`+"<", 1) + "</g>"
}

// The shapes nest, ring around diamond around square, so that marks at
// one moment (a pass that saw, built and promoted at once) all show.
func ring(x, y float64, c string) string {
	return fmt.Sprintf(`<circle cx="%.1f" cy="%.1f" r="8" fill="#ffffff" stroke="%s" stroke-width="1.8"/>`, x, y, c)
}

func diamond(x, y float64, c string) string {
	return fmt.Sprintf(`<path d="M%.1f %.1fl6 6-6 6-6-6z" fill="%s" stroke="#ffffff" stroke-width="0.8"/>`, x, y-6, c)
}

func square(x, y float64, c string) string {
	return fmt.Sprintf(`<rect x="%.1f" y="%.1f" width="5" height="5" fill="%s" stroke="#ffffff" stroke-width="0.6"/>`, x-2.5, y-2.5, c)
}

func cross(x, y float64, c string) string {
	return fmt.Sprintf(`<path d="M%.1f %.1fl8 8m0-8l-8 8" stroke="%s" stroke-width="2.2"/>`, x-4, y-4, c)
}

func dot(x, y float64, c string) string {
	return fmt.Sprintf(`<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`, x, y, c)
}

// dtkPending marks a DTK not promoted: a cross when it failed, a dot when
// it is still to come.
func dtkPending(x, y float64, state string) string {
	if state == StateFailed {
		return cross(x, y, colourRejected)
	}
	return dot(x, y, colourWaiting)
}
