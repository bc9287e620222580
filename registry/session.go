package registry

import (
	"bytes"
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.podman.io/image/v5/pkg/tlsclientconfig"
	"go.podman.io/image/v5/types"
)

// session is the client's conversation with every registry it reads: one
// ping per registry host (its auth challenge and scheme, kept for the
// client's life), one bearer token per (host, repository, actions), kept
// until shortly before it expires or until the credentials it was obtained
// with change, and one pool of connections per host.
type session struct {
	sys   *types.SystemContext
	conns int // idle connections kept per host: the client's concurrency
	creds *credentialStore

	mu    sync.Mutex
	hosts map[endpoint]*hostSession
	// silent are the hosts that did not answer a call in time, with that
	// call's error: a one-shot client asks them nothing more.
	oneShot bool
	silent  map[string]error

	pings, tokens atomic.Int64
}

// endpoint is a registry host as a pullspec names it (host[:port]).
type endpoint struct {
	host     string
	insecure bool // TLS not verified, plain HTTP allowed
}

// source is one place an image can be read: a registry (or a mirror of it),
// the repository there, and the tag or digest.
type source struct {
	endpoint
	repo string
	ref  string
}

// hostSession is what one registry host told us, and the tokens it gave.
type hostSession struct {
	ready     chan struct{}
	err       error
	scheme    string // https, or http for an insecure registry
	client    *http.Client
	challenge challenge

	mu     sync.Mutex
	tokens map[string]*tokenEntry // by scope
}

// challenge is a WWW-Authenticate header of the ping.
type challenge struct {
	scheme string // "bearer", "basic", or "" (no auth)
	params map[string]string
}

// tokenEntry is a token, or one being fetched (the first asker fetches,
// the others wait for it), with the credentials it was obtained with: once
// the auth file holds others, the token is not used again.
type tokenEntry struct {
	ready   chan struct{}
	expires time.Time
	err     error
	grant   grant
}

// grant is what authorized one request: the credentials (and the read of
// the auth files they come from) and, with bearer auth, the token.
type grant struct {
	auth   types.DockerAuthConfig
	serial uint64
	token  string
}

func newSession(sys *types.SystemContext, conns int) *session {
	return &session{sys: sys, conns: conns, creds: newCredentialStore(sys), hosts: map[endpoint]*hostSession{}, silent: map[string]error{}}
}

