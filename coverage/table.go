package coverage

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/dtkbot/dtkbot/ledger"
)

// WriteTable prints the releases for a terminal: one row per stream; then,
// with consumers, their images per kernel variant (VariantCounts) and how
// many streams are covered.
func WriteTable(w io.Writer, ix *Index, f Filter) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tARCH\tSTREAM\tKERNEL\tRT KERNEL\tRHEL\tRHCOS\tSTATE\tIMAGE / REASON")
	shown := 0
	for _, r := range ix.Releases {
		if !f.Match(r) {
			continue
		}
		shown++
		if len(r.Streams) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t%s\t%s\n", r.Release, r.Arch, r.State, short(r.Reason))
			continue
		}
		for _, s := range r.Streams {
			detail := s.Image
			if s.State != StatePromoted && s.Reason != "" {
				detail = s.Reason
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Release, r.Arch, s.Stream, dash(s.KernelFull), dash(s.RTKernel),
				dash(s.RHELVersion), dash(s.RHCOSVersion), s.State, short(dash(detail)))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "\n%d of %d releases\n", shown, len(ix.Releases)); err != nil {
		return err
	}
	counts := ix.VariantCounts(f)
	if len(counts) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONSUMER\tVARIANT\tPROMOTED\tWANTED\tOTHERS")
	for _, c := range counts {
		var others []string
		for _, st := range States {
			if n := c.States[st]; n > 0 && st != StatePromoted {
				others = append(others, fmt.Sprintf("%d %s", n, st))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", c.Consumer, c.Variant, c.Promoted, c.Wanted, dash(strings.Join(others, ", ")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	covered, streams := ix.CoveredStreams(f)
	_, err := fmt.Fprintf(w, "\n%d of %d streams covered (their DTK and every consumer's image of every variant it asks for promoted)\n", covered, streams)
	return err
}

// VariantCount is how many of one consumer's images of one kernel variant
// the releases shown want (one per kernel: a kernel shipped by several
// releases counts once), how many are promoted, and all of them by state.
type VariantCount struct {
	Consumer string         `json:"consumer"`
	Variant  string         `json:"variant"`
	Wanted   int            `json:"wanted"`
	Promoted int            `json:"promoted"`
	States   map[string]int `json:"states"`
}

// VariantCounts counts the consumers' images of the kernels the releases
// matching f ship, per consumer and kernel variant (default, rt, 64k, in
// that order), those wanted and not built (pending, missing) too.
func (ix *Index) VariantCounts(f Filter) []VariantCount {
	seen := map[string]bool{}
	var out []VariantCount
	for _, r := range ix.Releases {
		if !f.Match(r) {
			continue
		}
		for _, s := range r.Streams {
			key := s.Stream + "/" + r.Arch + "/" + s.Kernel
			if s.Kernel == "" || seen[key] {
				continue
			}
			seen[key] = true
			for _, c := range s.Consumers {
				i := slices.IndexFunc(out, func(v VariantCount) bool { return v.Consumer == c.Consumer && v.Variant == c.Variant })
				if i < 0 {
					out = append(out, VariantCount{Consumer: c.Consumer, Variant: c.Variant, States: map[string]int{}})
					i = len(out) - 1
				}
				out[i].Wanted++
				out[i].States[c.State]++
				if c.State == StatePromoted {
					out[i].Promoted++
				}
			}
		}
	}
	slices.SortStableFunc(out, func(a, b VariantCount) int {
		if c := strings.Compare(a.Consumer, b.Consumer); c != 0 {
			return c
		}
		return slices.Index(ledger.VariantNames, a.Variant) - slices.Index(ledger.VariantNames, b.Variant)
	})
	return out
}

// CoveredStreams counts the streams of the releases matching f whose
// kernel is known, and of those the covered ones (Stream.Covered).
func (ix *Index) CoveredStreams(f Filter) (covered, streams int) {
	for _, r := range ix.Releases {
		if !f.Match(r) {
			continue
		}
		for _, s := range r.Streams {
			if s.Kernel == "" {
				continue
			}
			streams++
			if s.Covered {
				covered++
			}
		}
	}
	return covered, streams
}

func short(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 100 {
		return s[:97] + "..."
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
