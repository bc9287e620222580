// Package registrytest is an in-process container registry for tests and the
// offline demo: go-containerregistry's pkg/registry (the OCI distribution
// protocol as crane's own tests serve it) behind middleware of ours that
// counts every request and every byte, so that tests and benchmarks can
// assert on the cost of an operation, requires auth as real registries do,
// lets a test intercept requests to inject faults (SetIntercept, or
// ServerWith and internal/faulttest), and models registries that treat a
// tag's deletion differently.
//
// pkg/registry keeps the manifests and serves the ping, manifests by tag
// and digest (GET, HEAD, PUT, DELETE of a tag), blobs (GET, HEAD, with
// Range) and uploads (monolithic, or POST, PATCH and PUT, chunked with
// Content-Range). What dtkbot's tests need and pkg/registry (v0.22.1) does
// not do is ours, each with a test that fails without it (and each checked
// over plain HTTP by TestWhatPkgRegistryDoesNotDo):
//
//   - Auth (auth.go): Basic, or bearer tokens as quay.io hands them out (a
//     401 with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`, a
//     token endpoint that checks the pull secret, tokens scoped to a
//     repository and expiring), rotated credentials, a realm elsewhere.
//     pkg/registry has no auth at all.
//   - Blobs per repository (blobs.go): pkg/registry's blob store is one
//     namespace, so a layer pushed anywhere would be found in every
//     repository and a copy to a mirror would upload nothing (promote's
//     TestPromoteToAMirrorMovesAnImagesLayersOnce). It also names the
//     repository of a chunked upload's final PUT "<repo>/blobs", so the
//     store takes the repository from our routing (reconcile's
//     TestMirrorsGetKernelTags, releasesig's TestSigstoreThroughPolicyJSON).
//   - Tag list pages: pkg/registry honours n but sends no Link header, and
//     a last past the final tag answers every tag again (registry's
//     TestTagsFollowsPages).
//   - Error messages: pkg/registry's codes are the spec's but not its
//     messages ("Unknown manifest" for MANIFEST_UNKNOWN, where registries
//     say "manifest unknown", which releaseinfo's
//     TestInspectRejectsBadPayloads asserts).
//   - Manifest PUT checks: pkg/registry stores a manifest naming blobs the
//     repository lacks, and one pushed by a digest it does not match;
//     registries refuse both, and promote counts on the first.
//   - DELETE of a manifest by digest is refused here (pkg/registry drops
//     the digest's entry and leaves the tags naming it), and a DELETE by
//     tag does what SetTagDelete says, modelling the registries dtkbot
//     meets (registry's TestUntagRemovesTheTagNotTheManifest, promote's and
//     reconcile's tests of registries that refuse tag deletion).
//
// Cross-repository mounts are pkg/registry's: it answers a mount with an
// ordinary upload (202), which the distribution spec allows; no test asks
// for one. The Stats are counted here, never by pkg/registry, each before
// what it counts reaches the client: pings and token requests apart from
// the rest, refusals (401) too. What a test stores with PutBlobUnchecked is
// never verified: that is how corrupt blobs are planted.
package registrytest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"maps"
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
	BlobUploads    int64 // uploads started (POST)
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
	s.ByPath, s.BlobBytesByDig = maps.Clone(s.ByPath), maps.Clone(s.BlobBytesByDig)
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
	upload // /v2/<repo>/blobs/uploads/, then /v2/<repo>/blobs/uploads/<id>
	tags
)

