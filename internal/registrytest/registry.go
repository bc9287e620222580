// Package registrytest is an in-process container registry speaking the OCI
// distribution protocol (the subset containers/image uses), for tests and the
// offline demo. It counts every request and every byte it serves so that tests
// and benchmarks can assert on the cost of an operation, and it lets a test
// intercept requests to inject faults.
//
// It is deliberately small: blobs and manifests live in memory, uploads are
// accepted monolithically or in chunks, cross-repository blob mounts are
// supported (so promotion within one registry can be shown to move no layer
// bytes), and it can require auth as real registries do: Basic, or bearer
// tokens as quay.io hands them out (a 401 with `WWW-Authenticate: Bearer
// realm=...,service=...,scope=...`, a token endpoint that checks the pull
// secret, tokens scoped to a repository and expiring), rotate the accepted
// credentials, serve over TLS and name a token realm elsewhere. Pings and
// token requests are counted apart from the rest, refusals (401) too. It
// never verifies what a test stores with the Unchecked helpers: that is how
// corrupt blobs are planted.
package registrytest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// Stats counts what the registry served. Pings (GET /v2/, the handshake a
// client does before anything else) and token requests are the auth round
// trips, counted apart from Requests.
type Stats struct {
	Requests       int64 // all requests except pings and token requests
	Pings          int64 // GET /v2/
	Tokens         int64 // token requests to the bearer realm
	Refused        int64 // requests and token requests answered 401 (pings not counted)
	ManifestGETs   int64
	ManifestHEADs  int64
	BlobGETs       int64
	BlobHEADs      int64
	BlobUploads    int64 // uploads started (POST without a successful mount)
	BlobMounts     int64 // successful cross-repository mounts
	ManifestPUTs   int64
	TagDeletes     int64 // DELETE of a manifest by tag that removed the tag
	BytesServed    int64 // response body bytes of manifest and blob GETs
	BytesUploaded  int64 // request body bytes of blob uploads
	ByPath         map[string]int64
	BlobBytesByDig map[string]int64
}

// Sub returns s minus earlier, field by field (ByPath maps are not diffed).
func (s Stats) Sub(earlier Stats) Stats {
	return Stats{
		Requests:      s.Requests - earlier.Requests,
		Pings:         s.Pings - earlier.Pings,
		Tokens:        s.Tokens - earlier.Tokens,
		Refused:       s.Refused - earlier.Refused,
		ManifestGETs:  s.ManifestGETs - earlier.ManifestGETs,
		ManifestHEADs: s.ManifestHEADs - earlier.ManifestHEADs,
		BlobGETs:      s.BlobGETs - earlier.BlobGETs,
		BlobHEADs:     s.BlobHEADs - earlier.BlobHEADs,
		BlobUploads:   s.BlobUploads - earlier.BlobUploads,
		BlobMounts:    s.BlobMounts - earlier.BlobMounts,
		ManifestPUTs:  s.ManifestPUTs - earlier.ManifestPUTs,
		TagDeletes:    s.TagDeletes - earlier.TagDeletes,
		BytesServed:   s.BytesServed - earlier.BytesServed,
		BytesUploaded: s.BytesUploaded - earlier.BytesUploaded,
	}
}

type manifestEntry struct {
	body      []byte
	mediaType string
}

type repository struct {
	tags      map[string]digest.Digest
	manifests map[digest.Digest]manifestEntry
	blobs     map[digest.Digest]bool // blobs linked into this repository
}

// Registry is the in-memory registry. The zero value is not usable; call New.
type Registry struct {
	mu      sync.Mutex
	repos   map[string]*repository
	blobs   map[digest.Digest][]byte
	uploads map[string]*upload
	stats   Stats

	// The knobs a test turns, read and written under mu only (through
	// their setters), so that they can change while the registry serves.
	intercept func(w http.ResponseWriter, r *http.Request) bool
	tagDelete TagDelete
	now       func() time.Time
	tokenTTL  time.Duration
	realm     string

	username, password string
	bearer             bool
	tokens             map[string]grant
}

