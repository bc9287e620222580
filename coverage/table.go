package coverage

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the releases for a terminal: one row per stream.
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
	_, err := fmt.Fprintf(w, "\n%d of %d releases\n", shown, len(ix.Releases))
	return err
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
