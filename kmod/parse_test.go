package kmod

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/imageread/layer"
)

// TestParseRealModule: what ParseModule reads of a module kbuild built is
// what the kernel's tools read (modinfo, modprobe --dump-modversions; the
// values below are theirs for the committed build).
func TestParseRealModule(t *testing.T) {
	hello := committed.parsed(t, cloud, "signed", "dtkbot_hello.ko.xz")
	if hello.Info.Name != "dtkbot_hello" || hello.Info.Vermagic != "6.1.0-57-cloud-amd64 SMP preempt mod_unload modversions " ||
		hello.Info.License != "GPL" || hello.Info.Version != "1.0" || len(hello.Info.Depends) != 0 || hello.Machine != "EM_X86_64" || hello.BigEndian {
		t.Errorf("modinfo %+v, machine %s", hello.Info, hello.Machine)
	}
	if len(hello.Versions) != 13 || hello.Versions[1] != (SymbolVersion{Name: "mutex_lock", CRC: 0x4dfa8d4b}) || hello.Versions[12].Name != "module_layout" {
		t.Errorf("__versions %v", hello.Versions)
	}
	if !slices.Equal(hello.Exports, []ExportedSymbol{{Name: "dtkbot_hello_greet", CRC: 0x31e32a79, HasCRC: true, GPLOnly: true}}) {
		t.Errorf("exports %+v", hello.Exports)
	}
	if !slices.Contains(hello.Undefined, "kstrdup") || slices.Contains(hello.Undefined, "module_layout") {
		t.Errorf("undefined %v", hello.Undefined)
	}
	if hello.Signature == nil || hello.Signature.Hash != "sha256" || hello.Compression != CompressionXZ {
		t.Errorf("signature %+v, compression %q", hello.Signature, hello.Compression)
	}
	user := committed.parsed(t, cloud, "", "dtkbot_user.ko")
	if !slices.Equal(user.Info.Depends, []string{"crc-itu-t", "dtkbot_hello"}) || user.Signature != nil || user.Name() != "dtkbot_user" {
		t.Errorf("dtkbot_user: depends %v, signature %+v", user.Info.Depends, user.Signature)
	}
}

