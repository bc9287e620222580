package coverage

import (
	"strings"
	"testing"
	"time"
)

func TestSpanAndLead(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0 s", 400 * time.Millisecond: "0.4 s", 3 * time.Second: "3 s", 45 * time.Second: "45 s",
		12 * time.Minute: "12 min", 5 * time.Hour: "5 h", 47 * time.Hour: "47 h", 72 * time.Hour: "3 days", -72 * time.Hour: "3 days"} {
		if got := Span(d); got != want {
			t.Errorf("Span(%s) = %q, want %q", d, got, want)
		}
	}
	if Lead(-3*24*time.Hour) != "3 days ahead" || Lead(2*time.Hour) != "2 h after" {
		t.Errorf("Lead: %q %q", Lead(-3*24*time.Hour), Lead(2*time.Hour))
	}
}

// TestTimelinePicture: a release whose kernel a candidate shipped a week
// before, its DTK and kmod image promoted before the release was seen,
// and a release whose kmod image was rejected: each row's marks, and its
// figures in the row's title.
func TestTimelinePicture(t *testing.T) {
	seen := now
	rows := []TimelineRow{
		{Release: "4.17.0", Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-500.1.1.el9_5.x86_64", ReleaseSeen: seen,
			KernelSeen: seen.Add(-7 * 24 * time.Hour), DTKPromoted: seen.Add(-6 * 24 * time.Hour), DTKState: StatePromoted,
			Consumers: []TimelineConsumer{{Consumer: "acme-nic", State: StatePromoted, Promoted: seen.Add(-5 * 24 * time.Hour)}}},
		{Release: "4.16.19", Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-427.50.1.el9_4.x86_64", ReleaseSeen: seen,
			KernelSeen: seen, DTKPromoted: seen.Add(2 * time.Hour), DTKState: StatePromoted,
			Consumers: []TimelineConsumer{{Consumer: "acme-nic", State: StateFailed}}},
		{Release: "4.16.20", Stream: "rhel-9", Arch: "amd64", Kernel: "5.14.0-427.55.1.el9_4.x86_64", ReleaseSeen: seen, KernelSeen: seen, DTKState: StateBuilding},
	}
	svg := string(TimelinePicture(rows))
	for _, want := range []string{`<g data-release="4.17.0" data-stream="rhel-9"`, "first seen 7 days ahead; DTK promoted 6 days ahead; acme-nic promoted 5 days ahead",
		"DTK promoted 2 h after; acme-nic failed", `data-mark="kmod-rejected"`, `data-mark="dtk-building"`, `data-mark="kernel-seen"`,
		`data-mark="kmod-promoted"`, "release first seen", "ready before the release"} {
		if !strings.Contains(svg, want) {
			t.Errorf("the picture lacks %q:\n%s", want, svg)
		}
	}
	if strings.Contains(svg, "<script") || strings.Contains(svg, "<style") {
		t.Error("the picture has a script or a style sheet")
	}
	if TimelinePicture(nil) != "" {
		t.Error("a picture of nothing")
	}
}