// TagDelete is what a DELETE of a manifest by tag does.
type TagDelete int

const (
	// TagDeleteRemovesTag removes the tag and keeps the manifest (OCI
	// distribution spec v1.1): the default.
	TagDeleteRemovesTag TagDelete = iota
	// TagDeleteRefused answers 405 UNSUPPORTED, as
	// distribution/distribution's registry does.
	TagDeleteRefused
	// TagDeleteTakesManifest deletes the manifest the tag names, and with
	// it every other tag of the repository that names it, as older
	// Harbor and early zot do (and as containers/image's DeleteImage does
	// on purpose).
	TagDeleteTakesManifest
)

// SetIntercept makes f see every request first (nil: none); f returning
// true means it wrote the response and the registry must not. Used for
// fault injection; safe while the registry serves.
func (r *Registry) SetIntercept(f func(w http.ResponseWriter, req *http.Request) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.intercept = f
}

// SetTagDelete says what a DELETE of a manifest by tag does from now on.
func (r *Registry) SetTagDelete(d TagDelete) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tagDelete = d
}

// SetClock sets the registry's clock for token expiry (nil: time.Now).
func (r *Registry) SetClock(now func() time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.now = now
}

// SetTokenTTL sets the life of the bearer tokens handed out from now on
// (0: 300s, quay.io's).
func (r *Registry) SetTokenTTL(ttl time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tokenTTL = ttl
}

// SetRealm sets the token endpoint a Bearer challenge names; empty means
// /token on the host asked, over the scheme asked (https for ServerTLS).
// Set it to serve tokens from elsewhere, such as a plain-http server of the
// same Registry in front of a TLS one.
func (r *Registry) SetRealm(realm string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.realm = realm
}

// Realm is the token endpoint set by SetRealm.
func (r *Registry) Realm() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.realm
}

// grant is what a bearer token allows: actions on repositories, until when.
type grant struct {
	scopes  map[string][]string // repository -> actions
	expires time.Time
}

type upload struct {
	repo string
	data []byte
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{
		repos:   map[string]*repository{},
		blobs:   map[digest.Digest][]byte{},
		uploads: map[string]*upload{},
		stats:   Stats{ByPath: map[string]int64{}, BlobBytesByDig: map[string]int64{}},
	}
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

// ttl is the life of a token; mu is held.
func (r *Registry) ttl() time.Duration {
	if r.tokenTTL > 0 {
		return r.tokenTTL
	}
	return 300 * time.Second
}

// authorized checks a request's bearer token against the repository and
// action it needs; it reports the scope to name in a challenge.
func (r *Registry) authorized(req *http.Request) (bool, string) {
	p := req.URL.Path
	repo := ""
	for _, re := range []*regexp.Regexp{manifestPath, blobPath, uploadStart, uploadPath, tagsPath} {
		if m := re.FindStringSubmatch(p); m != nil {
			repo = m[1]
			break
		}
	}
	action := "pull"
	switch req.Method {
	case http.MethodPut, http.MethodPost, http.MethodPatch:
		action = "push"
	case http.MethodDelete:
		action = "delete"
	}
	scope := fmt.Sprintf("repository:%s:%s", repo, action)
	if q := req.URL.Query(); q.Get("mount") != "" && q.Get("from") != "" {
		// A mount reads the source repository: the token must allow that too.
		if ok, _ := r.allows(req, q.Get("from"), "pull"); !ok {
			return false, scope
		}
	}
	ok, _ := r.allows(req, repo, action)
	return ok, scope
}

func (r *Registry) allows(req *http.Request, repo, action string) (bool, string) {
	tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false, ""
	}
	g, ok := r.tokens[tok]
	if !ok || r.clock().After(g.expires) {
		return false, ""
	}
	for _, a := range g.scopes[repo] {
		if a == action || a == "*" {
			return true, ""
		}
	}
	return false, ""
}

