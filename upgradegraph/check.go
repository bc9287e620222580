package upgradegraph

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dtkbot/dtkbot/redact"
)

// Check is the readiness of the updates from a version: what `dtkbot
// upgrade-check` prints and /api/v1/upgrades serves.
type Check struct {
	Channel  string   `json:"channel"`
	Arch     string   `json:"arch"`
	From     string   `json:"from"`
	Upstream Upstream `json:"upstream"`
	Targets  []Target `json:"targets"`
}

// Upstream says how old the upstream graph served is: when the update
// service last answered, and why its last read failed since, if it did.
type Upstream struct {
	ReadAt     time.Time `json:"read_at,omitzero"`
	AgeSeconds *int      `json:"age_seconds,omitempty"`
	Failure    string    `json:"failure,omitempty"`
	FailedAt   time.Time `json:"failed_at,omitzero"`
}

// UpstreamAt is what is known of an upstream graph at now (its failure as
// public text).
func UpstreamAt(readAt time.Time, failure string, failedAt, now time.Time) Upstream {
	out := Upstream{ReadAt: readAt, FailedAt: failedAt, Failure: redact.Text(failure)}
	if !readAt.IsZero() {
		age := int(max(now.Sub(readAt), 0).Seconds())
		out.AgeSeconds = &age
	}
	return out
}

// ErrNotOffered is an update the graph does not offer.
type ErrNotOffered struct{ From, To, Channel, Arch string }

func (e *ErrNotOffered) Error() string {
	return fmt.Sprintf("the update graph of channel %s for arch %s offers no update from %s to %s", e.Channel, e.Arch, e.From, e.To)
}

// Check lists the updates from a version (to, when set: that one only).
func (s *Served) Check(from, to string, up Upstream) (*Check, error) {
	targets, err := s.Targets(from)
	if err != nil {
		return nil, err
	}
	if to != "" {
		var only []Target
		for _, t := range targets {
			if canonical(t.Version) == canonical(to) {
				only = append(only, t)
			}
		}
		if len(only) == 0 {
			return nil, &ErrNotOffered{From: from, To: to, Channel: s.Channel, Arch: s.Arch}
		}
		targets = only
	}
	return &Check{Channel: s.Channel, Arch: s.Arch, From: from, Upstream: up, Targets: targets}, nil
}

// Ready reports whether every update listed has its drivers ready.
func (c *Check) Ready() bool {
	for _, t := range c.Targets {
		if t.Drivers != Ready {
			return false
		}
	}
	return true
}

// WriteTable prints a check for people: a line per update (its drivers,
// whether it is recommended), then what it waits for and the upstream's
// own risks.
func (c *Check) WriteTable(w io.Writer, now time.Time) error {
	read := "never read"
	if !c.Upstream.ReadAt.IsZero() {
		read = "read " + c.Upstream.ReadAt.UTC().Format("2006-01-02 15:04 MST") + " (" + ago(now.Sub(c.Upstream.ReadAt)) + " ago)"
	}
	fmt.Fprintf(w, "Updates from %s in %s (%s), upstream graph %s", c.From, c.Channel, c.Arch, read)
	if c.Upstream.Failure != "" {
		fmt.Fprintf(w, "; its last read failed: %s", c.Upstream.Failure)
	}
	fmt.Fprintln(w)
	if len(c.Targets) == 0 {
		_, err := fmt.Fprintln(w, "No update.")
		return err
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tDRIVERS\tOFFERED")
	for _, t := range c.Targets {
		offered := "recommended"
		if !t.Recommended {
			offered = "not recommended: accept with --allow-not-recommended"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Version, t.Drivers, offered)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, t := range c.Targets {
		var lines []string
		for _, r := range t.Risks {
			if r.Source == "dtkbot" {
				lines = append(lines, fmt.Sprintf("  waits: %s %s", r.Message, r.URL))
			}
		}
		for _, r := range t.Risks {
			if r.Source != "dtkbot" {
				lines = append(lines, fmt.Sprintf("  upstream risk %s (%s): %s %s", r.Name, strings.Join(r.Rules, ", "), r.Message, r.URL))
			}
		}
		if len(lines) > 0 {
			fmt.Fprintf(w, "\n%s:\n%s\n", t.Version, strings.Join(lines, "\n"))
		}
	}
	return nil
}

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "less than a minute"
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}
