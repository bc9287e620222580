// Package registrytest is an in-process container registry for tests and the
// offline demo: go-containerregistry's pkg/registry (the OCI distribution
// protocol as crane's own tests serve it) behind middleware of ours that
// counts every request and every byte, so that tests and benchmarks can
// assert on the cost of an operation, requires auth as real registries do,
// lets a test intercept requests to inject faults, and models registries
// that treat a tag's deletion differently.
//
// pkg/registry serves the ping, manifests by tag and digest (GET, HEAD,
// PUT, DELETE of a tag), blobs (GET, HEAD, Range) and uploads (monolithic,
// or POST, PATCH and PUT, chunked with Content-Range). What a test needs and
// pkg/registry (v0.22.1) does not do stays ours, each with the test that
// needs it:
//
//   - Auth (auth.go): Basic, or bearer tokens as quay.io hands them out (a
//     401 with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`, a
//     token endpoint that checks the pull secret, tokens scoped to a
//     repository and expiring), rotated credentials, a realm elsewhere;
//     pkg/registry has none (registry's TestBearerTokens*, TestRotated*).
//   - Blobs per repository (blobs.go): pkg/registry's in-memory blob store is
//     one namespace, so a layer pushed anywhere would be found in every
//     repository and a promotion to a mirror would upload nothing
//     (promote's TestPromoteToAMirrorMovesAnImagesLayersOnce). Ours links a
//     blob to the repositories it was pushed or mounted to, as a real
//     registry does, and stores what a test plants with PutBlobUnchecked
//     under a digest it does not match: that is how corrupt blobs are made.
//   - Cross-repository mounts (?mount=&from=): pkg/registry starts an
//     ordinary upload instead, so promotion within one registry would move
//     every layer (promote's TestPromoteWithinARepositoryMovesNoLayer).
//   - Tag list pages: pkg/registry honours n but sends no Link header, and
//     a last past the final tag answers every tag again (registry's
//     TestTagsFollowsPages).
//   - Manifest PUT checks: pkg/registry stores a manifest naming blobs the
//     repository lacks, and one pushed by a digest it does not match (under
//     that digest); ours refuses both as real registries do.
//   - DELETE of a manifest: by digest pkg/registry drops the digest's entry
//     and leaves the tags naming it; ours refuses it, and deletes a tag in
//     one of three ways (TagDelete) modelling the registries dtkbot meets.
//
// The Stats are counted here, never by pkg/registry: pings and token
// requests apart from the rest, refusals (401) too.
package registrytest

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
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

// Registry is the in-memory registry. The zero value is not usable; call New.
type Registry struct {
	oci   http.Handler // go-containerregistry's pkg/registry
	blobs *blobStore

	mu    sync.Mutex
	stats Stats

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

// New returns an empty registry.
func New() *Registry {
	blobs := newBlobStore()
	return &Registry{
		oci:   ggcr.New(ggcr.WithBlobHandler(blobs), ggcr.Logger(log.New(io.Discard, "", 0))),
		blobs: blobs,
		stats: Stats{ByPath: map[string]int64{}, BlobBytesByDig: map[string]int64{}},
	}
}

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

// count adds to the counters under mu.
func (r *Registry) count(f func(s *Stats)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.stats)
}

// route is what a request's path names.
type route struct {
	kind       kind
	repo, ref  string // ref: a manifest's tag or digest, a blob's digest
	isDigested bool   // ref is a digest
}

type kind int

const (
	other kind = iota
	ping
	manifest
	blob
	uploadStart // POST /v2/<repo>/blobs/uploads/
	upload      // /v2/<repo>/blobs/uploads/<id>
	tags
)

var routes = []struct {
	kind kind
	re   *regexp.Regexp
}{
	{manifest, regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)},
	{blob, regexp.MustCompile(`^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$`)},
	{uploadStart, regexp.MustCompile(`^/v2/(.+)/blobs/uploads/?$`)},
	{upload, regexp.MustCompile(`^/v2/(.+)/blobs/uploads/([^/]+)$`)},
	{tags, regexp.MustCompile(`^/v2/(.+)/tags/list$`)},
}

