package kmod

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	_ "crypto/sha1" // module signatures name their hash; these are the ones the kernel's PKCS#7 parser knows
	_ "crypto/sha256"
	_ "crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// The appended signature of a module (include/linux/module_signature.h):
// the module's bytes, a DER PKCS#7 (CMS) SignedData, a 12-byte struct
// module_signature { u8 algo, hash, id_type, signer_len, key_id_len;
// u8 __pad[3]; __be32 sig_len; }, then this marker.
const signatureMarker = "~Module signature appended~\n"

const (
	moduleSignatureSize = 12
	idPKCS7             = 2 // PKEY_ID_PKCS7
)

// Signature is a module's appended signature, parsed, with the digest of
// the bytes it covers; Verify checks it against certificates.
//
// The PKCS#7 verification is our own, on golang.org/x/crypto/cryptobyte
// and crypto/x509, rather than github.com/smallstep/pkcs7 (which the module
// graph has): that library cannot parse a SignerInfo naming its signer by
// subject key identifier (version 3, what `sign-file -k` writes), and it
// would verify signed attributes, which the kernel refuses in a module
// signature. What the kernel accepts (crypto/asymmetric_keys/pkcs7_verify.c,
// pkcs7_verify for VERIFYING_MODULE_SIGNATURE) is small: content type
// id-data, detached, no signed attributes, so the signature is an RSA
// (PKCS#1 v1.5) or ECDSA signature over the digest of the module's bytes.
type Signature struct {
	// Problem is set when the signature is there but malformed: a node
	// refuses the module as it would an unsigned one.
	Problem string `json:"problem,omitempty"`
	// Issuer and Serial name the signer when the SignerInfo does by issuer
	// and serial number (sign-file's default); KeyID when it does by subject
	// key identifier (sign-file -k).
	Issuer string `json:"issuer,omitempty"`
	Serial string `json:"serial,omitempty"`
	KeyID  string `json:"key_id,omitempty"`
	// Hash is the digest algorithm (sha256, ...), Algorithm the signature's
	// (RSA, ECDSA).
	Hash      string `json:"hash,omitempty"`
	Algorithm string `json:"algorithm,omitempty"`
	// Certificates is how many certificates the SignedData embeds (sign-file
	// embeds none; the kernel ignores them and uses its keyring).
	Certificates int `json:"certificates,omitempty"`

	rawIssuer []byte
	serial    *big.Int
	keyID     []byte
	hash      crypto.Hash
	signature []byte
	digest    []byte // of the module's bytes before the signature
}

// SplitSignature splits a module into its ELF bytes and its appended
// signature (nil when the module does not end with the marker). A
// signature whose trailer is inconsistent, as kernel/module_signature.c
// mod_check_sig would find it, is an error; a PKCS#7 message that does not
// parse is a Signature with a Problem.
func SplitSignature(data []byte) ([]byte, *Signature, error) {
	if !bytes.HasSuffix(data, []byte(signatureMarker)) {
		return data, nil, nil
	}
	rest := data[:len(data)-len(signatureMarker)]
	if len(rest) < moduleSignatureSize {
		return nil, nil, errors.New("signature marker without a signature")
	}
	ms := rest[len(rest)-moduleSignatureSize:]
	rest = rest[:len(rest)-moduleSignatureSize]
	sigLen := binary.BigEndian.Uint32(ms[8:12])
	if uint64(sigLen) >= uint64(len(rest)) {
		return nil, nil, fmt.Errorf("signature of %d bytes in a module of %d bytes", sigLen, len(rest))
	}
	if ms[2] != idPKCS7 {
		return nil, nil, fmt.Errorf("signature of type %d, not PKCS#7 (%d)", ms[2], idPKCS7)
	}
	if ms[0] != 0 || ms[1] != 0 || ms[3] != 0 || ms[4] != 0 || ms[5] != 0 || ms[6] != 0 || ms[7] != 0 {
		return nil, nil, errors.New("PKCS#7 signature info has unexpected non-zero params")
	}
	content := rest[:len(rest)-int(sigLen)]
	sig := parsePKCS7(rest[len(rest)-int(sigLen):])
	if sig.Problem == "" {
		h := sig.hash.New()
		h.Write(content)
		sig.digest = h.Sum(nil)
	}
	return content, sig, nil
}