func TestParseVersions(t *testing.T) {
	entry := func(order binary.ByteOrder, is64 bool, crc uint64, name string) []byte {
		e := make([]byte, versionEntrySize)
		if is64 {
			order.PutUint64(e, crc)
			copy(e[8:], name)
		} else {
			order.PutUint32(e, uint32(crc))
			copy(e[4:], name)
		}
		return e
	}
	// s390x is big-endian and 64-bit; a 32-bit kernel has 4-byte CRCs.
	be := append(entry(binary.BigEndian, true, 0xdeadbeef, "printk"), entry(binary.BigEndian, true, 0x1, "module_layout")...)
	if v, err := ParseVersions(be, true, binary.BigEndian); err != nil || !slices.Equal(v, []SymbolVersion{{"printk", 0xdeadbeef}, {"module_layout", 1}}) {
		t.Errorf("big-endian: %v %v", v, err)
	}
	if v, err := ParseVersions(entry(binary.LittleEndian, false, 0xcafe, "kfree"), false, binary.LittleEndian); err != nil || v[0] != (SymbolVersion{"kfree", 0xcafe}) {
		t.Errorf("32-bit: %v %v", v, err)
	}
	for name, raw := range map[string][]byte{
		"not whole entries": make([]byte, 65),
		"no name":           make([]byte, 64),
		"no NUL":            append(make([]byte, 8), bytes.Repeat([]byte("a"), 56)...),
	} {
		if _, err := ParseVersions(raw, true, binary.LittleEndian); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseSymvers(t *testing.T) {
	full := kernelFile(t, cloud, "Module.symvers")
	s, err := ParseSymvers(full)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 14415 || s["mutex_lock"] != (Symbol{CRC: 0x4dfa8d4b, Module: "vmlinux"}) || s["crc_itu_t"].Module != "lib/crc-itu-t" || !s["init_uts_ns"].GPLOnly {
		t.Errorf("%d symbols; mutex_lock %+v, crc_itu_t %+v", len(s), s["mutex_lock"], s["crc_itu_t"])
	}
	for name, tc := range map[string]struct {
		line string
		want Symbol
	}{
		"5.10 and later":             {"0x12345678\tfoo\tdrivers/foo\tEXPORT_SYMBOL_GPL\tFOO_NS\n", Symbol{CRC: 0x12345678, Module: "drivers/foo", GPLOnly: true, Namespace: "FOO_NS"}},
		"before 5.4 (RHEL 8)":        {"0x0000abcd\tfoo\tvmlinux\tEXPORT_SYMBOL\n", Symbol{CRC: 0xabcd, Module: "vmlinux"}},
		"5.4 to 5.9 (namespace 3rd)": {"0x00000001\tfoo\tFOO_NS\tdrivers/foo\tEXPORT_SYMBOL\n", Symbol{CRC: 1, Module: "drivers/foo", Namespace: "FOO_NS"}},
	} {
		got, err := ParseSymvers([]byte(tc.line))
		if err != nil || got["foo"] != tc.want {
			t.Errorf("%s: %+v %v", name, got["foo"], err)
		}
	}
	for _, bad := range []string{"12345678\tfoo\tvmlinux\tEXPORT_SYMBOL\n", "0x1\tfoo\tvmlinux\n", "0xzz\tfoo\tvmlinux\tEXPORT_SYMBOL\t\n",
		"0x1\tfoo\tvmlinux\tEXPORTED\t\n", "0x123456789\tfoo\tvmlinux\tEXPORT_SYMBOL\t\n", "0x1\t\tvmlinux\tEXPORT_SYMBOL\t\n"} {
		if _, err := ParseSymvers([]byte(bad)); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestParseModulesDepAndBuiltin(t *testing.T) {
	dep, err := ParseModulesDep(kernelFile(t, cloud, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	if dep["crc_itu_t"] != "kernel/lib/crc-itu-t.ko" || len(dep) < 1000 {
		t.Errorf("%d modules; crc_itu_t at %q", len(dep), dep["crc_itu_t"])
	}
	builtin, err := ParseModulesBuiltin(kernelFile(t, cloud, "modules.builtin"))
	if err != nil || len(builtin) < 100 || !slices.Contains(builtin, "binfmt_script") {
		t.Errorf("%d built-in modules (binfmt_script among them?), %v", len(builtin), err)
	}
	if m, err := ParseModulesDep([]byte("# comment\n\nkernel/a.ko.xz: kernel/b-c.ko.zst\n")); err != nil || m["a"] != "kernel/a.ko.xz" {
		t.Errorf("%v %v", m, err)
	}
	for _, bad := range []string{"no colon here\n", "kernel/a.txt:\n", ": kernel/a.ko\n"} {
		if _, err := ParseModulesDep([]byte(bad)); err == nil {
			t.Errorf("modules.dep %q: accepted", bad)
		}
	}
	if _, err := ParseModulesBuiltin([]byte("kernel/a.ko b.ko\n")); err == nil {
		t.Error("modules.builtin with two names on a line: accepted")
	}
}

func TestNewKernel(t *testing.T) {
	k := testKernel(t, rt)
	if !k.RT || k.Vermagic != "6.1.0-57-rt-amd64 SMP preempt_rt mod_unload modversions " || k.Modules["crc_itu_t"] == "" || k.Modules["zswap"] != BuiltIn {
		t.Errorf("%+v", k.Sources)
	}
	if _, err := NewKernel(cloud, nil, nil, nil, kernelFile(t, rt, "vermagic")); err == nil {
		t.Error("another kernel's vermagic: accepted")
	}
	for release, want := range map[string]bool{
		"5.14.0-427.37.1.el9_4.x86_64+rt": true, "4.18.0-305.19.1.rt7.91.el8_4.x86_64": true, "6.1.0-57-rt-amd64": true,
		"5.14.0-427.37.1.el9_4.x86_64": false, "6.1.0-57-cloud-amd64": false, "5.14.0-284.36.1.el9_2.x86_64": false,
	} {
		if IsRTRelease(release) != want {
			t.Errorf("IsRTRelease(%s) = %v", release, !want)
		}
	}
}

// TestSignatureTrailer: a trailer the kernel's mod_check_sig refuses is an
// error; a PKCS#7 message it would refuse is a Problem; signed attributes
// among them (openssl cms -sign's default, which the kernel refuses).
func TestSignatureTrailer(t *testing.T) {
	signed := committed.module(t, cloud, "signed", "dtkbot_hello.ko")
	trailer := func(mod []byte, p7 []byte, ms [8]byte) []byte {
		out := append(append([]byte{}, mod...), p7...)
		out = append(out, ms[:]...)
		out = binary.BigEndian.AppendUint32(out, uint32(len(p7)))
		return append(out, signatureMarker...)
	}
	elfBytes, sig, err := SplitSignature(signed)
	if err != nil || sig == nil || sig.Problem != "" {
		t.Fatalf("%+v %v", sig, err)
	}
	p7 := signed[len(elfBytes) : len(signed)-len(signatureMarker)-moduleSignatureSize]
	for name, data := range map[string][]byte{
		"marker only":         []byte(signatureMarker),
		"length too long":     append(append(append([]byte("x"), 0, 0, 2, 0, 0, 0, 0, 0), 0, 0, 0x10, 0), signatureMarker...),
		"not PKCS#7":          trailer(elfBytes, p7, [8]byte{0, 0, 1}),
		"non-zero parameters": trailer(elfBytes, p7, [8]byte{1, 0, 2}),
	} {
		if _, _, err := SplitSignature(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, tc := range map[string]struct {
		p7   []byte
		want string
	}{
		"garbage":        {[]byte("not DER at all"), "not a DER SEQUENCE"},
		"truncated":      {p7[:len(p7)-10], "malformed"},
		"trailing bytes": {append(append([]byte{}, p7...), 0), "malformed"},
	} {
		_, sig, err := SplitSignature(trailer(elfBytes, tc.p7, [8]byte{0, 0, 2}))
		if err != nil || sig == nil || !strings.Contains(sig.Problem, tc.want) {
			t.Errorf("%s: %+v %v", name, sig, err)
		}
	}
	attrs, err := os.ReadFile(filepath.Join("testdata", "modules", cloud, "signed-attrs", "dtkbot_hello.ko"))
	if err != nil {
		t.Fatal(err)
	}
	if _, sig, err := SplitSignature(attrs); err != nil || sig == nil || !strings.Contains(sig.Problem, "signed attributes") {
		t.Errorf("signed attributes: %+v %v", sig, err)
	}
}

func TestDecompress(t *testing.T) {
	xzed := committed.module(t, cloud, "signed", "dtkbot_hello.ko.xz")
	plain := committed.module(t, cloud, "signed", "dtkbot_hello.ko")
	for _, c := range []struct{ file, compression string }{{"dtkbot_hello.ko.xz", CompressionXZ}, {"dtkbot_hello.ko.zst", CompressionZstd}, {"dtkbot_hello.ko.gz", CompressionGzip}} {
		got, err := Decompress(committed.module(t, cloud, "signed", c.file), c.compression, 1<<20)
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%s: %d bytes, %v", c.file, len(got), err)
		}
		if _, err := Decompress(committed.module(t, cloud, "signed", c.file), c.compression, 4096); !errors.Is(err, layer.ErrLimit) {
			t.Errorf("%s over 4096 bytes: %v", c.file, err)
		}
		if _, err := Decompress(plain, c.compression, 1<<20); err == nil {
			t.Errorf("an uncompressed module named %s: accepted", c.file)
		}
	}
	// A block header asking for a 128 MiB dictionary (its CRC32 made
	// right): the block gets one of its own size, and decodes.
	big := append([]byte{}, xzed...)
	hdr := big[12:]
	size := (int(hdr[0]) + 1) * 4
	at := bytes.Index(hdr[:size], []byte{xzLZMA2Filter, 1}) + 2
	hdr[at] = 30 // (2|0) << (30/2 + 11): 128 MiB
	binary.LittleEndian.PutUint32(hdr[size-4:], crc32.ChecksumIEEE(hdr[:size-4]))
	var got []byte
	var err error
	if n := allocated(func() { got, err = Decompress(big, CompressionXZ, 1<<20) }); err != nil || !bytes.Equal(got, plain) || n > 1<<20 {
		t.Errorf("a 128 MiB dictionary: %d bytes allocated, %v", n, err)
	}
	if _, err := Decompress(append(append([]byte{}, xzed...), 0, 0, 0, 0), CompressionXZ, 1<<20); err == nil {
		t.Error("an xz stream with padding after it: accepted")
	}
}

func TestLoadCertificates(t *testing.T) {
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle.pem")
	a, _ := os.ReadFile("testdata/certs/trusted.pem")
	b, _ := os.ReadFile("testdata/certs/trusted-ec.pem")
	if err := os.WriteFile(bundle, append(append([]byte("# the keys of our nodes\n"), a...), b...), 0o600); err != nil {
		t.Fatal(err)
	}
	certs, err := LoadCertificates(bundle, "testdata/certs/trusted.der")
	if err != nil || len(certs) != 3 {
		t.Errorf("%d certificates, %v", len(certs), err)
	}
	garbage := filepath.Join(dir, "garbage")
	_ = os.WriteFile(garbage, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	for _, p := range []string{garbage, filepath.Join(dir, "missing.pem")} {
		if _, err := LoadCertificates(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// TestAModuleKeepsNoneOfItsBytes: what ParseModule returns holds no
// reference into the bytes it read (a signature's fields were slices of
// them, so every signed module of an image kept its whole content alive
// until the image was checked): the bytes overwritten, the signature still
// verifies.
func TestAModuleKeepsNoneOfItsBytes(t *testing.T) {
	for _, variant := range []string{"signed", "signed-keyid"} {
		data := bytes.Clone(committed.module(t, cloud, variant, "dtkbot_user.ko"))
		m, err := ParseModule("dtkbot_user.ko", data)
		if err != nil {
			t.Fatal(err)
		}
		clear(data)
		if _, err := m.Signature.Verify(committed.certs(t, "trusted.pem")); err != nil {
			t.Errorf("%s: the bytes read overwritten, the signature no longer verifies: %v", variant, err)
		}
	}
}