func routeOf(p string) route {
	if p == "/v2/" || p == "/v2" {
		return route{kind: ping}
	}
	for _, rt := range routes {
		if m := rt.re.FindStringSubmatch(p); m != nil {
			out := route{kind: rt.kind, repo: m[1]}
			if len(m) > 2 {
				out.ref = m[2]
				out.isDigested = digest.Digest(m[2]).Validate() == nil
			}
			return out
		}
	}
	return route{}
}

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
	rt := routeOf(req.URL.Path)
	r.count(func(s *Stats) {
		if rt.kind == ping {
			s.Pings++
		} else {
			s.Requests++
			s.ByPath[req.Method+" "+req.URL.Path]++
		}
	})
	if !r.authenticate(w, req, rt) {
		return
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	// pkg/registry hands a blob handler "<repo>/blobs" as the repository of
	// a chunked upload's final PUT: the handler takes ours from here.
	req = req.WithContext(context.WithValue(req.Context(), repoKey{}, rt.repo))
	switch {
	case rt.kind == manifest && req.Method == http.MethodGet:
		r.count(func(s *Stats) { s.ManifestGETs++ })
		cw := r.serveCounted(w, req)
		r.count(func(s *Stats) { s.BytesServed += cw.served() })
	case rt.kind == manifest && req.Method == http.MethodHead:
		r.count(func(s *Stats) { s.ManifestHEADs++ })
		r.oci.ServeHTTP(w, req)
	case rt.kind == manifest && req.Method == http.MethodPut:
		r.putManifest(w, req, rt)
	case rt.kind == manifest && req.Method == http.MethodDelete:
		r.deleteManifest(w, req, rt)
	case rt.kind == blob && req.Method == http.MethodGet:
		r.count(func(s *Stats) { s.BlobGETs++ })
		cw := r.serveCounted(w, req)
		r.count(func(s *Stats) {
			s.BytesServed += cw.served()
			s.BlobBytesByDig[rt.ref] += cw.served()
		})
	case rt.kind == blob && req.Method == http.MethodHead:
		r.count(func(s *Stats) { s.BlobHEADs++ })
		r.oci.ServeHTTP(w, req)
	case rt.kind == uploadStart && req.Method == http.MethodPost:
		if r.mount(w, req, rt) {
			return
		}
		r.count(func(s *Stats) { s.BlobUploads++ })
		r.serveUpload(w, req)
	case rt.kind == upload:
		r.serveUpload(w, req)
	case rt.kind == tags && req.Method == http.MethodGet:
		r.serveTags(w, req, rt.repo)
	default:
		r.oci.ServeHTTP(w, req)
	}
}

type repoKey struct{}

// serveCounted serves req through pkg/registry, counting the body bytes
// of a 200 or 206 answer.
func (r *Registry) serveCounted(w http.ResponseWriter, req *http.Request) *countingWriter {
	cw := &countingWriter{ResponseWriter: w}
	r.oci.ServeHTTP(cw, req)
	return cw
}

// serveUpload serves an upload's request through pkg/registry, counting the
// body bytes it read.
func (r *Registry) serveUpload(w http.ResponseWriter, req *http.Request) {
	body := &countingReader{ReadCloser: req.Body}
	req.Body = body
	r.oci.ServeHTTP(w, req)
	r.count(func(s *Stats) { s.BytesUploaded += body.n })
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.n += int64(len(p))
	return c.ResponseWriter.Write(p)
}

// served is the body bytes of a successful answer; an error's are none.
func (c *countingWriter) served() int64 {
	if c.status == http.StatusOK || c.status == http.StatusPartialContent {
		return c.n
	}
	return 0
}

type countingReader struct {
	io.ReadCloser
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}