// Object identifiers of RFC 5652 (CMS), RFC 8017 (PKCS #1), RFC 5758
// (ECDSA) and NIST (SHA-2).
var (
	oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidData       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}

	digestOIDs = map[string]crypto.Hash{
		"1.3.14.3.2.26":          crypto.SHA1,
		"2.16.840.1.101.3.4.2.4": crypto.SHA224,
		"2.16.840.1.101.3.4.2.1": crypto.SHA256,
		"2.16.840.1.101.3.4.2.2": crypto.SHA384,
		"2.16.840.1.101.3.4.2.3": crypto.SHA512,
	}
	// Signature algorithms: the key type, and the hash the OID implies
	// (0: any, given by digestAlgorithm).
	signatureOIDs = map[string]struct {
		algorithm string
		hash      crypto.Hash
	}{
		"1.2.840.113549.1.1.1":  {"RSA", 0},
		"1.2.840.113549.1.1.5":  {"RSA", crypto.SHA1},
		"1.2.840.113549.1.1.14": {"RSA", crypto.SHA224},
		"1.2.840.113549.1.1.11": {"RSA", crypto.SHA256},
		"1.2.840.113549.1.1.12": {"RSA", crypto.SHA384},
		"1.2.840.113549.1.1.13": {"RSA", crypto.SHA512},
		"1.2.840.10045.2.1":     {"ECDSA", 0},
		"1.2.840.10045.4.1":     {"ECDSA", crypto.SHA1},
		"1.2.840.10045.4.3.1":   {"ECDSA", crypto.SHA224},
		"1.2.840.10045.4.3.2":   {"ECDSA", crypto.SHA256},
		"1.2.840.10045.4.3.3":   {"ECDSA", crypto.SHA384},
		"1.2.840.10045.4.3.4":   {"ECDSA", crypto.SHA512},
	}
)