// noAnswer notes that host did not answer a call in time (err, when the
// call's own timeout is what ended ctx), for a one-shot client.
func (s *session) noAnswer(ctx context.Context, host string, err error) {
	if !s.oneShot || context.Cause(ctx) != errCallTimeout {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.silent[host]; !ok {
		s.silent[host] = err
	}
}

// silentHost is the error of a host that did not answer in time.
func (s *session) silentHost(host string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err, ok := s.silent[host]; ok {
		return fmt.Errorf("%w: %s did not answer an earlier call in time (%v)", ErrSilent, host, err)
	}
	return nil
}

func (s *session) counts() (pings, tokens int64) { return s.pings.Load(), s.tokens.Load() }

// host returns the host's session, pinging it the first time: concurrent
// callers wait for that one ping. A failed ping is forgotten, so the next
// call tries again.
func (s *session) host(ctx context.Context, ep endpoint) (*hostSession, error) {
	if err := s.silentHost(ep.host); err != nil {
		return nil, err
	}
	s.mu.Lock()
	h, ok := s.hosts[ep]
	if !ok {
		h = &hostSession{ready: make(chan struct{}), tokens: map[string]*tokenEntry{}}
		s.hosts[ep] = h
	}
	s.mu.Unlock()
	if !ok {
		h.err = s.ping(ctx, h, ep)
		if h.err != nil {
			s.mu.Lock()
			delete(s.hosts, ep)
			s.mu.Unlock()
		}
		close(h.ready)
	}
	select {
	case <-h.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if h.err != nil && ok {
		// Another call's ping failed: if the host did not answer it, this
		// call is not sent either.
		if err := s.silentHost(ep.host); err != nil {
			return nil, err
		}
	}
	return h, h.err
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

func (s *session) ping(ctx context.Context, h *hostSession, ep endpoint) error {
	tlsConfig := &tls.Config{InsecureSkipVerify: ep.insecure} //nolint:gosec // only when the user said so
	if dir := certDir(s.sys, ep.host); dir != "" {
		if err := tlsclientconfig.SetupCertificates(dir, tlsConfig); err != nil {
			return fmt.Errorf("loading certificates of %s: %w", ep.host, err)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConfig
	tr.MaxIdleConnsPerHost = s.conns
	tr.ResponseHeaderTimeout = 2 * time.Minute
	h.client = &http.Client{Transport: tr}
	try := func(scheme string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+ep.host+"/v2/", nil)
		if err != nil {
			return err
		}
		s.userAgent(req)
		s.pings.Add(1)
		resp, err := h.client.Do(req)
		if err != nil {
			s.noAnswer(ctx, ep.host, err)
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
			return &StatusError{Status: resp.StatusCode, What: "pinging " + ep.host}
		}
		h.scheme = scheme
		h.challenge = parseChallenge(resp.Header.Get("WWW-Authenticate"))
		return nil
	}
	err := try("https")
	if err != nil && ep.insecure {
		err = try("http")
	}
	if err != nil {
		return fmt.Errorf("pinging container registry %s: %w", ep.host, err)
	}
	return nil
}

func (s *session) userAgent(req *http.Request) {
	if ua := s.sys.DockerRegistryUserAgent; ua != "" {
		req.Header.Set("User-Agent", ua)
	}
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

// send makes one request to src's registry for repo, with the credentials
// its challenge asks for. A 401 gets one more try with the credentials read
// again (a pull secret rotated in a way a stat does not show) and, with
// bearer auth, a fresh token (the old one expired early or was revoked).
// Answers other than 2xx are a *StatusError; the caller closes the body of a
// success.
func (s *session) send(ctx context.Context, ep endpoint, method, path, repo string, header http.Header) (*http.Response, error) {
	return s.sendFor(ctx, ep, method, path, repo, "pull", header)
}

func (s *session) sendFor(ctx context.Context, ep endpoint, method, path, repo, actions string, header http.Header) (*http.Response, error) {
	return s.sendBody(ctx, ep, method, path, repo, actions, header, nil)
}

// sendBody is sendFor with a request body (a manifest PUT), sent again as
// it is on the retry after a 401.
func (s *session) sendBody(ctx context.Context, ep endpoint, method, path, repo, actions string, header http.Header, body []byte) (*http.Response, error) {
	h, err := s.host(ctx, ep)
	if err != nil {
		return nil, err
	}
	what := method + " " + ep.host + path
	for try := 0; ; try++ {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, h.scheme+"://"+ep.host+path, rd)
		if err != nil {
			return nil, err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		s.userAgent(req)
		scope := "repository:" + repo + ":" + actions
		used, err := s.authorize(ctx, h, ep, req, repo, scope)
		if err != nil {
			return nil, err
		}
		resp, err := h.client.Do(req)
		if err != nil {
			s.noAnswer(ctx, ep.host, err)
			return nil, err
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return resp, nil
		}
		se := statusError(resp, what)
		if resp.StatusCode == http.StatusUnauthorized && try == 0 {
			again, err := s.afterRefusal(h, ep, repo, scope, used)
			if err != nil {
				return nil, fmt.Errorf("%w (after %v)", err, se)
			}
			if again {
				continue
			}
		}
		return nil, se
	}
}

// afterRefusal reads the credentials of a refused request again and says
// whether the request is worth one more try: with bearer auth always (a new
// token, fetched once however many requests hit this at once), with basic
// auth when the credentials changed.
func (s *session) afterRefusal(h *hostSession, ep endpoint, repo, scope string, used grant) (bool, error) {
	switch h.challenge.scheme {
	case "bearer":
		h.forget(scope, used.token)
		_, err := s.creds.refresh(ep.host, repo, used)
		return true, err
	case "basic":
		fresh, err := s.creds.refresh(ep.host, repo, used)
		return fresh.auth != used.auth, err
	}
	return false, nil
}

// statusError reads a failed answer (and closes its body).
func statusError(resp *http.Response, what string) *StatusError {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	se := &StatusError{Status: resp.StatusCode, What: what}
	var e struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Errors) > 0 {
		se.Code, se.Message = e.Errors[0].Code, e.Errors[0].Message
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		se.RetryAfter = time.Duration(s) * time.Second
	}
	return se
}

// authorize sets the request's credentials for scope and returns them.
func (s *session) authorize(ctx context.Context, h *hostSession, ep endpoint, req *http.Request, repo, scope string) (grant, error) {
	if h.challenge.scheme != "basic" && h.challenge.scheme != "bearer" {
		return grant{}, nil
	}
	g, err := s.creds.get(ep.host, repo)
	if err != nil {
		return grant{}, err
	}
	if h.challenge.scheme == "basic" {
		if g.auth.Username != "" {
			req.SetBasicAuth(g.auth.Username, g.auth.Password)
		}
		return g, nil
	}
	if g, err = s.token(ctx, h, ep, repo, scope, g); err != nil {
		return grant{}, err
	}
	req.Header.Set("Authorization", "Bearer "+g.token)
	return g, nil
}

// credentialHost is the name credentials are kept under.
func credentialHost(host string) string {
	if host == "registry-1.docker.io" {
		return "docker.io"
	}
	return host
}

// forget drops scope's token if it is still tok (or failed): a newer one,
// fetched meanwhile by another request, stays.
func (h *hostSession) forget(scope, tok string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.tokens[scope]
	if !ok {
		return
	}
	select {
	case <-t.ready:
		if t.err != nil || t.grant.token == tok {
			delete(h.tokens, scope)
		}
	default: // being fetched: that is the new one
	}
}

// token returns a token for scope: the cached one while it lives and the
// credentials are those it was obtained with, else one fetched once however
// many callers ask at the same time.
func (s *session) token(ctx context.Context, h *hostSession, ep endpoint, repo, scope string, creds grant) (grant, error) {
	h.mu.Lock()
	t, ok := h.tokens[scope]
	if ok {
		select {
		case <-t.ready:
			if t.err != nil || time.Now().After(t.expires) || t.grant.auth != creds.auth {
				ok = false
			}
		default: // being fetched: wait below
		}
	}
	if !ok {
		t = &tokenEntry{ready: make(chan struct{})}
		h.tokens[scope] = t
		h.mu.Unlock()
		t.grant, t.expires, t.err = s.fetchToken(ctx, h, ep, repo, scope, creds)
		close(t.ready)
		if t.err != nil {
			h.forget(scope, "")
		}
	} else {
		h.mu.Unlock()
	}
	select {
	case <-t.ready:
	case <-ctx.Done():
		return grant{}, ctx.Err()
	}
	return t.grant, t.err
}

// fetchToken asks the realm for a token with creds. Refused credentials are
// read again, and asked with once more if they changed (a rotated pull
// secret whose file a stat did not see change).
func (s *session) fetchToken(ctx context.Context, h *hostSession, ep endpoint, repo, scope string, creds grant) (grant, time.Time, error) {
	realm := h.challenge.params["realm"]
	u, err := url.Parse(realm)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return grant{}, time.Time{}, permanent(fmt.Errorf("the token realm %q of %s is not an http(s) URL", realm, ep.host))
	}
	if u.Scheme == "http" && !ep.insecure {
		// The token request carries the pull secret: over plain HTTP it would
		// travel in the clear, for a registry reached over verified TLS.
		return grant{}, time.Time{}, permanent(fmt.Errorf("refusing the plain-http token realm %s of %s: the credentials would travel in the clear "+
			"(a registry marked insecure in registries.conf, or registry.tls_verify: false, may use one)", realm, ep.host))
	}
	tok, expires, err := s.requestToken(ctx, h, ep, *u, scope, creds.auth)
	var se *StatusError
	if errors.As(err, &se) && (se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden) {
		fresh, ferr := s.creds.refresh(ep.host, repo, creds)
		if ferr != nil {
			return grant{}, time.Time{}, fmt.Errorf("%w (after %v)", ferr, err)
		}
		if fresh.auth != creds.auth {
			creds = fresh
			tok, expires, err = s.requestToken(ctx, h, ep, *u, scope, creds.auth)
		}
	}
	creds.token = tok
	return creds, expires, err
}

// requestToken makes one token request to the realm u.
func (s *session) requestToken(ctx context.Context, h *hostSession, ep endpoint, u url.URL, scope string, auth types.DockerAuthConfig) (string, time.Time, error) {
	var req *http.Request
	var err error
	if auth.IdentityToken != "" {
		// An OAuth2 refresh token (Azure and others), as containers/image
		// uses one.
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {auth.IdentityToken}, "client_id": {"dtkbot"},
			"service": {h.challenge.params["service"]}, "scope": {scope}}
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		q := u.Query()
		if svc := h.challenge.params["service"]; svc != "" {
			q.Set("service", svc)
		}
		q.Set("scope", scope)
		u.RawQuery = q.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err == nil && auth.Username != "" {
			req.SetBasicAuth(auth.Username, auth.Password)
		}
	}
	if err != nil {
		return "", time.Time{}, err
	}
	s.userAgent(req)
	s.tokens.Add(1)
	resp, err := h.client.Do(req)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("asking %s for a token: %w", u.Host, err)
	}
	if resp.StatusCode != http.StatusOK {
		se := statusError(resp, "asking "+u.Host+" for a token for "+scope)
		if se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden {
			se.Message = "the credentials for " + ep.host + " were refused (registry.authfile: " + strings.Join(s.creds.files(), ", ") + ")"
		}
		return "", time.Time{}, se
	}
	defer resp.Body.Close()
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return "", time.Time{}, fmt.Errorf("reading the token for %s: %w", scope, err)
	}
	tok := body.Token
	if tok == "" {
		tok = body.AccessToken
	}
	if tok == "" {
		return "", time.Time{}, fmt.Errorf("the token answer for %s holds no token", scope)
	}
	life := time.Duration(body.ExpiresIn) * time.Second
	if life < time.Minute {
		life = time.Minute // the distribution spec's default lifetime
	}
	// Renewed a little early, so a token never expires in flight.
	return tok, time.Now().Add(life - 10*time.Second), nil
}

// StatusError is a registry answer other than the one wanted.
type StatusError struct {
	Status int
	// Code and Message are the distribution error of the body, if any.
	Code, Message string
	What          string
	// RetryAfter is what a 429 (or 503) asked to wait.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s: HTTP %d (%s)", e.What, e.Status, strings.ToLower(http.StatusText(e.Status)))
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}