// Server starts the registry on a loopback httptest server; its Host() is the
// registry host for pullspecs. Clients must use plain HTTP (tls-verify=false).
func (r *Registry) Server() *Server {
	return &Server{Registry: r, HTTP: httptest.NewServer(r)}
}

// ServerTLS starts the registry on a loopback httptest server speaking TLS
// with a self-signed certificate (HTTP.Certificate()); clients verify it
// when they trust that certificate, or use tls-verify=false.
func (r *Registry) ServerTLS() *Server {
	return &Server{Registry: r, HTTP: httptest.NewTLSServer(r)}
}

// ServerWith starts the registry behind wrap (a fault injector, say).
func (r *Registry) ServerWith(wrap func(http.Handler) http.Handler) *Server {
	return &Server{Registry: r, HTTP: httptest.NewServer(wrap(r))}
}

// Server is a running registry.
type Server struct {
	*Registry
	HTTP *httptest.Server
}

// Host is host:port, as used in a pullspec.
func (s *Server) Host() string {
	return strings.TrimPrefix(strings.TrimPrefix(s.HTTP.URL, "http://"), "https://")
}

// Close stops the server.
func (s *Server) Close() { s.HTTP.Close() }

// Stats returns a copy of the counters.
func (r *Registry) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.ByPath = map[string]int64{}
	for k, v := range r.stats.ByPath {
		s.ByPath[k] = v
	}
	s.BlobBytesByDig = map[string]int64{}
	for k, v := range r.stats.BlobBytesByDig {
		s.BlobBytesByDig[k] = v
	}
	return s
}

func (r *Registry) repo(name string) *repository {
	rp, ok := r.repos[name]
	if !ok {
		rp = &repository{tags: map[string]digest.Digest{}, manifests: map[digest.Digest]manifestEntry{}, blobs: map[digest.Digest]bool{}}
		r.repos[name] = rp
	}
	return rp
}

// PutBlob stores data in repo and returns its digest.
func (r *Registry) PutBlob(repo string, data []byte) digest.Digest {
	d := digest.FromBytes(data)
	r.PutBlobUnchecked(repo, d, data)
	return d
}

// PutBlobUnchecked stores data under a digest the caller chooses, which need
// not match: the way tests plant a corrupt layer.
func (r *Registry) PutBlobUnchecked(repo string, d digest.Digest, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blobs[d] = data
	r.repo(repo).blobs[d] = true
}

// PutManifest stores a manifest in repo under its digest and, if tag is not
// empty, under tag too.
func (r *Registry) PutManifest(repo, tag, mediaType string, body []byte) digest.Digest {
	d := digest.FromBytes(body)
	r.mu.Lock()
	defer r.mu.Unlock()
	rp := r.repo(repo)
	rp.manifests[d] = manifestEntry{body: body, mediaType: mediaType}
	if tag != "" {
		rp.tags[tag] = d
	}
	return d
}

// DeleteManifest removes a manifest and the tags pointing at it.
func (r *Registry) DeleteManifest(repo string, d digest.Digest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp := r.repo(repo)
	delete(rp.manifests, d)
	for t, td := range rp.tags {
		if td == d {
			delete(rp.tags, t)
		}
	}
}

// DeleteTag removes a tag, keeping the manifest.
func (r *Registry) DeleteTag(repo, tag string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.repo(repo).tags, tag)
}

