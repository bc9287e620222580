// Package redact makes text fit for the places dtkbot shows to people who
// may not see its logs: GitHub issues and pull requests, the daemon's
// /status and the coverage page, which are public in many deployments.
// Every URL loses its user info, path, query and fragment (a webhook's
// path and a signed URL's query carry tokens; a host says where to look),
// and long text is cut. What is cut stays in dtkbot's log and its state
// file.
//
// It never sees secrets on purpose: they are kept out of errors at their
// source. This is the second line; Log and Output also replace the secret
// values a caller knows (those a build backend hands its builds).
package redact

import (
	"encoding/base64"
	"net/url"
	"regexp"
	"sort"
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
// but with its path: for dtkbot's own log, which may say which endpoint of
// a service whose paths are no secret (a registry, GitHub's API). A URL
// given in the config (a build webhook's) gets URL instead: its path may be
// a token.
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

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// A build's output shown is at most OutputLines lines and OutputMax bytes.
const (
	OutputLines = 20
	OutputMax   = 2000
)

// redacted stands where a secret or a URL's path was.
const redacted = "<redacted>"

var (
	// key=value and key: value pairs whose value is a credential, and
	// HTTP authorization schemes.
	credentialPattern = regexp.MustCompile(`(?i)((?:password|passwd|pass|token|secret|activation[-_]?key|auth|org)["']?\s*[=:]\s*["']?|--(?:password|creds|org|activationkey)[= ]|\b(?:bearer|basic)\s+)[^\s"',&]+`)
	ansiPattern       = regexp.MustCompile("\x1b\\[[0-9;?]*[ -/]*[@-~]")
)

// Log makes what an outside program said (a build's output, a webhook's
// reply, an error quoting either) fit for dtkbot's own log and its state
// file: the known secret values (and their base64) replaced, URLs cut to
// scheme and host (a path or a query where one was: "<redacted>"; a
// webhook's path and a signed URL's query carry tokens),
// credential-looking values (password=, token:, --org, Bearer) replaced,
// control characters other than newlines and tabs dropped. Nothing is cut
// for length.
func Log(s string, secrets []string) string {
	s = Known(s, secrets)
	s = ansiPattern.ReplaceAllString(s, "")
	s = urlPattern.ReplaceAllStringFunc(s, func(u string) string {
		p, err := url.Parse(u)
		if err != nil || p.Host == "" {
			return redacted
		}
		out := p.Scheme + "://" + p.Host
		if (p.Path != "" && p.Path != "/") || p.RawQuery != "" || p.Fragment != "" || p.User != nil {
			out += "/" + redacted
		}
		return out
	})
	s = credentialPattern.ReplaceAllString(s, "${1}"+redacted)
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || r >= ' ' && r != 0x7f {
			return r
		}
		return -1
	}, s)
}

// Known replaces each of the secret values (of at least 4 bytes) and its
// base64 in s: what a caller knows its outside program was given.
func Known(s string, secrets []string) string {
	// Longest first, so a secret containing another is replaced whole.
	var known []string
	for _, v := range secrets {
		if len(v) >= 4 {
			known = append(known, v, base64.StdEncoding.EncodeToString([]byte(v)))
		}
	}
	sort.Slice(known, func(i, j int) bool { return len(known[i]) > len(known[j]) })
	for _, v := range known {
		s = strings.ReplaceAll(s, v, redacted)
	}
	return s
}

// Output makes a build's output (a log tail, a webhook's reply) fit to show:
// Log, then only the last OutputLines lines, at most OutputMax bytes, kept:
// a build says what went wrong at the end.
func Output(log string, secrets []string) string {
	log = Log(log, secrets)
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if len(lines) > OutputLines {
		lines = lines[len(lines)-OutputLines:]
	}
	log = strings.Join(lines, "\n")
	if len(log) > OutputMax {
		log = log[len(log)-OutputMax:]
		// Start at a whole character (and line, if there is one close).
		for i := 0; i < len(log) && i < 4; i++ {
			if log[i]&0xc0 != 0x80 {
				log = log[i:]
				break
			}
		}
		log = "..." + log
	}
	return log
}
