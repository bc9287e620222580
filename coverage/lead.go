package coverage

import (
	"sort"
	"time"
)

// LeadTimes sums up how early DTK images are ready: per kernel, from when
// it was first seen anywhere (a release-controller's candidate, say) to its
// image at its kernel tag, and how long before the first GA release that
// ships it was seen; per release, from first seen to tagged.
type LeadTimes struct {
	KernelsPromoted int `json:"kernels_promoted"`
	// PromotionMedian is the median of first seen → promoted.
	PromotionMedian time.Duration `json:"promotion_median_ns"`
	// KernelsWithGA are promoted kernels some GA release ships;
	// ReadyBeforeGA those promoted before the first such release was seen,
	// and ReadyBeforeGAMedian the median of that lead (negative: after).
	KernelsWithGA       int           `json:"kernels_with_ga"`
	ReadyBeforeGA       int           `json:"ready_before_ga"`
	ReadyBeforeGAMedian time.Duration `json:"ready_before_ga_median_ns"`
	ReleasesTagged      int           `json:"releases_tagged"`
	// TagMedian is the median of a release's first seen → tagged.
	TagMedian time.Duration `json:"tag_median_ns"`
}

// Durations are the lead times themselves, for histograms.
type Durations struct {
	Promotion, ReadyBeforeGA, Tag []time.Duration
}

// Leads measures the index.
func (ix *Index) Leads() (LeadTimes, Durations) {
	var d Durations
	var out LeadTimes
	for _, k := range ix.Kernels {
		if k.PromotedAt.IsZero() {
			continue
		}
		d.Promotion = append(d.Promotion, k.PromotedAt.Sub(k.FirstSeen))
		if k.GAFirstSeen.IsZero() {
			continue
		}
		lead := k.GAFirstSeen.Sub(k.PromotedAt)
		d.ReadyBeforeGA = append(d.ReadyBeforeGA, lead)
		if lead >= 0 {
			out.ReadyBeforeGA++
		}
	}
	for _, r := range ix.Releases {
		if !r.TaggedAt.IsZero() {
			d.Tag = append(d.Tag, r.TaggedAt.Sub(r.FirstSeen))
		}
	}
	out.KernelsPromoted, out.PromotionMedian = len(d.Promotion), median(d.Promotion)
	out.KernelsWithGA, out.ReadyBeforeGAMedian = len(d.ReadyBeforeGA), median(d.ReadyBeforeGA)
	out.ReleasesTagged, out.TagMedian = len(d.Tag), median(d.Tag)
	return out, d
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
