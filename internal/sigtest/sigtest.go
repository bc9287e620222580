// Package sigtest signs release digests as Red Hat's signing service does
// (an OpenPGP signed message holding atomic container signature JSON) with a
// key made on the spot, and serves the signatures laid out as
// mirror.openshift.com's store: <store>/sha256=<hex>/signature-N. For tests
// and the offline demo; never a key to trust anywhere else.
package sigtest

import (
	"bytes"
	"crypto"
	"fmt"
	"net/http"
	"sync"

	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/openpgp"        //nolint:staticcheck // the package releasesig verifies with
	"golang.org/x/crypto/openpgp/armor"  //nolint:staticcheck
	"golang.org/x/crypto/openpgp/packet" //nolint:staticcheck
)

// Key is an OpenPGP key pair made for a test or the demo.
type Key struct{ entity *openpgp.Entity }

// NewKey makes an RSA key signing with SHA-256, as Red Hat's release key does.
func NewKey(name string) (*Key, error) {
	e, err := openpgp.NewEntity(name, "dtkbot test key", name+"@example.invalid", config)
	if err != nil {
		return nil, err
	}
	return &Key{entity: e}, nil
}

var config = &packet.Config{DefaultHash: crypto.SHA256, RSABits: 2048}

// PublicKey is the armored public key, for verify.public_keys.
func (k *Key) PublicKey() ([]byte, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := k.entity.Serialize(w); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Sign signs the atomic container signature JSON of d for reference.
func (k *Key) Sign(d digest.Digest, reference string) ([]byte, error) {
	var buf bytes.Buffer
	w, err := openpgp.Sign(&buf, k.entity, nil, config)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, `{"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":%q},"identity":{"docker-reference":%q}},"optional":{"creator":"dtkbot sigtest"}}`, d, reference)
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Store serves signatures as mirror.openshift.com lays them out.
type Store struct {
	mu   sync.Mutex
	sigs map[string][]byte
}

// Put stores signature-n of d.
func (s *Store) Put(d digest.Digest, n int, sig []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sigs == nil {
		s.sigs = map[string][]byte{}
	}
	s.sigs[fmt.Sprintf("/%s=%s/signature-%d", d.Algorithm(), d.Encoded(), n)] = sig
}

// ServeHTTP answers 404 for a signature it does not have, as the store does.
func (s *Store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	b, ok := s.sigs[r.URL.Path]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write(b)
}
