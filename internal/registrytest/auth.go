package registrytest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// grant is what a bearer token allows: actions on repositories, until when.
type grant struct {
	scopes  map[string][]string // repository -> actions
	expires time.Time
}

// RequireBasicAuth makes every request need these credentials (401
// otherwise). Called again, it rotates them: only the new ones are taken.
func (r *Registry) RequireBasicAuth(username, password string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.username, r.password = username, password
}

// RequireBearerAuth makes the registry hand out and require bearer tokens
// as quay.io does: the ping and every unauthorized request answer 401 with a
// Bearer challenge naming the token endpoint (/token on the same host); the
// endpoint checks these credentials (Basic) and grants the scope asked for.
// With an empty username, anonymous token requests are granted too. Called
// again, it rotates the credentials as a regenerated robot token or pull
// secret does: only the new ones get tokens, and tokens handed out before
// are revoked.
func (r *Registry) RequireBearerAuth(username, password string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bearer, r.username, r.password = true, username, password
	r.tokens = map[string]grant{}
}

// clock is the registry's time; mu is held.
func (r *Registry) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

// ttl is the life of a token; mu is held.
func (r *Registry) ttl() time.Duration {
	if r.tokenTTL > 0 {
		return r.tokenTTL
	}
	return 300 * time.Second
}

// serveToken is the bearer realm: GET /token?service=...&scope=repository:R:A.
func (r *Registry) serveToken(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Tokens++
	if r.username != "" {
		u, p, ok := req.BasicAuth()
		if !ok || u != r.username || p != r.password {
			r.stats.Refused++
			writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "invalid username or password")
			return
		}
	}
	g := grant{scopes: map[string][]string{}, expires: r.clock().Add(r.ttl())}
	for _, scope := range req.URL.Query()["scope"] {
		parts := strings.Split(scope, ":")
		if len(parts) != 3 || parts[0] != "repository" {
			writeError(w, http.StatusBadRequest, "DENIED", "bad scope "+scope)
			return
		}
		g.scopes[parts[1]] = append(g.scopes[parts[1]], strings.Split(parts[2], ",")...)
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	tok := hex.EncodeToString(id)
	r.tokens[tok] = g
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "expires_in": int(r.ttl().Seconds()), "issued_at": r.clock().UTC().Format(time.RFC3339)})
}

// authenticate lets req through, or answers 401 with the challenge its
// client needs (the ping always gets one under bearer auth) and counts the
// refusal.
func (r *Registry) authenticate(w http.ResponseWriter, req *http.Request, rt route) bool {
	r.mu.Lock()
	user, pass, bearer, realm := r.username, r.password, r.bearer, r.realm
	authorized, scope := true, ""
	if bearer {
		authorized, scope = r.authorized(req, rt)
	}
	basicOK := true
	if user != "" && !bearer {
		u, p, ok := req.BasicAuth()
		basicOK = ok && u == user && p == pass
	}
	if rt.kind != ping && ((bearer && !authorized) || !basicOK) {
		r.stats.Refused++
	}
	r.mu.Unlock()

	if bearer && (rt.kind == ping || !authorized) {
		if realm == "" {
			scheme := "http"
			if req.TLS != nil {
				scheme = "https"
			}
			realm = scheme + "://" + req.Host + "/token"
		}
		challenge := fmt.Sprintf(`Bearer realm=%q,service="registrytest"`, realm)
		if rt.kind != ping {
			challenge += fmt.Sprintf(`,scope=%q`, scope)
		}
		w.Header().Set("WWW-Authenticate", challenge)
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return false
	}
	if !basicOK {
		w.Header().Set("WWW-Authenticate", `Basic realm="registrytest"`)
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return false
	}
	return true
}

// authorized checks a request's bearer token against the repository and
// action it needs; it reports the scope to name in a challenge. mu is held.
func (r *Registry) authorized(req *http.Request, rt route) (bool, string) {
	action := "pull"
	switch req.Method {
	case http.MethodPut, http.MethodPost, http.MethodPatch:
		action = "push"
	case http.MethodDelete:
		action = "delete"
	}
	return r.allows(req, rt.repo, action), fmt.Sprintf("repository:%s:%s", rt.repo, action)
}

// allows says whether req's bearer token allows action on repo; mu is held.
func (r *Registry) allows(req *http.Request, repo, action string) bool {
	tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	g, ok := r.tokens[tok]
	if !ok || r.clock().After(g.expires) {
		return false
	}
	for _, a := range g.scopes[repo] {
		if a == action || a == "*" {
			return true
		}
	}
	return false
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}
