package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestListenTLSAndUpgradesAreChecked: listen_tls needs both files and a
// pair that loads (the error names the files, never the key); upgrades:
// takes an http(s) public URL and a positive rate.
func TestListenTLSAndUpgradesAreChecked(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dtkbot"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	_ = os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "other.key"), []byte("-----BEGIN EC PRIVATE KEY-----\nc2VjcmV0\n-----END EC PRIVATE KEY-----\n"), 0o600)

	good := `graph: {channels: [stable-4.16]}
listen_tls: {cert_file: tls.crt, key_file: tls.key}
upgrades: {public_url: "https://dtkbot.apps.example.com", rate_limit: 50, burst: 100}
`
	path := filepath.Join(dir, "config.yaml")
	_ = os.WriteFile(path, []byte(good), 0o600)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c, k, ok := cfg.ListenTLSFiles(); !ok || c != filepath.Join(dir, "tls.crt") || k != filepath.Join(dir, "tls.key") || cfg.Upgrades.RateLimit != 50 {
		t.Errorf("%s %s %v %+v", c, k, ok, cfg.Upgrades)
	}
	for body, want := range map[string]string{
		"graph: {channels: [stable-4.16]}\nlisten_tls: {cert_file: tls.crt}\n":                       "line 2: listen_tls: needs cert_file and key_file",
		"graph: {channels: [stable-4.16]}\nlisten_tls: {cert_file: tls.crt, key_file: other.key}\n":  "listen_tls.cert_file: " + filepath.Join(dir, "tls.crt") + " and " + filepath.Join(dir, "other.key") + " do not load",
		"graph: {channels: [stable-4.16]}\nlisten_tls: {cert_file: none.crt, key_file: tls.key}\n":   "none.crt",
		"graph: {channels: [stable-4.16]}\nupgrades: {public_url: \"ftp://x\"}\n":                    "line 2: upgrades.public_url",
		"graph: {channels: [stable-4.16]}\nupgrades: {public_url: \"https://x.example.com/?a=b\"}\n": "upgrades.public_url",
		"graph: {channels: [stable-4.16]}\nupgrades:\n  rate_limit: 0\n  burst: 0\n":                 "line 3: upgrades.rate_limit: must be positive\nline 4: upgrades.burst",
	} {
		_ = os.WriteFile(path, []byte(body), 0o600)
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", body, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "c2VjcmV0") {
			t.Errorf("the error shows the key: %v", err)
		}
	}
}
