package builder

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"os"
	"strings"
)

// SecretValues implements SecretHolder: the RHSM organisation and
// activation key, and the credentials of the auth file.
func (b *CommandBuilder) SecretValues(context.Context) []string {
	var out []string
	for _, f := range []string{b.RHSMOrgFile, b.RHSMActivationKeyFile} {
		if f == "" {
			continue
		}
		if data, err := os.ReadFile(f); err == nil {
			out = append(out, strings.TrimSpace(string(data)))
		}
	}
	if b.AuthFile != "" {
		if data, err := os.ReadFile(b.AuthFile); err == nil {
			out = append(out, DockerCredentials(data)...)
		}
	}
	return out
}

// SecretValues implements SecretHolder: the signing secret, and what of
// the URL may be a token (its path, its query's values, its password).
func (b *WebhookBuilder) SecretValues(context.Context) []string {
	out := []string{string(b.Secret)}
	return append(out, urlSecrets(b.URL)...)
}

// urlSecrets are the parts of u that may be tokens: the path whole and
// each long segment of it, the query's values, the user's password.
func urlSecrets(u string) []string {
	p, err := url.Parse(u)
	if err != nil {
		return nil
	}
	var out []string
	if path := strings.Trim(p.EscapedPath(), "/"); path != "" {
		out = append(out, path, p.Path)
		for _, seg := range strings.Split(path, "/") {
			if len(seg) >= 8 {
				out = append(out, seg)
			}
		}
	}
	for _, vs := range p.Query() {
		out = append(out, vs...)
	}
	if pw, ok := p.User.Password(); ok {
		out = append(out, pw)
	}
	return out
}

// SecretValues implements SecretHolder: the token the dispatch sends.
func (b *ActionsBuilder) SecretValues(context.Context) []string {
	if b.Token == nil {
		return nil
	}
	if tok, err := b.Token(); err == nil {
		return []string{tok}
	}
	return nil
}

// DockerCredentials are the secrets of a docker config.json (an auth file,
// a kubernetes.io/dockerconfigjson Secret): each auth (base64 of
// user:password), and the password and tokens on their own.
func DockerCredentials(data []byte) []string {
	var cfg struct {
		Auths map[string]struct {
			Auth          string `json:"auth"`
			Password      string `json:"password"`
			IdentityToken string `json:"identitytoken"`
			RegistryToken string `json:"registrytoken"`
		} `json:"auths"`
	}
	if json.Unmarshal(data, &cfg) != nil {
		return nil
	}
	var out []string
	for _, a := range cfg.Auths {
		out = append(out, a.Auth, a.Password, a.IdentityToken, a.RegistryToken)
		if dec, err := base64.StdEncoding.DecodeString(a.Auth); err == nil {
			if _, pw, ok := strings.Cut(string(dec), ":"); ok {
				out = append(out, pw)
			}
		}
	}
	return out
}
