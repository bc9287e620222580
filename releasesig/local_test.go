package releasesig

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// realDigest is what the real Red Hat signature in testdata signs.
const realDigest = digest.Digest("sha256:e3f12513a4b22a2d7c0e7c9207f52128113758d9d68c7d06b11a0ac7672966f7")

// mountVolume lays files out as the kubelet mounts a ConfigMap: each key
// a file in a timestamped directory, ..data a link to it, and a link per
// key at the top.
func mountVolume(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	ts := "..2026_11_25_12_00_00.000000001"
	if err := os.MkdirAll(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, ts, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.Remove(filepath.Join(dir, "..data"))
	if err := os.Symlink(ts, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		_ = os.Remove(filepath.Join(dir, name))
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRealRedHatSignatureFromLocalStores verifies the real Red Hat
// signature, with the built-in key and no network, from a local directory
// in each layout a disconnected installation has: the official store's
// tree, oc-mirror's ConfigMap (JSON and YAML, among its other files), the
// ConfigMap `oc adm release mirror` writes, and a ConfigMap mounted as a
// volume.
func TestRealRedHatSignatureFromLocalStores(t *testing.T) {
	sig, err := os.ReadFile("testdata/redhat-rhel7.6-signature-1")
	if err != nil {
		t.Fatal(err)
	}
	volume := t.TempDir()
	mountVolume(t, volume, map[string][]byte{"sha256-" + realDigest.Encoded() + "-1": sig})
	abs, _ := filepath.Abs("testdata/store-tree")
	onlyYAML := t.TempDir()
	yml, _ := os.ReadFile("testdata/oc-mirror/cluster-resources/signature-configmap.yaml")
	_ = os.WriteFile(filepath.Join(onlyYAML, "signature-configmap.yaml"), yml, 0o644)
	onlyJSON := t.TempDir()
	jsn, _ := os.ReadFile("testdata/oc-mirror/cluster-resources/signature-configmap.json")
	_ = os.WriteFile(filepath.Join(onlyJSON, "signature-configmap.json"), jsn, 0o644)
	for name, store := range map[string]string{
		"official tree":                      "testdata/store-tree",
		"official tree as a file:// URL":     "file://" + abs,
		"oc-mirror's working directory":      "testdata/oc-mirror",
		"oc-mirror's ConfigMap as YAML":      onlyYAML,
		"oc-mirror's ConfigMap as JSON":      onlyJSON,
		"oc adm release mirror's ConfigMap":  "testdata/oc-adm-release-mirror",
		"a ConfigMap mounted as a volume":    volume,
		"every layout in one directory tree": "testdata",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := New(Options{Store: store}) // Red Hat's release key
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			v, err := c.Check(context.Background(), "registry.access.redhat.com/rhel7@"+realDigest.String(), realDigest)
			if err != nil || !v.Verified || v.By != "OpenPGP key 567E347AD0044ADE55BA8A5F199E2F91FD431D51" {
				t.Fatalf("the real signature: %+v %v", v, err)
			}
			other := digest.FromString("another payload")
			if v, err := c.Check(context.Background(), "quay.io/x/y@"+other.String(), other); err != nil || v.Verified || !strings.Contains(v.Reason, "the store has no signature") {
				t.Errorf("another digest: %+v %v", v, err)
			}
		})
	}
}

// TestLocalStoreFollowsItsFiles: a ConfigMap volume updated in place (a
// signature added) is read again; a file that cannot be used says why in
// the verdict.
func TestLocalStoreFollowsItsFiles(t *testing.T) {
	trusted := newKey(t, "release")
	d := digest.FromString("release 4.16.15")
	dir := t.TempDir()
	mountVolume(t, dir, map[string][]byte{"sha256-" + digest.FromString("x").Encoded() + "-1": []byte("x")})
	c, err := New(Options{Store: dir, KeyFiles: []string{trusted.file}})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c.Check(context.Background(), "quay.io/x/y@"+d.String(), d); err != nil || v.Verified {
		t.Fatalf("before: %+v %v", v, err)
	}
	mountVolume(t, dir, map[string][]byte{"sha256-" + d.Encoded() + "-1": trusted.sign(t, atomic(d))})
	if v, err := c.Check(context.Background(), "quay.io/x/y@"+d.String(), d); err != nil || !v.Verified {
		t.Fatalf("after the volume was updated: %+v %v", v, err)
	}

	// A ConfigMap the cluster would not read, and one with a broken value.
	bad := t.TempDir()
	b64 := base64.StdEncoding.EncodeToString(trusted.sign(t, atomic(d)))
	_ = os.WriteFile(filepath.Join(bad, "unlabelled.yaml"), []byte(fmt.Sprintf("kind: ConfigMap\nmetadata: {name: sigs}\nbinaryData:\n  sha256-%s-1: %s\n", d.Encoded(), b64)), 0o644)
	_ = os.WriteFile(filepath.Join(bad, "broken.json"), []byte(fmt.Sprintf(`{"kind":"ConfigMap","metadata":{"name":"broken","labels":{%q:""}},"binaryData":{"sha256-%s-1":"!!!"}}`, SignatureLabel, d.Encoded())), 0o644)
	_ = os.WriteFile(filepath.Join(bad, "notes.yaml"), []byte("this: [is not"), 0o644)
	c2, err := New(Options{Store: bad, KeyFiles: []string{trusted.file}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := c2.Check(context.Background(), "quay.io/x/y@"+d.String(), d)
	if err != nil || v.Verified {
		t.Fatalf("%+v %v", v, err)
	}
	for _, want := range []string{"unlabelled.yaml: ConfigMap \"sigs\" is not labelled", "broken.json: ConfigMap \"broken\": key", "is not base64", "notes.yaml: not YAML or JSON"} {
		if !strings.Contains(v.Reason, want) {
			t.Errorf("reason %q does not say %q", v.Reason, want)
		}
	}
}

func TestLocalStoreMustBeADirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	_ = os.WriteFile(file, nil, 0o644)
	for _, store := range []string{"/nonexistent/signatures", file, "file:///nonexistent"} {
		if _, err := New(Options{Store: store}); err == nil || !strings.Contains(err.Error(), "verify.signature_store") {
			t.Errorf("%s: %v", store, err)
		}
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"https://mirror.openshift.com/x": "",
		"http://127.0.0.1:8080/x":        "",
		"file:///var/lib/signatures":     "/var/lib/signatures",
		"/var/lib/signatures":            "/var/lib/signatures",
		"signatures":                     "signatures",
	} {
		got, ok := LocalPath(in)
		if got != want || ok != (want != "") {
			t.Errorf("LocalPath(%q) = %q, %v", in, got, ok)
		}
	}
}

func FuzzConfigMapSignatures(f *testing.F) {
	for _, p := range []string{"testdata/oc-mirror/cluster-resources/signature-configmap.yaml", "testdata/oc-mirror/cluster-resources/signature-configmap.json",
		"testdata/oc-mirror/cluster-resources/idms-oc-mirror.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("kind: List\nitems:\n- kind: ConfigMap\n  metadata: {labels: {release.openshift.io/verification-signatures: ''}}\n  binaryData: {sha256-" + strings.Repeat("0", 64) + ": YQ==}\n"))
	f.Add([]byte("---\n---\nkind: ConfigMap\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		sigs, _, _ := configMapSignatures(raw)
		for _, s := range sigs {
			if s.Digest.Validate() != nil || !strings.HasPrefix(s.Key, "sha256-"+s.Digest.Encoded()) {
				t.Errorf("signature under key %q for digest %q", s.Key, s.Digest)
			}
		}
	})
}
