package registry

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.podman.io/image/v5/pkg/docker/config"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/pkg/tlsclientconfig"
	"go.podman.io/image/v5/types"
)

// session speaks the distribution protocol's auth handshake for the calls
// containers/image has no API for (deleting a tag): one ping per registry
// host, one bearer token per (host, repository, actions) kept until it
// expires, credentials from the same auth.json containers/image reads.
//
// containers/image keeps pings and tokens per image source, and offers no
// call that deletes a tag without deleting the manifest behind it (its
// DeleteImage resolves the tag and deletes by digest, which would take the
// kernel tag with it): hence this small client.
type session struct {
	sys *types.SystemContext

	mu    sync.Mutex
	hosts map[string]*hostSession
}

// hostSession is what one registry host told us.
type hostSession struct {
	once      sync.Once
	err       error
	scheme    string // https, or http for an insecure registry
	client    *http.Client
	challenge challenge
	auth      types.DockerAuthConfig

	mu     sync.Mutex
	tokens map[string]bearerToken // by scope
}

// challenge is a WWW-Authenticate header of the ping.
type challenge struct {
	scheme string // "bearer", "basic", or "" (no auth)
	params map[string]string
}

type bearerToken struct {
	token   string
	expires time.Time
}

func newSession(sys *types.SystemContext) *session {
	return &session{sys: sys, hosts: map[string]*hostSession{}}
}

// host returns the host's session, pinging it the first time.
func (s *session) host(ctx context.Context, host string) (*hostSession, error) {
	s.mu.Lock()
	h, ok := s.hosts[host]
	if !ok {
		h = &hostSession{tokens: map[string]bearerToken{}}
		s.hosts[host] = h
	}
	s.mu.Unlock()
	h.once.Do(func() { h.err = h.ping(ctx, s.sys, host) })
	if h.err != nil {
		// A failed ping is forgotten: the next call tries again.
		s.mu.Lock()
		if s.hosts[host] == h {
			delete(s.hosts, host)
		}
		s.mu.Unlock()
	}
	return h, h.err
}

// insecure reports whether host may be reached without TLS verification
// (--tls-verify=false, or insecure in registries.conf).
func insecure(sys *types.SystemContext, host string) bool {
	if sys.DockerInsecureSkipTLSVerify == types.OptionalBoolTrue {
		return true
	}
	reg, err := sysregistriesv2.FindRegistry(sys, host)
	return err == nil && reg != nil && reg.Insecure
}

// certDir finds host's client certificates as containers/image does.
func certDir(sys *types.SystemContext, host string) string {
	if sys.DockerCertPath != "" {
		return sys.DockerCertPath
	}
	dirs := []string{"/etc/containers/certs.d", "/etc/docker/certs.d"}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append([]string{filepath.Join(home, ".config/containers/certs.d")}, dirs...)
	}
	for _, d := range dirs {
		if fi, err := os.Stat(filepath.Join(d, host)); err == nil && fi.IsDir() {
			return filepath.Join(d, host)
		}
	}
	return ""
}

func (h *hostSession) ping(ctx context.Context, sys *types.SystemContext, host string) error {
	skip := insecure(sys, host)
	tlsConfig := &tls.Config{InsecureSkipVerify: skip} //nolint:gosec // only when the user said so
	if dir := certDir(sys, host); dir != "" {
		if err := tlsclientconfig.SetupCertificates(dir, tlsConfig); err != nil {
			return fmt.Errorf("loading certificates of %s: %w", host, err)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConfig
	h.client = &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	auth, err := config.GetCredentials(sys, host)
	if err != nil {
		return fmt.Errorf("reading credentials for %s: %w", host, err)
	}
	h.auth = auth
	try := func(scheme string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+host+"/v2/", nil)
		if err != nil {
			return err
		}
		if sys.DockerRegistryUserAgent != "" {
			req.Header.Set("User-Agent", sys.DockerRegistryUserAgent)
		}
		resp, err := h.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("pinging %s: HTTP %d", host, resp.StatusCode)
		}
		h.scheme = scheme
		h.challenge = parseChallenge(resp.Header.Get("WWW-Authenticate"))
		return nil
	}
	err = try("https")
	if err != nil && skip {
		err = try("http")
	}
	if err != nil {
		return fmt.Errorf("pinging container registry %s: %w", host, err)
	}
	return nil
}

// parseChallenge reads `Bearer realm="...",service="...",scope="..."` or
// `Basic realm="..."`.
func parseChallenge(header string) challenge {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(header), " ")
	c := challenge{scheme: strings.ToLower(scheme), params: map[string]string{}}
	for rest != "" {
		rest = strings.TrimLeft(rest, ", ")
		key, after, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		var value string
		if strings.HasPrefix(after, `"`) {
			end := strings.Index(after[1:], `"`)
			if end < 0 {
				value, rest = after[1:], ""
			} else {
				value, rest = after[1:end+1], after[end+2:]
			}
		} else {
			value, rest, _ = strings.Cut(after, ",")
		}
		c.params[strings.ToLower(strings.TrimSpace(key))] = value
	}
	return c
}

// authorize sets the request's credentials for repo with actions (pull,
// push, delete), fetching a token only when none is cached.
func (h *hostSession) authorize(ctx context.Context, req *http.Request, repo, actions string) error {
	switch h.challenge.scheme {
	case "basic":
		if h.auth.Username != "" {
			req.SetBasicAuth(h.auth.Username, h.auth.Password)
		}
		return nil
	case "bearer":
		tok, err := h.token(ctx, "repository:"+repo+":"+actions)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return nil
}

func (h *hostSession) token(ctx context.Context, scope string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t, ok := h.tokens[scope]; ok && time.Now().Before(t.expires) {
		return t.token, nil
	}
	realm := h.challenge.params["realm"]
	u, err := url.Parse(realm)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return "", fmt.Errorf("the registry's token realm %q is not an http(s) URL", realm)
	}
	q := u.Query()
	if svc := h.challenge.params["service"]; svc != "" {
		q.Set("service", svc)
	}
	q.Set("scope", scope)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	if h.auth.Username != "" {
		req.SetBasicAuth(h.auth.Username, h.auth.Password)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("asking %s for a token: %w", u.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", &StatusError{Status: resp.StatusCode, What: "token for " + scope}
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return "", fmt.Errorf("reading the token for %s: %w", scope, err)
	}
	tok := body.Token
	if tok == "" {
		tok = body.AccessToken
	}
	if tok == "" {
		return "", fmt.Errorf("the token answer for %s holds no token", scope)
	}
	life := time.Duration(body.ExpiresIn) * time.Second
	if life < time.Minute {
		life = time.Minute // the spec's default lifetime
	}
	// Renew a little early so a token never expires in flight.
	h.tokens[scope] = bearerToken{token: tok, expires: time.Now().Add(life - 10*time.Second)}
	return tok, nil
}

// StatusError is a registry answer other than the one wanted.
type StatusError struct {
	Status int
	Code   string // the distribution error code, when the body had one
	What   string
}

func (e *StatusError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s: HTTP %d %s", e.What, e.Status, e.Code)
	}
	return fmt.Sprintf("%s: HTTP %d", e.What, e.Status)
}

// ErrUnsupported is returned by Untag when the registry does not delete
// tags (distribution's UNSUPPORTED, 405, or a 400 refusing a tag).
var ErrUnsupported = errors.New("the registry does not delete tags")

// errorCode reads the first code of a distribution error body.
func errorCode(body []byte) string {
	var e struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Errors) > 0 {
		return e.Errors[0].Code
	}
	return ""
}
