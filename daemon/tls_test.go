package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/cvotest"
	"github.com/dtkbot/dtkbot/internal/poll"
)

// testCA makes certificates for 127.0.0.1, signed by a CA of its own.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dtkbot test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue writes a certificate for 127.0.0.1 with serial and its key to
// cert and key, each through a rename (as a Secret volume swaps them).
func (ca *testCA) issue(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "dtkbot"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeRenamed(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	writeRenamed(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func writeRenamed(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestTLSListenerServesTheGraphAndReadsRenewedCertificates: with
// listen_tls, a TLS client that trusts the CA reads the update graph as
// the CVO does; a renewed certificate is served from the next connection
// on, with no restart; a half-written pair leaves the last good one in use.
func TestTLSListenerServesTheGraphAndReadsRenewedCertificates(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.issue(t, 100, certFile, keyFile)
	r := start(t, &fakePasser{}, "", func(d *Daemon) {
		newUpgradeWorld(t, d.Store)
		d.TLS = &TLSFiles{CertFile: certFile, KeyFile: keyFile}
	}, upgradesOn(time.Now))
	base := strings.Replace(r.url, "http://", "https://", 1)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}, DisableKeepAlives: true}}
	serial := func() int64 {
		resp, err := client.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serial(); s != 100 {
		t.Fatalf("serial %d", s)
	}
	_, updates, conditional, err := cvotest.Fetch(context.Background(), client, base+"/api/upgrades_info/v1/graph", "amd64", "stable-4.16", "id", "4.16.10")
	if err != nil || len(updates) != 1 || len(conditional) != 1 {
		t.Fatalf("over TLS: %v %+v %+v", err, updates, conditional)
	}
	// A client that does not trust the CA is refused; plain HTTP too.
	if _, err := http.Get(base + "/healthz"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("an untrusting client: %v", err)
	}
	if resp, err := http.Get(r.url + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Errorf("plain HTTP answered 200 on the TLS listener")
	}
	ca.issue(t, 200, certFile, keyFile)
	poll.Until(t, "the renewed certificate", 0, func() bool { return serial() == 200 })
	writeRenamed(t, keyFile, []byte("-----BEGIN EC PRIVATE KEY-----\nhalf"))
	if s := serial(); s != 200 {
		t.Errorf("with a broken key file: serial %d", s)
	}
}

// TestTLSFilesThatDoNotLoadStopTheStart: a daemon whose listen_tls files
// do not load does not serve at all.
func TestTLSFilesThatDoNotLoadStopTheStart(t *testing.T) {
	dir := t.TempDir()
	d := &Daemon{Schedule: "@every 1h", TLS: &TLSFiles{CertFile: filepath.Join(dir, "none.crt"), KeyFile: filepath.Join(dir, "none.key")}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := d.Serve(context.Background(), ln); err == nil || !strings.Contains(err.Error(), "listen_tls.cert_file") {
		t.Errorf("Serve: %v", err)
	}
}
