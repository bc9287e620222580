package registrytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"

	"github.com/opencontainers/go-digest"
)

// call serves one request by pkg/registry alone, neither counted nor
// authenticated: how the helpers below set up and inspect manifests, which
// pkg/registry keeps.
func (r *Registry) call(method, path, contentType string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	r.oci.ServeHTTP(rec, req)
	return rec
}

// PutManifest stores a manifest in repo under its digest and, if tag is not
// empty, under tag too. It panics when pkg/registry refuses it (an index
// naming a manifest the repository lacks): a test's set-up is wrong.
func (r *Registry) PutManifest(repo, tag, mediaType string, body []byte) digest.Digest {
	d := digest.FromBytes(body)
	ref := tag
	if ref == "" {
		ref = d.String()
	}
	if rec := r.call(http.MethodPut, "/v2/"+repo+"/manifests/"+ref, mediaType, body); rec.Code != http.StatusCreated {
		panic(fmt.Sprintf("registrytest: storing a manifest as %s:%s: %d %s", repo, ref, rec.Code, rec.Body))
	}
	return d
}

// Manifest returns a stored manifest by repo and tag or digest.
func (r *Registry) Manifest(repo, ref string) ([]byte, string, bool) {
	rec := r.call(http.MethodGet, "/v2/"+repo+"/manifests/"+ref, "", nil)
	if rec.Code != http.StatusOK {
		return nil, "", false
	}
	return rec.Body.Bytes(), rec.Header().Get("Content-Type"), true
}

// TagDigest returns the digest repo:tag points at.
func (r *Registry) TagDigest(repo, tag string) (digest.Digest, bool) {
	rec := r.call(http.MethodHead, "/v2/"+repo+"/manifests/"+tag, "", nil)
	if rec.Code != http.StatusOK {
		return "", false
	}
	return digest.Digest(rec.Header().Get("Docker-Content-Digest")), true
}

// Tags lists the tags of repo, sorted.
func (r *Registry) Tags(repo string) []string {
	tags, _ := r.tagList(repo)
	return tags
}

// tagList lists the tags of repo, sorted, and says whether the registry
// knows the repository.
func (r *Registry) tagList(repo string) ([]string, bool) {
	rec := r.call(http.MethodGet, "/v2/"+repo+"/tags/list", "", nil)
	if rec.Code != http.StatusOK {
		return nil, false
	}
	var list struct{ Tags []string }
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		panic(fmt.Sprintf("registrytest: listing the tags of %s: %v", repo, err))
	}
	return list.Tags, true
}

// DeleteTag removes a tag, keeping the manifest.
func (r *Registry) DeleteTag(repo, tag string) {
	r.call(http.MethodDelete, "/v2/"+repo+"/manifests/"+tag, "", nil)
}

// DeleteManifest removes a manifest and the tags pointing at it.
func (r *Registry) DeleteManifest(repo string, d digest.Digest) {
	for _, tag := range r.Tags(repo) {
		if td, _ := r.TagDigest(repo, tag); td == d {
			r.DeleteTag(repo, tag)
		}
	}
	r.call(http.MethodDelete, "/v2/"+repo+"/manifests/"+d.String(), "", nil)
}

// putManifest checks a pushed manifest as a real registry does before
// pkg/registry stores it: its digest, if pushed by one, and that the
// repository has every blob and manifest it names.
func (r *Registry) putManifest(w http.ResponseWriter, req *http.Request, rt route) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 8<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "MANIFEST_INVALID", err.Error())
		return
	}
	d := digest.FromBytes(body)
	if rt.isDigested && digest.Digest(rt.ref) != d {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "manifest digest mismatch")
		return
	}
	if missing := r.missingReferences(rt.repo, body); missing != "" {
		writeError(w, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry: "+missing)
		return
	}
	r.count(func(s *Stats) { s.ManifestPUTs++ })
	req.Body = io.NopCloser(bytes.NewReader(body))
	w.Header().Set("Location", fmt.Sprintf("/v2/%s/manifests/%s", rt.repo, d))
	r.serve(w, req, answer{})
}

// missingReferences names a blob or manifest that body names and repo
// lacks, or is empty.
func (r *Registry) missingReferences(repo string, body []byte) string {
	var m struct {
		Config    *struct{ Digest digest.Digest }  `json:"config"`
		Layers    []struct{ Digest digest.Digest } `json:"layers"`
		Manifests []struct{ Digest digest.Digest } `json:"manifests"`
	}
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	if m.Config != nil {
		if _, ok := r.blobs.get(repo, m.Config.Digest); !ok {
			return m.Config.Digest.String()
		}
	}
	for _, l := range m.Layers {
		if _, ok := r.blobs.get(repo, l.Digest); !ok {
			return l.Digest.String()
		}
	}
	for _, l := range m.Manifests {
		if _, _, ok := r.Manifest(repo, l.Digest.String()); !ok {
			return l.Digest.String()
		}
	}
	return ""
}

// deleteManifest answers a manifest DELETE: by digest refused, by tag as
// the TagDelete set says.
func (r *Registry) deleteManifest(w http.ResponseWriter, req *http.Request, rt route) {
	if rt.isDigested {
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "deleting manifests by digest is disabled here")
		return
	}
	r.mu.Lock()
	mode := r.tagDelete
	r.mu.Unlock()
	switch mode {
	case TagDeleteRefused:
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "The operation is unsupported.")
	case TagDeleteTakesManifest:
		d, ok := r.TagDigest(rt.repo, rt.ref)
		if !ok {
			writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
			return
		}
		r.DeleteManifest(rt.repo, d)
		r.count(func(s *Stats) { s.TagDeletes++ })
		w.WriteHeader(http.StatusAccepted)
	default:
		r.serve(w, req, answer{onStatus: func(code int) {
			if code == http.StatusAccepted {
				r.count(func(s *Stats) { s.TagDeletes++ })
			}
		}})
	}
}

// serveTags lists a repository's tags in lexical order, paginated as the
// distribution spec says: n tags after last, with a Link to the next page.
func (r *Registry) serveTags(w http.ResponseWriter, req *http.Request, repo string) {
	tags, known := r.tagList(repo)
	if !known {
		writeError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
		return
	}
	q := req.URL.Query()
	if last := q.Get("last"); last != "" {
		tags = tags[sort.SearchStrings(tags, last+"\x00"):]
	}
	if n, err := strconv.Atoi(q.Get("n")); err == nil && n > 0 && n < len(tags) {
		tags = tags[:n]
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?n=%d&last=%s>; rel="next"`, repo, n, url.QueryEscape(tags[len(tags)-1])))
	}
	if tags == nil {
		tags = []string{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"name": repo, "tags": tags})
}