var routes = []struct {
	kind kind
	re   *regexp.Regexp
}{
	{manifest, regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)},
	{blob, regexp.MustCompile(`^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$`)},
	{upload, regexp.MustCompile(`^/v2/(.+)/blobs/uploads(?:/[^/]*)?$`)},
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
		r.serve(w, req, answer{onBody: func(n int64) { r.count(func(s *Stats) { s.BytesServed += n }) }})
	case rt.kind == manifest && req.Method == http.MethodHead:
		r.count(func(s *Stats) { s.ManifestHEADs++ })
		r.serve(w, req, answer{})
	case rt.kind == manifest && req.Method == http.MethodPut:
		r.putManifest(w, req, rt)
	case rt.kind == manifest && req.Method == http.MethodDelete:
		r.deleteManifest(w, req, rt)
	case rt.kind == blob && req.Method == http.MethodGet:
		r.count(func(s *Stats) { s.BlobGETs++ })
		r.serve(w, req, answer{onBody: func(n int64) {
			r.count(func(s *Stats) {
				s.BytesServed += n
				s.BlobBytesByDig[rt.ref] += n
			})
		}})
	case rt.kind == blob && req.Method == http.MethodHead:
		r.count(func(s *Stats) { s.BlobHEADs++ })
		r.serve(w, req, answer{})
	case rt.kind == upload:
		if req.Method == http.MethodPost {
			r.count(func(s *Stats) { s.BlobUploads++ })
		}
		r.serveUpload(w, req)
	case rt.kind == tags && req.Method == http.MethodGet:
		r.serveTags(w, req, rt.repo)
	default:
		r.serve(w, req, answer{})
	}
}

type repoKey struct{}

// serve passes req to pkg/registry, its answer through a. Every count is
// made before what it counts reaches the client, so that a client that has
// its answer sees it in Stats.
func (r *Registry) serve(w http.ResponseWriter, req *http.Request, a answer) {
	a.ResponseWriter = w
	r.oci.ServeHTTP(&a, req)
	a.finish()
}

// serveUpload serves an upload's request through pkg/registry, counting the
// body bytes as it reads them.
func (r *Registry) serveUpload(w http.ResponseWriter, req *http.Request) {
	req.Body = &countingReader{ReadCloser: req.Body, add: func(n int64) { r.count(func(s *Stats) { s.BytesUploaded += n }) }}
	r.serve(w, req, answer{})
}

// answer is pkg/registry's answer on its way to the client: onStatus sees
// its status and onBody the size of each piece of a successful body (200,
// 206) before they are sent, and an error gets the message the Docker
// Registry HTTP API V2 spec gives its code, as registries answer and people
// read ("MANIFEST_UNKNOWN: manifest unknown"; pkg/registry says "Unknown
// manifest").
type answer struct {
	http.ResponseWriter
	onStatus func(code int)
	onBody   func(n int64)

	status int
	failed bytes.Buffer // an error's body, rewritten by finish
}

func (a *answer) WriteHeader(code int) {
	if a.status != 0 {
		return
	}
	a.status = code
	if a.onStatus != nil {
		a.onStatus(code)
	}
	if code >= 400 {
		a.Header().Set("Content-Type", "application/json")
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *answer) Write(p []byte) (int, error) {
	a.WriteHeader(http.StatusOK)
	if a.status >= 400 {
		return a.failed.Write(p)
	}
	if a.onBody != nil && (a.status == http.StatusOK || a.status == http.StatusPartialContent) {
		a.onBody(int64(len(p)))
	}
	return a.ResponseWriter.Write(p)
}

// specMessages are the spec's messages of the error codes pkg/registry
// answers with (its NAME_INVALID for a malformed digest keeps its own).
var specMessages = map[string]string{
	"BLOB_UNKNOWN":        "blob unknown to registry",
	"BLOB_UPLOAD_INVALID": "blob upload invalid",
	"BLOB_UPLOAD_UNKNOWN": "blob upload unknown to registry",
	"DIGEST_INVALID":      "provided digest did not match uploaded content",
	"MANIFEST_INVALID":    "manifest invalid",
	"MANIFEST_UNKNOWN":    "manifest unknown",
	"NAME_UNKNOWN":        "repository name not known to registry",
	"UNSUPPORTED":         "The operation is unsupported.",
}

// finish writes an error's body, with the spec's messages.
func (a *answer) finish() {
	if a.status < 400 {
		return
	}
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(a.failed.Bytes(), &body) != nil {
		_, _ = a.ResponseWriter.Write(a.failed.Bytes())
		return
	}
	for i, e := range body.Errors {
		if m, ok := specMessages[e.Code]; ok {
			body.Errors[i].Message = m
		}
	}
	_ = json.NewEncoder(a.ResponseWriter).Encode(body)
}

type countingReader struct {
	io.ReadCloser
	add func(n int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.add(int64(n))
	return n, err
}
