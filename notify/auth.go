package notify

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-github/v57/github"
)

// Auth supplies GitHub credentials. Tokens live in memory only and never
// appear in an error or a log line.
type Auth interface {
	// Token is the bearer token for the next request.
	Token(ctx context.Context) (string, error)
	// Login is the account issues are created by (a user, or "<app>[bot]").
	Login(ctx context.Context, gh *github.Client) (string, error)
}

// TokenAuth is a personal access token or an Actions token, read from a
// file each time (so a rotated file is picked up) or from an environment
// variable.
type TokenAuth struct {
	File string // wins over Env
	Env  string // GITHUB_TOKEN by default
}

// Token implements Auth.
func (t TokenAuth) Token(context.Context) (string, error) {
	if t.File != "" {
		b, err := os.ReadFile(t.File)
		if err != nil {
			return "", fmt.Errorf("reading the GitHub token: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("the GitHub token file %s is empty", t.File)
		}
		return tok, nil
	}
	env := t.Env
	if env == "" {
		env = "GITHUB_TOKEN"
	}
	if tok := os.Getenv(env); tok != "" {
		return tok, nil
	}
	return "", fmt.Errorf("no GitHub token: set github.token_file or $%s", env)
}

// Login implements Auth: the token's user.
func (t TokenAuth) Login(ctx context.Context, gh *github.Client) (string, error) {
	u, _, err := gh.Users.Get(ctx, "")
	if err != nil {
		return "", fmt.Errorf("asking GitHub who the token belongs to: %w", err)
	}
	return u.GetLogin(), nil
}

// AppAuth authenticates as a GitHub App installation: a JWT signed with the
// app's private key buys an installation token, kept until five minutes
// before it expires.
type AppAuth struct {
	APIURL         string
	AppID          int64
	InstallationID int64
	Key            *rsa.PrivateKey
	HTTP           *http.Client

	mu      sync.Mutex
	token   string
	expires time.Time
}

// LoadAppKey reads a PEM private key (PKCS#1 or PKCS#8).
func LoadAppKey(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the GitHub App key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("the GitHub App key %s is not PEM", path)
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the GitHub App key %s: %w", path, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the GitHub App key %s is not an RSA key", path)
	}
	return rk, nil
}

// jwt is the app's short-lived JSON Web Token (RS256).
func (a *AppAuth) jwt(now time.Time) (string, error) {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]any{"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(9 * time.Minute).Unix(), "iss": strconv.FormatInt(a.AppID, 10)})
	signing := header + "." + enc.EncodeToString(claims)
	h := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, a.Key, crypto.SHA256, h[:])
	if err != nil {
		return "", err
	}
	return signing + "." + enc.EncodeToString(sig), nil
}

func (a *AppAuth) appRequest(ctx context.Context, method, path string, out any) error {
	jwt, err := a.jwt(time.Now())
	if err != nil {
		return err
	}
	u := strings.TrimSuffix(a.APIURL, "/") + path
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+jwt)
	req.Header.Set("Accept", "application/vnd.github+json")
	hc := a.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("GitHub App %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e struct{ Message string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("GitHub App %s %s: HTTP %d: %s", method, path, resp.StatusCode, e.Message)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Token implements Auth.
func (a *AppAuth) Token(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token != "" && time.Until(a.expires) > 5*time.Minute {
		return a.token, nil
	}
	var out struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := a.appRequest(ctx, http.MethodPost, fmt.Sprintf("/app/installations/%d/access_tokens", a.InstallationID), &out); err != nil {
		return "", err
	}
	if out.Token == "" {
		return "", errors.New("GitHub App: no installation token in the answer")
	}
	a.token, a.expires = out.Token, out.ExpiresAt
	return a.token, nil
}

// Login implements Auth: the app's bot account.
func (a *AppAuth) Login(ctx context.Context, _ *github.Client) (string, error) {
	var out struct {
		Slug string `json:"slug"`
	}
	if err := a.appRequest(ctx, http.MethodGet, "/app", &out); err != nil {
		return "", err
	}
	return out.Slug + "[bot]", nil
}

// transport adds the bearer token to requests for the API host only.
type transport struct {
	auth Auth
	host string
	base http.RoundTripper
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != t.host {
		return t.base.RoundTrip(r) // never send the token elsewhere (redirects to storage)
	}
	tok, err := t.auth.Token(r.Context())
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	r.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	return t.base.RoundTrip(r)
}

// NewClient returns a go-github client for apiURL (https://api.github.com,
// or a GitHub Enterprise https://HOST/api/v3) authenticated by auth.
func NewClient(apiURL string, auth Auth) (*github.Client, error) {
	if apiURL == "" {
		apiURL = "https://api.github.com/"
	}
	if !strings.HasSuffix(apiURL, "/") {
		apiURL += "/"
	}
	u, err := url.Parse(apiURL)
	if err != nil {
		return nil, fmt.Errorf("github.api_url: %w", err)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &transport{auth: auth, host: u.Host, base: http.DefaultTransport}}
	gh := github.NewClient(hc)
	gh.BaseURL = u
	gh.UploadURL = u
	gh.UserAgent = "dtkbot"
	return gh, nil
}
