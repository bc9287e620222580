package releasesig

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/signature/signer"
	"go.podman.io/image/v5/signature/sigstore"
	"go.podman.io/image/v5/types"
	"golang.org/x/crypto/openpgp"        //nolint:staticcheck // the package releasesig verifies with
	"golang.org/x/crypto/openpgp/armor"  //nolint:staticcheck
	"golang.org/x/crypto/openpgp/packet" //nolint:staticcheck

	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
)

// pgpConfig makes RSA keys signing with SHA-256, as Red Hat's do.
var pgpConfig = &packet.Config{DefaultHash: crypto.SHA256, RSABits: 2048}

// key is an OpenPGP key made in the test.
type key struct {
	entity *openpgp.Entity
	file   string // its armored public key
}

func newKey(t testing.TB, name string) key {
	t.Helper()
	e, err := openpgp.NewEntity(name, "test", name+"@example.com", pgpConfig)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, _ := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	file := filepath.Join(t.TempDir(), name+".asc")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return key{entity: e, file: file}
}

// sign makes an atomic container signature of contents, as Red Hat's are
// (an OpenPGP signed message, not a detached signature).
func (k key) sign(t testing.TB, contents string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := openpgp.Sign(&buf, k.entity, nil, pgpConfig)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte(contents))
	w.Close()
	return buf.Bytes()
}

func atomic(d digest.Digest) string {
	return fmt.Sprintf(`{"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":%q},"identity":{"docker-reference":"quay.io/openshift-release-dev/ocp-release:4.16.15-x86_64"}},"optional":{"creator":"Red Hat OpenShift Signing Authority 0.0.1","timestamp":1726000000}}`, d)
}

// store serves signatures as mirror.openshift.com lays them out.
type store struct {
	mu   sync.Mutex
	sigs map[string][]byte
	fail int
}