// parsePKCS7 parses the SignedData of a module signature (RFC 5652,
// sections 3, 5.1, 5.3).
func parsePKCS7(der []byte) *Signature {
	sig := &Signature{}
	fail := func(format string, args ...any) *Signature {
		return &Signature{Problem: "malformed PKCS#7 signature: " + fmt.Sprintf(format, args...)}
	}
	input := cryptobyte.String(der)
	var contentInfo, content, signedData cryptobyte.String
	var contentType asn1.ObjectIdentifier
	if !input.ReadASN1(&contentInfo, cbasn1.SEQUENCE) || !input.Empty() {
		return fail("not a DER SEQUENCE")
	}
	if !contentInfo.ReadASN1ObjectIdentifier(&contentType) || !contentType.Equal(oidSignedData) {
		return fail("not SignedData")
	}
	if !contentInfo.ReadASN1(&content, cbasn1.Tag(0).Constructed().ContextSpecific()) || !content.ReadASN1(&signedData, cbasn1.SEQUENCE) {
		return fail("no SignedData content")
	}
	var version int64
	var digestAlgorithms, encap cryptobyte.String
	if !signedData.ReadASN1Integer(&version) || !signedData.ReadASN1(&digestAlgorithms, cbasn1.SET) || !signedData.ReadASN1(&encap, cbasn1.SEQUENCE) {
		return fail("bad SignedData header")
	}
	var eContentType asn1.ObjectIdentifier
	if !encap.ReadASN1ObjectIdentifier(&eContentType) {
		return fail("bad encapsulated content info")
	}
	if !eContentType.Equal(oidData) {
		return fail("content type %s, not id-data (the kernel refuses it)", eContentType)
	}
	if !encap.Empty() {
		return fail("the content is embedded, not detached")
	}
	var certs cryptobyte.String
	var hasCerts bool
	if !signedData.ReadOptionalASN1(&certs, &hasCerts, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return fail("bad certificates")
	}
	for hasCerts && !certs.Empty() {
		var c cryptobyte.String
		if !certs.ReadAnyASN1Element(&c, nil) {
			return fail("bad certificates")
		}
		sig.Certificates++
	}
	if !signedData.SkipOptionalASN1(cbasn1.Tag(1).Constructed().ContextSpecific()) {
		return fail("bad CRLs")
	}
	var signerInfos, signerInfo cryptobyte.String
	if !signedData.ReadASN1(&signerInfos, cbasn1.SET) || !signedData.Empty() {
		return fail("bad signer infos")
	}
	if !signerInfos.ReadASN1(&signerInfo, cbasn1.SEQUENCE) {
		return fail("no signer")
	}
	if !signerInfos.Empty() {
		return fail("more than one signer")
	}
	var siVersion int64
	if !signerInfo.ReadASN1Integer(&siVersion) {
		return fail("bad signer version")
	}
	switch {
	case signerInfo.PeekASN1Tag(cbasn1.SEQUENCE):
		var ias, issuer cryptobyte.String
		sig.serial = new(big.Int)
		if !signerInfo.ReadASN1(&ias, cbasn1.SEQUENCE) || !ias.ReadASN1Element(&issuer, cbasn1.SEQUENCE) || !ias.ReadASN1Integer(sig.serial) || !ias.Empty() {
			return fail("bad issuer and serial number")
		}
		sig.rawIssuer = bytes.Clone(issuer) // not the module's bytes: a Module outlives them
		var rdn pkix.RDNSequence
		if rest, err := asn1.Unmarshal(issuer, &rdn); err != nil || len(rest) > 0 {
			return fail("bad issuer name")
		}
		var name pkix.Name
		name.FillFromRDNSequence(&rdn)
		sig.Issuer, sig.Serial = name.String(), hexColons(sig.serial.Bytes())
	case signerInfo.PeekASN1Tag(cbasn1.Tag(0).ContextSpecific()):
		var skid cryptobyte.String
		if !signerInfo.ReadASN1(&skid, cbasn1.Tag(0).ContextSpecific()) || len(skid) == 0 {
			return fail("bad subject key identifier")
		}
		sig.keyID = bytes.Clone(skid)
		sig.KeyID = hexColons(skid)
	default:
		return fail("signer identified neither by issuer and serial nor by key identifier")
	}
	digestOID, ok := readAlgorithm(&signerInfo)
	if !ok {
		return fail("bad digest algorithm")
	}
	hash, ok := digestOIDs[digestOID.String()]
	if !ok {
		return fail("digest algorithm %s is not one dtkbot knows", digestOID)
	}
	sig.hash, sig.Hash = hash, hashName(hash)
	if signerInfo.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return fail("it has signed attributes, which the kernel refuses in a module signature")
	}
	sigOID, ok := readAlgorithm(&signerInfo)
	if !ok {
		return fail("bad signature algorithm")
	}
	alg, ok := signatureOIDs[sigOID.String()]
	if !ok {
		return fail("signature algorithm %s is not one dtkbot knows", sigOID)
	}
	if alg.hash != 0 && alg.hash != hash {
		return fail("signature algorithm %s does not go with digest %s", sigOID, sig.Hash)
	}
	sig.Algorithm = alg.algorithm
	var value cryptobyte.String
	if !signerInfo.ReadASN1(&value, cbasn1.OCTET_STRING) || len(value) == 0 {
		return fail("bad signature value")
	}
	sig.signature = bytes.Clone(value)
	if !signerInfo.SkipOptionalASN1(cbasn1.Tag(1).Constructed().ContextSpecific()) || !signerInfo.Empty() {
		return fail("trailing data in the signer info")
	}
	// The digest algorithms of the SignedData must list the signer's.
	listed := false
	for !digestAlgorithms.Empty() {
		oid, ok := readAlgorithm(&digestAlgorithms)
		if !ok {
			return fail("bad digest algorithms")
		}
		listed = listed || oid.Equal(digestOID)
	}
	if !listed {
		return fail("the signer's digest algorithm is not among the SignedData's")
	}
	return sig
}