// Tags lists the tags of repo, sorted.
func (r *Registry) Tags(repo string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp, ok := r.repos[repo]
	if !ok {
		return nil
	}
	var out []string
	for t := range rp.tags {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// TagDigest returns the digest repo:tag points at.
func (r *Registry) TagDigest(repo, tag string) (digest.Digest, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp, ok := r.repos[repo]
	if !ok {
		return "", false
	}
	d, ok := rp.tags[tag]
	return d, ok
}

// Blob returns a stored blob's bytes, for tests that look inside an image
// without a client.
func (r *Registry) Blob(d digest.Digest) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.blobs[d]
	return b, ok
}

// Manifest returns a stored manifest by repo and tag or digest.
func (r *Registry) Manifest(repo, ref string) ([]byte, string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp, ok := r.repos[repo]
	if !ok {
		return nil, "", false
	}
	e, ok := rp.lookup(ref)
	return e.body, e.mediaType, ok
}

func (rp *repository) lookup(ref string) (manifestEntry, bool) {
	d := digest.Digest(ref)
	if d.Validate() != nil {
		var ok bool
		if d, ok = rp.tags[ref]; !ok {
			return manifestEntry{}, false
		}
	}
	e, ok := rp.manifests[d]
	return e, ok
}

var (
	manifestPath = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)
	blobPath     = regexp.MustCompile(`^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$`)
	uploadStart  = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/?$`)
	uploadPath   = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/([0-9a-f]+)$`)
	tagsPath     = regexp.MustCompile(`^/v2/(.+)/tags/list$`)
)

func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	intercept := r.intercept
	r.mu.Unlock()
	if intercept != nil && intercept(w, req) {
		return
	}
	if req.URL.Path == "/token" {
		r.serveToken(w, req)
		return
	}
	r.mu.Lock()
	user, pass, bearer, realm := r.username, r.password, r.bearer, r.realm
	ping := req.URL.Path == "/v2/" || req.URL.Path == "/v2"
	if ping {
		r.stats.Pings++
	} else {
		r.stats.Requests++
		r.stats.ByPath[req.Method+" "+req.URL.Path]++
	}
	authorized, scope := true, ""
	if bearer {
		authorized, scope = r.authorized(req)
	}
	basicOK := true
	if user != "" && !bearer {
		u, p, ok := req.BasicAuth()
		basicOK = ok && u == user && p == pass
	}
	if !ping && ((bearer && !authorized) || !basicOK) {
		r.stats.Refused++
	}
	r.mu.Unlock()

	if bearer && (ping || !authorized) {
		if realm == "" {
			scheme := "http"
			if req.TLS != nil {
				scheme = "https"
			}
			realm = scheme + "://" + req.Host + "/token"
		}
		challenge := fmt.Sprintf(`Bearer realm=%q,service="registrytest"`, realm)
		if !ping {
			challenge += fmt.Sprintf(`,scope=%q`, scope)
		}
		w.Header().Set("WWW-Authenticate", challenge)
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	}
	if !basicOK {
		w.Header().Set("WWW-Authenticate", `Basic realm="registrytest"`)
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	p := req.URL.Path
	switch {
	case p == "/v2/" || p == "/v2":
		w.WriteHeader(http.StatusOK)
	case manifestPath.MatchString(p):
		m := manifestPath.FindStringSubmatch(p)
		r.serveManifest(w, req, m[1], m[2])
	case blobPath.MatchString(p):
		m := blobPath.FindStringSubmatch(p)
		r.serveBlob(w, req, m[1], digest.Digest(m[2]))
	case uploadStart.MatchString(p) && req.Method == http.MethodPost:
		r.startUpload(w, req, uploadStart.FindStringSubmatch(p)[1])
	case uploadPath.MatchString(p):
		m := uploadPath.FindStringSubmatch(p)
		r.continueUpload(w, req, m[1], m[2])
	case tagsPath.MatchString(p) && req.Method == http.MethodGet:
		r.serveTags(w, req, tagsPath.FindStringSubmatch(p)[1])
	default:
		writeError(w, http.StatusNotFound, "UNSUPPORTED", "no such endpoint")
	}
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

func (r *Registry) serveManifest(w http.ResponseWriter, req *http.Request, repo, ref string) {
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		r.mu.Lock()
		rp, ok := r.repos[repo]
		var e manifestEntry
		if ok {
			e, ok = rp.lookup(ref)
		}
		if req.Method == http.MethodGet {
			r.stats.ManifestGETs++
			if ok {
				r.stats.BytesServed += int64(len(e.body))
			}
		} else {
			r.stats.ManifestHEADs++
		}
		r.mu.Unlock()
		if !ok {
			writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
			return
		}
		w.Header().Set("Content-Type", e.mediaType)
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(e.body).String())
		w.Header().Set("Content-Length", fmt.Sprint(len(e.body)))
		w.WriteHeader(http.StatusOK)
		if req.Method == http.MethodGet {
			_, _ = w.Write(e.body)
		}
	case http.MethodPut:
		body, err := io.ReadAll(io.LimitReader(req.Body, 8<<20))
		if err != nil {
			writeError(w, http.StatusBadRequest, "MANIFEST_INVALID", err.Error())
			return
		}
		mt := req.Header.Get("Content-Type")
		d := digest.FromBytes(body)
		if dd := digest.Digest(ref); dd.Validate() == nil && dd != d {
			writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "manifest digest mismatch")
			return
		}
		if missing := r.missingReferences(repo, body); missing != "" {
			writeError(w, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry: "+missing)
			return
		}
		tag := ref
		if digest.Digest(ref).Validate() == nil {
			tag = ""
		}
		r.mu.Lock()
		r.stats.ManifestPUTs++
		r.mu.Unlock()
		r.PutManifest(repo, tag, mt, body)
		w.Header().Set("Docker-Content-Digest", d.String())
		w.Header().Set("Location", fmt.Sprintf("/v2/%s/manifests/%s", repo, d))
		w.WriteHeader(http.StatusCreated)
	case http.MethodDelete:
		r.mu.Lock()
		defer r.mu.Unlock()
		rp := r.repo(repo)
		if d := digest.Digest(ref); d.Validate() == nil {
			writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "deleting manifests by digest is disabled here")
			return
		}
		if r.tagDelete == TagDeleteRefused {
			writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "The operation is unsupported.")
			return
		}
		d, ok := rp.tags[ref]
		if !ok {
			writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
			return
		}
		delete(rp.tags, ref)
		if r.tagDelete == TagDeleteTakesManifest {
			delete(rp.manifests, d)
			for t, td := range rp.tags {
				if td == d {
					delete(rp.tags, t)
				}
			}
		}
		r.stats.TagDeletes++
		w.WriteHeader(http.StatusAccepted)
	default:
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed")
	}
}

