package kmod

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
)

// maxCertFileBytes bounds a certificate file (a PEM bundle of a few keys).
const maxCertFileBytes = 1 << 20

// LoadCertificates reads X.509 certificates from files, each PEM (one or
// more CERTIFICATE blocks) or DER, as a node's Secure Boot database or
// `mokutil --import` takes them.
func LoadCertificates(paths ...string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, p := range paths {
		certs, err := loadCertificateFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, certs...)
	}
	return out, nil
}

func loadCertificateFile(path string) ([]*x509.Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading certificate %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCertFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading certificate %s: %w", path, err)
	}
	if len(data) > maxCertFileBytes {
		return nil, fmt.Errorf("reading certificate %s: over %d bytes", path, maxCertFileBytes)
	}
	return ParseCertificates(path, data)
}

// ParseCertificates parses PEM (CERTIFICATE blocks; others are skipped) or
// DER certificates; name only names them in errors.
func ParseCertificates(name string, data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate %s: %w", name, err)
		}
		out = append(out, c)
	}
	if len(out) > 0 {
		return out, nil
	}
	c, err := x509.ParseCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate %s: neither PEM with a CERTIFICATE nor DER: %w", name, err)
	}
	return []*x509.Certificate{c}, nil
}
