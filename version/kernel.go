package version

import (
	"strings"
)

// CompareKernel orders kernel versions (VERSION-RELEASE, as RPM names
// them: 5.14.0-427.9.1.el9_4) as rpm does (rpmvercmp in rpm's
// rpmio/rpmvercmp.c): each of version and release is split into runs of
// digits and runs of letters, everything else separating them; digit runs
// compare as numbers (427.9 < 427.10), letter runs as bytes, a digit run
// is newer than a letter run, and with every run equal the string with
// runs left over is newer. (The tilde and caret rules of rpm ≥ 4.10 and
// 4.15 do not occur in RHEL kernel versions.) It returns -1, 0 or +1.
func CompareKernel(a, b string) int {
	av, ar, _ := strings.Cut(a, "-")
	bv, br, _ := strings.Cut(b, "-")
	if c := rpmvercmp(av, bv); c != 0 {
		return c
	}
	return rpmvercmp(ar, br)
}

func rpmvercmp(a, b string) int {
	for {
		a = strings.TrimLeftFunc(a, notAlnum)
		b = strings.TrimLeftFunc(b, notAlnum)
		if a == "" || b == "" {
			break
		}
		var sa, sb string
		numeric := isDigit(a[0])
		if numeric {
			sa, a = span(a, isDigit)
			sb, b = span(b, isDigit)
		} else {
			sa, a = span(a, isAlpha)
			sb, b = span(b, isAlpha)
		}
		if sb == "" {
			// The runs differ in kind: a digit run is newer.
			if numeric {
				return 1
			}
			return -1
		}
		if numeric {
			sa, sb = strings.TrimLeft(sa, "0"), strings.TrimLeft(sb, "0")
			if len(sa) != len(sb) {
				if len(sa) > len(sb) {
					return 1
				}
				return -1
			}
		}
		if c := strings.Compare(sa, sb); c != 0 {
			return c
		}
	}
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return -1
	default:
		return 1
	}
}

func span(s string, in func(byte) bool) (run, rest string) {
	i := 0
	for i < len(s) && in(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool  { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func notAlnum(r rune) bool { return r > 0x7f || !isDigit(byte(r)) && !isAlpha(byte(r)) }