// missingReferences checks, like a real registry, that a pushed manifest only
// names blobs and manifests the repository has.
func (r *Registry) missingReferences(repo string, body []byte) string {
	var m struct {
		Config    *struct{ Digest digest.Digest }  `json:"config"`
		Layers    []struct{ Digest digest.Digest } `json:"layers"`
		Manifests []struct{ Digest digest.Digest } `json:"manifests"`
	}
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rp := r.repo(repo)
	if m.Config != nil && !rp.blobs[m.Config.Digest] {
		return m.Config.Digest.String()
	}
	for _, l := range m.Layers {
		if !rp.blobs[l.Digest] {
			return l.Digest.String()
		}
	}
	for _, l := range m.Manifests {
		if _, ok := rp.manifests[l.Digest]; !ok {
			return l.Digest.String()
		}
	}
	return ""
}

func (r *Registry) serveBlob(w http.ResponseWriter, req *http.Request, repo string, d digest.Digest) {
	r.mu.Lock()
	rp, ok := r.repos[repo]
	var data []byte
	if ok && rp.blobs[d] {
		data = r.blobs[d]
	} else {
		ok = false
	}
	switch req.Method {
	case http.MethodGet:
		r.stats.BlobGETs++
		if ok {
			r.stats.BytesServed += int64(len(data))
			r.stats.BlobBytesByDig[d.String()] += int64(len(data))
		}
	case http.MethodHead:
		r.stats.BlobHEADs++
	}
	r.mu.Unlock()
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed")
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodGet {
		_, _ = w.Write(data)
	}
}

