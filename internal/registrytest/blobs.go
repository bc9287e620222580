package registrytest

import (
	"bytes"
	"context"
	"io"
	"sync"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
)

// blobStore is pkg/registry's blob handler: the bytes of each blob once,
// and which repositories each is linked to, so that a repository serves
// only the blobs pushed to it, as a real registry does (pkg/registry's own
// in-memory handler ignores the repository). It does not implement
// deletion: a blob DELETE is answered 405 UNSUPPORTED.
type blobStore struct {
	mu    sync.Mutex
	data  map[digest.Digest][]byte
	links map[string]map[digest.Digest]bool // repository -> blobs
}

func newBlobStore() *blobStore {
	return &blobStore{data: map[digest.Digest][]byte{}, links: map[string]map[digest.Digest]bool{}}
}

// repository is the repository a request named, as ServeHTTP routed it.
func repository(ctx context.Context, asGiven string) string {
	if repo, ok := ctx.Value(repoKey{}).(string); ok {
		return repo
	}
	return asGiven
}

// put stores data under d, which it need not match, linked to repo.
func (s *blobStore) put(repo string, d digest.Digest, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[d] = data
	if s.links[repo] == nil {
		s.links[repo] = map[digest.Digest]bool{}
	}
	s.links[repo][d] = true
}

// get returns the blob d of repo.
func (s *blobStore) get(repo string, d digest.Digest) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.links[repo][d] {
		return nil, false
	}
	return s.data[d], true
}

func (s *blobStore) Stat(ctx context.Context, repo string, h v1.Hash) (int64, error) {
	data, ok := s.get(repository(ctx, repo), digest.Digest(h.String()))
	if !ok {
		return 0, ggcr.ErrNotFound
	}
	return int64(len(data)), nil
}

func (s *blobStore) Get(ctx context.Context, repo string, h v1.Hash) (io.ReadCloser, error) {
	data, ok := s.get(repository(ctx, repo), digest.Digest(h.String()))
	if !ok {
		return nil, ggcr.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// Put stores an upload; rc fails at EOF when the bytes do not match h.
func (s *blobStore) Put(ctx context.Context, repo string, h v1.Hash, rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	s.put(repository(ctx, repo), digest.Digest(h.String()), data)
	return nil
}

// PutBlob stores data in repo and returns its digest.
func (r *Registry) PutBlob(repo string, data []byte) digest.Digest {
	d := digest.FromBytes(data)
	r.blobs.put(repo, d, data)
	return d
}

// PutBlobUnchecked stores data under a digest the caller chooses, which need
// not match: the way tests plant a corrupt layer.
func (r *Registry) PutBlobUnchecked(repo string, d digest.Digest, data []byte) {
	r.blobs.put(repo, d, data)
}

// Blob returns a stored blob's bytes, for tests that look inside an image
// without a client.
func (r *Registry) Blob(d digest.Digest) ([]byte, bool) {
	r.blobs.mu.Lock()
	defer r.blobs.mu.Unlock()
	b, ok := r.blobs.data[d]
	return b, ok
}