// readAlgorithm reads an AlgorithmIdentifier, ignoring its parameters.
func readAlgorithm(s *cryptobyte.String) (asn1.ObjectIdentifier, bool) {
	var alg cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		return nil, false
	}
	return oid, true
}

func hashName(h crypto.Hash) string {
	switch h {
	case crypto.SHA1:
		return "sha1"
	case crypto.SHA224:
		return "sha224"
	case crypto.SHA256:
		return "sha256"
	case crypto.SHA384:
		return "sha384"
	case crypto.SHA512:
		return "sha512"
	}
	return h.String()
}

// hexColons writes bytes as modinfo writes a key id: 7D:DD:8B:...
func hexColons(b []byte) string {
	if len(b) == 0 {
		return "00"
	}
	out := make([]byte, 0, len(b)*3)
	for i, c := range b {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, []byte(hex.EncodeToString([]byte{c}))...)
	}
	return string(bytes.ToUpper(out))
}

// Signer names who signed: the issuer and serial, or the key identifier.
func (s *Signature) Signer() string {
	switch {
	case s == nil:
		return ""
	case s.Issuer != "":
		return s.Issuer + " serial " + s.Serial
	case s.KeyID != "":
		return "key id " + s.KeyID
	}
	return ""
}

// ErrUntrustedSigner means no certificate given matches the signer.
var ErrUntrustedSigner = errors.New("signed by a key none of the certificates holds")

// ErrBadSignature means the signer's certificate is there but the
// signature does not verify: the module changed after it was signed, or
// the signature is forged.
var ErrBadSignature = errors.New("the signature does not verify (the module changed after it was signed?)")

// Verify returns the certificate whose key the signature verifies with:
// the one the signer names (by issuer and serial number, or by subject key
// identifier), as the kernel finds the key in its keyring. It does not
// check the certificates' validity period or chain: the kernel does not for
// module signatures either.
func (s *Signature) Verify(certs []*x509.Certificate) (*x509.Certificate, error) {
	if s.Problem != "" {
		return nil, errors.New(s.Problem)
	}
	var signer *x509.Certificate
	for _, c := range certs {
		if s.rawIssuer != nil && bytes.Equal(c.RawIssuer, s.rawIssuer) && c.SerialNumber.Cmp(s.serial) == 0 ||
			s.keyID != nil && bytes.Equal(c.SubjectKeyId, s.keyID) {
			signer = c
			break
		}
	}
	if signer == nil {
		return nil, fmt.Errorf("%w (%s)", ErrUntrustedSigner, s.Signer())
	}
	var err error
	switch pub := signer.PublicKey.(type) {
	case *rsa.PublicKey:
		if s.Algorithm != "RSA" {
			return nil, fmt.Errorf("an %s signature, but %s holds an RSA key", s.Algorithm, signer.Subject)
		}
		err = rsa.VerifyPKCS1v15(pub, s.hash, s.digest, s.signature)
	case *ecdsa.PublicKey:
		if s.Algorithm != "ECDSA" {
			return nil, fmt.Errorf("an %s signature, but %s holds an ECDSA key", s.Algorithm, signer.Subject)
		}
		if !ecdsa.VerifyASN1(pub, s.digest, s.signature) {
			err = ErrBadSignature
		}
	default:
		return nil, fmt.Errorf("%s holds a %T key", signer.Subject, pub)
	}
	if err != nil {
		return signer, ErrBadSignature
	}
	return signer, nil
}
