package notify

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v88/github"
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

// AppAuth authenticates as a GitHub App installation with
// bradleyfalzon/ghinstallation, the library go-github users (Argo CD among
// them) rely on: it signs the app's JWT (RS256) and buys installation
// tokens, renewed a minute before they expire.
type AppAuth struct {
	APIURL         string
	AppID          int64
	InstallationID int64
	Key            *rsa.PrivateKey
	// Base is the transport under the app's requests (default http.DefaultTransport).
	Base http.RoundTripper

	once sync.Once
	apps *ghinstallation.AppsTransport
	inst *ghinstallation.Transport
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

// apiBase is the API root without its trailing slash, as ghinstallation
// wants it.
func apiBase(apiURL string) string {
	if apiURL == "" {
		return "https://api.github.com"
	}
	return strings.TrimSuffix(apiURL, "/")
}

func (a *AppAuth) transports() {
	a.once.Do(func() {
		base := a.Base
		if base == nil {
			base = http.DefaultTransport
		}
		a.apps = ghinstallation.NewAppsTransportFromPrivateKey(base, a.AppID, a.Key)
		a.apps.BaseURL = apiBase(a.APIURL)
		a.inst = ghinstallation.NewFromAppsTransport(a.apps, a.InstallationID)
	})
}

// Token implements Auth: the installation token.
func (a *AppAuth) Token(ctx context.Context) (string, error) {
	a.transports()
	tok, err := a.inst.Token(ctx)
	if err != nil {
		return "", fmt.Errorf("GitHub App installation %d: %w", a.InstallationID, err)
	}
	return tok, nil
}

// Login implements Auth: the app's bot account, "<slug>[bot]".
func (a *AppAuth) Login(ctx context.Context, _ *github.Client) (string, error) {
	a.transports()
	api := apiBase(a.APIURL) + "/"
	gh, err := github.NewClient(github.WithHTTPClient(&http.Client{Timeout: 30 * time.Second, Transport: a.apps}), github.WithURLs(&api, &api))
	if err != nil {
		return "", err
	}
	app, _, err := gh.Apps.Get(ctx, "")
	if err != nil {
		return "", fmt.Errorf("asking GitHub which app this is: %w", err)
	}
	if app.GetSlug() == "" {
		return "", errors.New("GitHub App: the app has no slug")
	}
	return app.GetSlug() + "[bot]", nil
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
	return NewClientWith(apiURL, auth, http.DefaultTransport)
}

// NewClientWith is NewClient sending its requests with base (a
// breaker.Transport, so a pass stops asking a GitHub that does not answer).
func NewClientWith(apiURL string, auth Auth, base http.RoundTripper) (*github.Client, error) {
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
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &transport{auth: auth, host: u.Host, base: base}}
	return github.NewClient(github.WithHTTPClient(hc), github.WithURLs(&apiURL, &apiURL), github.WithUserAgent("dtkbot"))
}
