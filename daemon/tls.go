package daemon

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"

	"github.com/rs/zerolog"
)

// TLSFiles are the daemon's certificate (with its chain) and private key,
// PEM files: read at start, and again whenever either changes (a renewed
// Secret, cert-manager), with no restart.
type TLSFiles struct {
	CertFile, KeyFile string
}

// certFiles serves the certificate of TLSFiles, reading the files again
// when one has changed since (its size, time or file: a Secret volume
// swaps a symlink). A pair that does not load (half written) leaves the
// previous certificate in use, and is said once.
type certFiles struct {
	files TLSFiles
	log   zerolog.Logger

	mu            sync.Mutex
	cert          *tls.Certificate
	certFI, keyFI os.FileInfo
	failedFI      [2]os.FileInfo
}

func newCertFiles(files TLSFiles, log zerolog.Logger) (*certFiles, error) {
	c := &certFiles{files: files, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

// load reads the pair if it changed since it was read.
func (c *certFiles) load() error {
	certFI, err := os.Stat(c.files.CertFile)
	if err != nil {
		return fmt.Errorf("reading listen_tls.cert_file: %w", err)
	}
	keyFI, err := os.Stat(c.files.KeyFile)
	if err != nil {
		return fmt.Errorf("reading listen_tls.key_file: %w", err)
	}
	if c.cert != nil && same(certFI, c.certFI) && same(keyFI, c.keyFI) {
		return nil
	}
	if same(certFI, c.failedFI[0]) && same(keyFI, c.failedFI[1]) {
		return nil // said already
	}
	cert, err := tls.LoadX509KeyPair(c.files.CertFile, c.files.KeyFile)
	if err != nil {
		c.failedFI = [2]os.FileInfo{certFI, keyFI}
		return fmt.Errorf("loading listen_tls (%s, %s): %w", c.files.CertFile, c.files.KeyFile, err)
	}
	c.cert, c.certFI, c.keyFI, c.failedFI = &cert, certFI, keyFI, [2]os.FileInfo{}
	return nil
}

func same(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// GetCertificate is tls.Config's: the pair as the files are now.
func (c *certFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.cert
	if err := c.load(); err != nil {
		c.log.Warn().Err(err).Msg("the TLS certificate files changed but do not load: still serving the previous certificate")
	} else if c.cert != before {
		c.log.Info().Str("cert_file", c.files.CertFile).Msg("TLS certificate read again")
	}
	return c.cert, nil
}

// tlsListener serves TLS on ln with the files' certificate.
func (d *Daemon) tlsConfig() (*tls.Config, error) {
	c, err := newCertFiles(*d.TLS, d.Log)
	if err != nil {
		return nil, err
	}
	return &tls.Config{GetCertificate: c.GetCertificate, MinVersion: tls.VersionTLS12}, nil
}
