// Package redact makes text fit for the places dtkbot shows to people who
// may not see its logs: GitHub issues and pull requests, the daemon's
// /status and the coverage page, which are public in many deployments.
// Every URL loses its user info, path, query and fragment (a webhook's
// path and a signed URL's query carry tokens; a host says where to look),
// and long text is cut. What is cut stays in dtkbot's log and its state
// file.
//
// It never sees secrets on purpose: they are kept out of errors at their
// source. This is the second line.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// MaxText is how long a public text may be, in bytes.
const MaxText = 400

var urlPattern = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>()\[\]{}]+`)

// URL is u reduced to scheme://host[:port]; text that does not parse as a
// URL with a host becomes "<url>".
func URL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "<url>"
	}
	return p.Scheme + "://" + p.Host
}

// Query is u without its query, fragment and user info, where tokens hide,
// but with its path: for dtkbot's own log, which may say which endpoint.
func Query(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	if at := strings.Index(u, "@"); at >= 0 {
		if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
			u = u[:scheme+3] + u[at+1:]
		}
	}
	return u
}

// Text is s with every URL reduced to its scheme and host, on one line,
// at most MaxText bytes (cut at a rune boundary, with "…").
func Text(s string) string {
	s = urlPattern.ReplaceAllStringFunc(s, func(u string) string {
		trimmed := strings.TrimRight(u, ".,;:!?")
		return URL(trimmed) + u[len(trimmed):]
	})
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= MaxText {
		return s
	}
	cut := MaxText
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Log is s with every URL reduced as Text does, its lines kept, at most
// max bytes (the last ones: a build's log says what went wrong at the end).
func Log(s string, max int) string {
	s = urlPattern.ReplaceAllStringFunc(s, func(u string) string {
		trimmed := strings.TrimRight(u, ".,;:!?")
		return URL(trimmed) + u[len(trimmed):]
	})
	if len(s) <= max {
		return s
	}
	start := len(s) - max
	for start < len(s) && !utf8Start(s[start]) {
		start++
	}
	return "…" + s[start:]
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
