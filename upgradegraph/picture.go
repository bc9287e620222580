package upgradegraph

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"slices"
	"strings"

	"github.com/dtkbot/dtkbot/version"
)

//go:embed assets/picture.svg.tmpl
var pictureTemplate string

var picture = template.Must(template.New("picture").Parse(pictureTemplate))

// PictureOptions say what a picture of the graph shows.
type PictureOptions struct {
	// From, when set, draws every update from that version; otherwise the
	// updates that skip no release reachable another way (a release an
	// arrow path reaches is offered directly too).
	From string
	// Href, when set, links each release (to the page with its updates).
	Href func(version string) string
}

// Colours of the readiness states, and of the arrows.
var stateColour = map[string]string{Ready: "#1a7f37", Waiting: "#bf8700", Unknown: "#6e7781", Blocked: "#cf222e"}

const (
	safeColour     = "#8c959f"
	upstreamColour = "#bc4c00"
	rowHeight      = 96
	left, top      = 56, 84 // top: below the legend's two rows
)

type pictureNode struct {
	Version, Label, State, Colour, Title, Href string
	X, Y                                       int
	From                                       bool
}

type pictureEdge struct {
	From, To, Path, Colour, Dash, Risk, Title string
	Width                                     float64
}

type pictureRow struct {
	Minor string
	Y     int
}

type pictureData struct {
	Channel, Arch, Title, Description string
	Width, Height                     int
	Rows                              []pictureRow
	Nodes                             []pictureNode
	Edges                             []pictureEdge
	Legend                            []legendItem
}

type legendItem struct {
	Label, Colour, Dash string
	X, Y                int // Y: the middle of its row
	Line                bool
}

// Picture draws the graph as a self-contained SVG (no script, no style
// sheet, nothing loaded from elsewhere): each release a circle coloured by
// its drivers' readiness, a row per minor, in version order; each update
// an arrow, dashed red where dtkbot has a risk on it, dotted orange where
// only the upstream has. Each element has a title saying what it is, and
// data- attributes naming it.
func (s *Served) Picture(opts PictureOptions) template.HTML {
	g := s.Graph
	n := len(g.Nodes)
	d := pictureData{Channel: s.Channel, Arch: s.Arch}
	d.Title = fmt.Sprintf("The update graph of %s (%s)", s.Channel, s.Arch)
	// Rows by minor, oldest first; releases by version within a row.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return version.Compare(g.Nodes[a].Version, g.Nodes[b].Version) })
	pos := make([]int, n) // index in version order
	rowOf := map[string]int{}
	col := map[string]int{}
	for _, nd := range g.Nodes {
		col[version.Minor(nd.Version)]++
	}
	longest := 1
	for _, c := range col {
		longest = max(longest, c)
	}
	// Releases 26 px apart, farther in a short graph (up to 64 px, a row
	// of 900 px), so that a few read well and hundreds still fit a page
	// that scrolls.
	dx := min(max(900/longest, 26), 64)
	clear(col)
	width := 0
	d.Nodes = make([]pictureNode, n)
	for p, i := range order {
		pos[i] = p
		v := g.Nodes[i].Version
		minor := version.Minor(v)
		r, ok := rowOf[minor]
		if !ok {
			r = len(d.Rows)
			rowOf[minor] = r
			d.Rows = append(d.Rows, pictureRow{Minor: minor, Y: top + r*rowHeight + rowHeight/2})
		}
		x := left + col[minor]*dx
		col[minor]++
		width = max(width, x+dx)
		rd := s.Releases[i]
		title := fmt.Sprintf("%s: drivers %s", v, rd.State)
		for _, risk := range rd.Risks {
			title += "\n" + risk.Message
		}
		node := pictureNode{Version: v, Label: strings.TrimPrefix(v, minor+"."), State: rd.State, Colour: stateColour[rd.State],
			Title: title, X: x, Y: d.Rows[r].Y, From: opts.From != "" && canonical(v) == canonical(opts.From)}
		if dx >= 48 {
			node.Label = v
		}
		if opts.Href != nil {
			node.Href = opts.Href(v)
		}
		d.Nodes[i] = node
	}
	d.Width, d.Height = max(width+left, 480), top+len(d.Rows)*rowHeight+8

	// Every update, with its risks: dtkbot's (drivers) or the upstream's.
	type update struct {
		from, to int
		ours     bool
		names    []string
	}
	at := map[string]int{}
	for i, node := range g.Nodes {
		if _, ok := at[canonical(node.Version)]; !ok {
			at[canonical(node.Version)] = i
		}
	}
	updates := map[[2]int]*update{}
	var keys [][2]int
	add := func(from, to int) *update {
		k := [2]int{from, to}
		if u, ok := updates[k]; ok {
			return u
		}
		u := &update{from: from, to: to}
		updates[k] = u
		keys = append(keys, k)
		return u
	}
	for _, e := range g.Edges {
		add(e[0], e[1])
	}
	for _, c := range g.ConditionalEdges {
		var names []string
		for _, raw := range c.Risks {
			var r struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(raw, &r)
			names = append(names, r.Name)
		}
		for _, e := range c.Edges {
			from, ok1 := at[e.From] // as the CVO compares them
			to, ok2 := at[e.To]
			if !ok1 || !ok2 {
				continue
			}
			u := add(from, to)
			u.names = append(u.names, names...)
			u.ours = u.ours || len(s.Releases[to].Risks) > 0
		}
	}
	var shown [][2]int
	if opts.From != "" {
		for _, k := range keys {
			if d.Nodes[k[0]].From {
				shown = append(shown, k)
			}
		}
	} else {
		shown = reduce(keys, pos, n)
	}
	for _, k := range shown {
		u := updates[k]
		a, b := d.Nodes[u.from], d.Nodes[u.to]
		e := pictureEdge{From: a.Version, To: b.Version, Path: arc(a, b), Colour: safeColour, Width: 1.2,
			Title: fmt.Sprintf("%s → %s: recommended", a.Version, b.Version)}
		switch {
		case u.ours:
			e.Colour, e.Dash, e.Width, e.Risk = stateColour[Blocked], "5 3", 1.8, "dtkbot"
		case len(u.names) > 0:
			e.Colour, e.Dash, e.Width, e.Risk = upstreamColour, "1.5 2.5", 1.6, "upstream"
		}
		if len(u.names) > 0 {
			e.Title = fmt.Sprintf("%s → %s: not recommended: %s", a.Version, b.Version, strings.Join(u.names, ", "))
		}
		d.Edges = append(d.Edges, e)
	}
	shownHow := "arrows: the updates that skip no release reachable another way"
	if opts.From != "" {
		shownHow = "arrows: every update from " + opts.From
	}
	d.Description = fmt.Sprintf("%d releases, a row per minor, older to newer from left to right; %d updates (%s); a release is coloured by its drivers' readiness.",
		n, len(keys), shownHow)
	// The legend: the releases' colours on one row, the arrows' dashes on
	// a second, so that it fits the narrowest picture (480 px).
	x := left
	for _, st := range States {
		d.Legend = append(d.Legend, legendItem{Label: "drivers " + st, Colour: stateColour[st], X: x, Y: 18})
		x += 132
	}
	d.Legend = append(d.Legend, legendItem{Label: "drivers not ready", Colour: stateColour[Blocked], Dash: "5 3", X: left, Y: 40, Line: true},
		legendItem{Label: "an upstream risk only", Colour: upstreamColour, Dash: "1.5 2.5", X: left + 190, Y: 40, Line: true})
	d.Width = max(d.Width, x)
	var buf bytes.Buffer
	if err := picture.Execute(&buf, d); err != nil {
		return template.HTML(template.HTMLEscapeString("drawing the update graph: " + err.Error()))
	}
	return template.HTML(buf.String()) // every value escaped by html/template
}

