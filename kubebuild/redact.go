package kubebuild

import (
	"encoding/base64"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// A log tail is at most logTailLines lines and logTailMax bytes.
const (
	logTailLines = 20
	logTailMax   = 2000
)

const redacted = "<redacted>"

var (
	urlPattern = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)
	// key=value and key: value pairs whose value is a credential, and
	// HTTP authorization schemes.
	credentialPattern = regexp.MustCompile(`(?i)((?:password|passwd|pass|token|secret|activation[-_]?key|auth|org)["']?\s*[=:]\s*["']?|--(?:password|creds|org|activationkey)[= ]|\b(?:bearer|basic)\s+)[^\s"',&]+`)
	ansiPattern       = regexp.MustCompile("\x1b\\[[0-9;?]*[ -/]*[@-~]")
)

// redact makes a build log safe to show: known secret values (and their
// base64) replaced, URLs cut to scheme and host, credential-looking values
// replaced, control characters dropped, and only the last lines kept.
func redact(log string, secrets []string) string {
	// Longest first, so a secret containing another is replaced whole.
	var known []string
	for _, s := range secrets {
		if len(s) >= 4 {
			known = append(known, s, base64.StdEncoding.EncodeToString([]byte(s)))
		}
	}
	sort.Slice(known, func(i, j int) bool { return len(known[i]) > len(known[j]) })
	for _, s := range known {
		log = strings.ReplaceAll(log, s, redacted)
	}
	log = ansiPattern.ReplaceAllString(log, "")
	log = urlPattern.ReplaceAllStringFunc(log, func(u string) string {
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
	log = credentialPattern.ReplaceAllString(log, "${1}"+redacted)
	log = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || r >= ' ' && r != 0x7f {
			return r
		}
		return -1
	}, log)
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	log = strings.Join(lines, "\n")
	if len(log) > logTailMax {
		log = log[len(log)-logTailMax:]
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