func (r *Registry) startUpload(w http.ResponseWriter, req *http.Request, repo string) {
	q := req.URL.Query()
	if mount, from := digest.Digest(q.Get("mount")), q.Get("from"); mount != "" && from != "" {
		r.mu.Lock()
		src, ok := r.repos[from]
		if ok && src.blobs[mount] {
			r.repo(repo).blobs[mount] = true
			r.stats.BlobMounts++
			r.mu.Unlock()
			w.Header().Set("Location", fmt.Sprintf("/v2/%s/blobs/%s", repo, mount))
			w.Header().Set("Docker-Content-Digest", mount.String())
			w.WriteHeader(http.StatusCreated)
			return
		}
		r.mu.Unlock()
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	uid := hex.EncodeToString(id)
	r.mu.Lock()
	r.stats.BlobUploads++
	r.uploads[uid] = &upload{repo: repo}
	r.mu.Unlock()
	if d := digest.Digest(q.Get("digest")); d != "" { // monolithic POST
		r.finishUpload(w, req, repo, uid, d)
		return
	}
	w.Header().Set("Location", fmt.Sprintf("/v2/%s/blobs/uploads/%s", repo, uid))
	w.Header().Set("Range", "0-0")
	w.Header().Set("Docker-Upload-UUID", uid)
	w.WriteHeader(http.StatusAccepted)
}

func (r *Registry) continueUpload(w http.ResponseWriter, req *http.Request, repo, uid string) {
	switch req.Method {
	case http.MethodPatch:
		body, err := io.ReadAll(req.Body)
		if err != nil {
			writeError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", err.Error())
			return
		}
		r.mu.Lock()
		u, ok := r.uploads[uid]
		if ok {
			u.data = append(u.data, body...)
			r.stats.BytesUploaded += int64(len(body))
		}
		size := 0
		if ok {
			size = len(u.data)
		}
		r.mu.Unlock()
		if !ok {
			writeError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
			return
		}
		w.Header().Set("Location", fmt.Sprintf("/v2/%s/blobs/uploads/%s", repo, uid))
		w.Header().Set("Range", fmt.Sprintf("0-%d", max(size-1, 0)))
		w.Header().Set("Docker-Upload-UUID", uid)
		w.WriteHeader(http.StatusAccepted)
	case http.MethodPut:
		r.finishUpload(w, req, repo, uid, digest.Digest(req.URL.Query().Get("digest")))
	default:
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed")
	}
}

func (r *Registry) finishUpload(w http.ResponseWriter, req *http.Request, repo, uid string, d digest.Digest) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", err.Error())
		return
	}
	r.mu.Lock()
	u, ok := r.uploads[uid]
	if ok {
		u.data = append(u.data, body...)
		r.stats.BytesUploaded += int64(len(body))
		delete(r.uploads, uid)
	}
	r.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
		return
	}
	if d.Validate() != nil || digest.FromBytes(u.data) != d {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "provided digest did not match uploaded content")
		return
	}
	r.PutBlobUnchecked(repo, d, u.data)
	w.Header().Set("Location", fmt.Sprintf("/v2/%s/blobs/%s", repo, d))
	w.Header().Set("Docker-Content-Digest", d.String())
	w.WriteHeader(http.StatusCreated)
}

// serveTags lists a repository's tags in lexical order, paginated as the
// distribution spec says: n tags after last, with a Link to the next page.
func (r *Registry) serveTags(w http.ResponseWriter, req *http.Request, repo string) {
	r.mu.Lock()
	_, known := r.repos[repo]
	r.mu.Unlock()
	tags := r.Tags(repo)
	if !known {
		writeError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
		return
	}
	q := req.URL.Query()
	if last := q.Get("last"); last != "" {
		tags = tags[sort.SearchStrings(tags, last+"\x00"):]
	}
	if n, err := strconv.Atoi(q.Get("n")); err == nil && n >= 0 && n < len(tags) {
		tags = tags[:n]
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?n=%d&last=%s>; rel="next"`, repo, n, url.QueryEscape(tags[len(tags)-1])))
	}
	if tags == nil {
		tags = []string{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"name": repo, "tags": tags})
}