// arc is an arrow's path between two releases: above the row within a
// minor, higher the farther apart; a curve between rows.
func arc(a, b pictureNode) string {
	if a.Y == b.Y {
		h := min(12+abs(b.X-a.X)/8, rowHeight/2-10)
		return fmt.Sprintf("M%d %d Q%d %d %d %d", a.X, a.Y-7, (a.X+b.X)/2, a.Y-7-2*h, b.X, b.Y-7)
	}
	my := (a.Y + b.Y) / 2
	return fmt.Sprintf("M%d %d C%d %d %d %d %d %d", a.X, a.Y+7, a.X, my, b.X, my, b.X, b.Y-7)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// reduce keeps the updates that skip no release reachable along other
// updates (the transitive reduction): a graph where every release leads to
// every later one draws as a chain. Updates against version order are
// kept as they are.
func reduce(keys [][2]int, pos []int, n int) [][2]int {
	words := (n + 63) / 64
	succ := make([][]int, n)
	for _, k := range keys {
		if pos[k[1]] > pos[k[0]] {
			succ[k[0]] = append(succ[k[0]], k[1])
		}
	}
	byPos := make([]int, n)
	for i, p := range pos {
		byPos[p] = i
	}
	reach := make([][]uint64, n) // releases reachable from each, itself not included
	via := make([][]uint64, n)   // reachable from its successors
	for p := n - 1; p >= 0; p-- {
		u := byPos[p]
		reach[u], via[u] = make([]uint64, words), make([]uint64, words)
		for _, v := range succ[u] {
			for w := range words {
				via[u][w] |= reach[v][w]
			}
		}
		copy(reach[u], via[u])
		for _, v := range succ[u] {
			reach[u][v/64] |= 1 << (v % 64)
		}
	}
	var out [][2]int
	for _, k := range keys {
		if pos[k[1]] > pos[k[0]] && via[k[0]][k[1]/64]&(1<<(k[1]%64)) != 0 {
			continue
		}
		out = append(out, k)
	}
	return out
}
