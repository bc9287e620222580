// Package version checks the shape of, orders and classifies OpenShift
// release versions: GA releases (4.16.15), candidates (4.17.0-ec.3,
// 4.17.0-fc.1, 4.17.0-rc.10), nightlies and CI builds
// (4.17.0-0.nightly-2024-06-01-123456). Versions are semantic versions,
// compared with github.com/blang/semver (numeric pre-release identifiers
// numerically: rc.9 before rc.10; a nightly, whose pre-release starts with
// 0, before ec, ec before fc, fc before rc, rc before the release), so
// every sort, every "newest" and every floating tag agrees. It orders
// kernel versions as rpm does, too (CompareKernel).
//
// It never reads the network or a clock.
package version

import (
	"regexp"
	"strings"
	"sync"

	"github.com/blang/semver/v4"
)

// Kinds of releases (Kind).
const (
	KindGA      = "ga"      // 4.16.15
	KindRC      = "rc"      // 4.17.0-rc.2: release candidates
	KindEC      = "ec"      // 4.17.0-ec.3: engineering candidates
	KindFC      = "fc"      // 4.17.0-fc.1: feature candidates
	KindNightly = "nightly" // 4.17.0-0.nightly-2024-06-01-123456
	KindCI      = "ci"      // 4.17.0-0.ci-2024-06-01-123456
	KindOther   = "other"   // any other pre-release
)

// parsed caches parses: versions are compared on every sort, and a state
// holds a few thousand distinct ones at most.
var parsed sync.Map // string -> parseResult

type parseResult struct {
	v  semver.Version
	ok bool
}

func parse(s string) (semver.Version, bool) {
	if r, ok := parsed.Load(s); ok {
		p := r.(parseResult)
		return p.v, p.ok
	}
	v, err := semver.ParseTolerant(s)
	r := parseResult{v: v, ok: err == nil}
	parsed.Store(s, r)
	return r.v, r.ok
}

// Compare orders OpenShift versions (-1, 0, +1): 4.9.0 < 4.10.0 <
// 4.10.1, 4.17.0-rc.9 < 4.17.0-rc.10 < 4.17.0. Empty sorts last; a string
// that is no version sorts after every version, in byte order.
func Compare(a, b string) int {
	if a == b {
		return 0
	}
	if a == "" {
		return 1
	}
	if b == "" {
		return -1
	}
	va, oka := parse(a)
	vb, okb := parse(b)
	switch {
	case oka && okb:
		if c := va.Compare(vb); c != 0 {
			return c
		}
		return strings.Compare(a, b) // equal precedence ("4.16" and "4.16.0"): keep a total order
	case oka:
		return -1
	case okb:
		return 1
	}
	return strings.Compare(a, b)
}

// Newer reports whether a is a later version than b.
func Newer(a, b string) bool { return Compare(a, b) > 0 }

// Minor is "4.16" for "4.16.15" (and for "4.16.0-rc.1").
func Minor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

// Kind says what a release version is: GA, a candidate, a nightly.
func Kind(v string) string {
	core, pre, ok := strings.Cut(strings.SplitN(v, "+", 2)[0], "-")
	switch {
	case core == "":
		return ""
	case !ok:
		return KindGA
	case strings.HasPrefix(pre, "rc."):
		return KindRC
	case strings.HasPrefix(pre, "ec."):
		return KindEC
	case strings.HasPrefix(pre, "fc."):
		return KindFC
	case strings.Contains(pre, "nightly"):
		return KindNightly
	case strings.HasPrefix(pre, "0.ci") || strings.Contains(pre, ".ci-"):
		return KindCI
	}
	return KindOther
}

// releasePattern is the shape of a release version: MAJOR.MINOR.PATCH with
// an optional pre-release and build, semver's characters only.
var releasePattern = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$`)

// Valid reports whether v has the shape of a release version as a
// payload's image-references and release-metadata, the update graph and
// release-controllers name one (4.16.15, 4.17.0-rc.1,
// 4.17.0-0.nightly-2024-06-01-123456): what is read from outside is
// checked against it before it names anything.
func Valid(v string) bool { return releasePattern.MatchString(v) }

// IsGA reports whether v is a GA release.
func IsGA(v string) bool { return Kind(v) == KindGA }