func (s *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != 0 {
		http.Error(w, "down", s.fail)
		return
	}
	b, ok := s.sigs[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write(b)
}

func (s *store) put(d digest.Digest, n int, sig []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sigs[fmt.Sprintf("/sha256=%s/signature-%d", d.Encoded(), n)] = sig
}

func TestAtomicSignatures(t *testing.T) {
	trusted, other := newKey(t, "release"), newKey(t, "stranger")
	d := digest.FromString("release 4.16.15")
	tests := []struct {
		name   string
		sigs   [][]byte
		ok     bool
		reason string
	}{
		{name: "signed", sigs: [][]byte{trusted.sign(t, atomic(d))}, ok: true},
		{name: "second signature verifies", sigs: [][]byte{other.sign(t, atomic(d)), trusted.sign(t, atomic(d))}, ok: true},
		{name: "untrusted key", sigs: [][]byte{other.sign(t, atomic(d))}, reason: "which is not trusted"},
		{name: "tampered", sigs: [][]byte{tamper(trusted.sign(t, atomic(d)))}, reason: "does not verify"},
		{name: "another digest", sigs: [][]byte{trusted.sign(t, atomic(digest.FromString("other")))}, reason: "signs \"sha256:"},
		{name: "unknown critical field", sigs: [][]byte{trusted.sign(t, strings.Replace(atomic(d), `"type"`, `"evil":1,"type"`, 1))}, reason: "unknown field"},
		{name: "wrong type", sigs: [][]byte{trusted.sign(t, strings.Replace(atomic(d), "atomic container signature", "cosign", 1))}, reason: "type \"cosign\""},
		{name: "garbage", sigs: [][]byte{[]byte("not a signature at all")}, reason: "signature-1"},
		{name: "truncated", sigs: [][]byte{trusted.sign(t, atomic(d))[:40]}, reason: "signature-1"},
		{name: "no signature", reason: "the store has no signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &store{sigs: map[string][]byte{}}
			for i, s := range tt.sigs {
				st.put(d, i+1, s)
			}
			srv := httptest.NewServer(st)
			defer srv.Close()
			c, err := New(Options{Store: srv.URL, KeyFiles: []string{trusted.file}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			v, err := c.Check(context.Background(), "quay.io/openshift-release-dev/ocp-release@"+d.String(), d)
			if err != nil {
				t.Fatal(err)
			}
			if v.Verified != tt.ok || (!tt.ok && !strings.Contains(v.Reason, tt.reason)) {
				t.Errorf("verdict %+v, want verified=%v reason containing %q", v, tt.ok, tt.reason)
			}
		})
	}
}

func TestStoreOutageIsAnErrorNotAVerdict(t *testing.T) {
	trusted := newKey(t, "release")
	st := &store{sigs: map[string][]byte{}, fail: http.StatusServiceUnavailable}
	srv := httptest.NewServer(st)
	defer srv.Close()
	c, _ := New(Options{Store: srv.URL, KeyFiles: []string{trusted.file}})
	d := digest.FromString("x")
	if _, err := c.Check(context.Background(), "quay.io/x/y@"+d.String(), d); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("error %v", err)
	}
}

func TestStopsAtTen(t *testing.T) {
	trusted, other := newKey(t, "release"), newKey(t, "stranger")
	d := digest.FromString("x")
	st := &store{sigs: map[string][]byte{}}
	for i := 1; i <= 10; i++ {
		st.put(d, i, other.sign(t, atomic(d)))
	}
	st.put(d, 11, trusted.sign(t, atomic(d)))
	srv := httptest.NewServer(st)
	defer srv.Close()
	c, _ := New(Options{Store: srv.URL, KeyFiles: []string{trusted.file}})
	if v, err := c.Check(context.Background(), "quay.io/x/y@"+d.String(), d); err != nil || v.Verified {
		t.Errorf("signature-11 was used: %+v %v", v, err)
	}
}

func TestBadKeyFiles(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.asc")
	_ = os.WriteFile(bad, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\nnope\n"), 0o600)
	if _, err := New(Options{KeyFiles: []string{bad}}); err == nil {
		t.Error("a bad key file loaded")
	}
	if _, err := New(Options{KeyFiles: []string{"/nonexistent.asc"}}); err == nil || !strings.Contains(err.Error(), "verify.public_keys") {
		t.Errorf("a missing key file: %v", err)
	}
}

func FuzzCheckContents(f *testing.F) {
	d := digest.FromString("release")
	f.Add([]byte(atomic(d)))
	f.Add([]byte(`{"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":"sha256:0"},"identity":{}}}`))
	f.Add([]byte(`{"critical":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, contents []byte) {
		if err := CheckContents(contents, d); err == nil && !bytes.Contains(contents, []byte(d.Encoded())) {
			t.Errorf("accepted contents that do not name the digest: %q", contents)
		}
	})
}

func TestPolicyJSON(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	img := payloadtest.New(srv.Registry, srv.Host()).PushImage("openshift-release-dev/ocp-release", "4.16.15-x86_64",
		payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("x", 64)}})
	sys := &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue, SystemRegistriesConfPath: "/dev/null",
		RegistriesDirPath: t.TempDir()}
	for policy, want := range map[string]bool{
		`{"default":[{"type":"insecureAcceptAnything"}]}`: true,
		`{"default":[{"type":"reject"}]}`:                 false,
	} {
		file := filepath.Join(t.TempDir(), "policy.json")
		_ = os.WriteFile(file, []byte(policy), 0o600)
		c, err := New(Options{KeyFiles: []string{}, Policy: file, Sys: sys})
		if err != nil {
			t.Fatal(err)
		}
		// Checks run concurrently in a pass: a policy is evaluated for
		// each, one at a time.
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				v, err := c.Check(context.Background(), img.Pullspec, img.Digest)
				if err != nil || v.Verified != want {
					t.Errorf("%s: %+v %v", policy, v, err)
				}
			})
		}
		wg.Wait()
		c.Close()
	}
}

// TestSigstoreThroughPolicyJSON signs a payload with a sigstore key made in
// the test (copying it with containers/image, which stores the signature as
// an attachment in the registry), then checks it through a policy.json
// requiring that key.
func TestSigstoreThroughPolicyJSON(t *testing.T) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	src := w.PushImage("staging/ocp-release", "4.16.15-x86_64", payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("x", 64)}})
	other := w.PushImage("openshift-release-dev/ocp-release", "unsigned", payloadtest.Image{Layers: [][]byte{payloadtest.NoiseLayer("y", 64)}})

	dir := t.TempDir()
	keys, err := sigstore.GenerateKeyPair([]byte("pass"))
	if err != nil {
		t.Fatal(err)
	}
	priv, pub := filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	_ = os.WriteFile(priv, keys.PrivateKey, 0o600)
	_ = os.WriteFile(pub, keys.PublicKey, 0o600)
	regd := filepath.Join(dir, "registries.d")
	_ = os.MkdirAll(regd, 0o700)
	_ = os.WriteFile(filepath.Join(regd, "default.yaml"), []byte("default-docker:\n  use-sigstore-attachments: true\n"), 0o600)
	sys := &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue, SystemRegistriesConfPath: "/dev/null", RegistriesDirPath: regd}

	sig, err := sigstore.NewSigner(sigstore.WithPrivateKeyFile(priv, []byte("pass")))
	if err != nil {
		t.Fatal(err)
	}
	defer sig.Close()
	srcRef, _ := docker.ParseReference("//" + src.Pullspec)
	dstRef, _ := docker.ParseReference("//" + srv.Host() + "/openshift-release-dev/ocp-release:4.16.15-x86_64")
	accept, _ := signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
	defer accept.Destroy()
	if _, err := copy.Image(context.Background(), accept, dstRef, srcRef, &copy.Options{SourceCtx: sys, DestinationCtx: sys, Signers: []*signer.Signer{sig}}); err != nil {
		t.Fatalf("signing copy: %v", err)
	}

	policy := filepath.Join(dir, "policy.json")
	_ = os.WriteFile(policy, []byte(fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{%q:[{"type":"sigstoreSigned","keyPath":%q,"signedIdentity":{"type":"matchRepository"}}]}}}`,
		srv.Host()+"/openshift-release-dev/ocp-release", pub)), 0o600)
	c, err := New(Options{KeyFiles: []string{}, Policy: policy, Sys: sys})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	signed := srv.Host() + "/openshift-release-dev/ocp-release@" + src.Digest.String()
	if v, err := c.Check(context.Background(), signed, src.Digest); err != nil || !v.Verified {
		t.Errorf("the signed payload: %+v %v", v, err)
	}
	if v, err := c.Check(context.Background(), other.Pullspec, other.Digest); err != nil || v.Verified || !strings.Contains(v.Reason, "policy") {
		t.Errorf("the unsigned payload: %+v %v", v, err)
	}
}

// tamper flips one byte of the signed JSON inside a signature.
func tamper(sig []byte) []byte {
	out := append([]byte(nil), sig...)
	i := bytes.Index(out, []byte("atomic container signature"))
	out[i] ^= 0x20
	return out
}

// TestRealRedHatSignature verifies a real signature made by Red Hat's
// signing service (a version 3 signature packet) with the key dtkbot trusts
// by default, served from a store laid out as mirror.openshift.com's.
func TestRealRedHatSignature(t *testing.T) {
	sig, err := os.ReadFile("testdata/redhat-rhel7.6-signature-1")
	if err != nil {
		t.Fatal(err)
	}
	d := digest.Digest("sha256:e3f12513a4b22a2d7c0e7c9207f52128113758d9d68c7d06b11a0ac7672966f7")
	st := &store{sigs: map[string][]byte{}}
	st.put(d, 1, sig)
	srv := httptest.NewServer(st)
	defer srv.Close()

	c, err := New(Options{Store: srv.URL}) // no keys configured: Red Hat's release key
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if want := "567E347AD0044ADE55BA8A5F199E2F91FD431D51"; !strings.Contains(c.Trust(), want) {
		t.Errorf("default trust %q does not name %s", c.Trust(), want)
	}
	v, err := c.Check(context.Background(), "registry.access.redhat.com/rhel7@"+d.String(), d)
	if err != nil || !v.Verified || v.By != "OpenPGP key 567E347AD0044ADE55BA8A5F199E2F91FD431D51" {
		t.Fatalf("the real signature: %+v %v", v, err)
	}
	// The same signature does not vouch for another digest, nor verifies
	// once a byte of it changed.
	other := digest.FromString("another payload")
	st.put(other, 1, sig)
	if v, _ := c.Check(context.Background(), "quay.io/x/y@"+other.String(), other); v.Verified || !strings.Contains(v.Reason, "signs \"sha256:e3f1") {
		t.Errorf("the real signature over another digest: %+v", v)
	}
	broken := append([]byte(nil), sig...)
	broken[len(broken)-20] ^= 0xff
	st.put(d, 1, broken)
	if v, _ := c.Check(context.Background(), "quay.io/x/y@"+d.String(), d); v.Verified {
		t.Errorf("a damaged real signature verified: %+v", v)
	}
	// A key of our own does not verify Red Hat's signature.
	st.put(d, 1, sig)
	mine := newKey(t, "mine")
	c2, _ := New(Options{Store: srv.URL, KeyFiles: []string{mine.file}})
	if v, _ := c2.Check(context.Background(), "quay.io/x/y@"+d.String(), d); v.Verified || !strings.Contains(v.Reason, "199E2F91FD431D51, which is not trusted") {
		t.Errorf("verified with the wrong key: %+v", v)
	}
}

// TestNoKeysMeansNoTrust: an explicit empty list of keys trusts nothing,
// and says so as the reason of every verdict.
func TestNoKeysMeansNoTrust(t *testing.T) {
	c, err := New(Options{KeyFiles: []string{}, Store: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromString("x")
	v, err := c.Check(context.Background(), "quay.io/x/y@"+d.String(), d)
	if err != nil || v.Verified || v.Reason != ErrNoTrust.Error() || c.Trust() != "" {
		t.Errorf("no trust: %+v %v, trust %q", v, err, c.Trust())
	}
}
