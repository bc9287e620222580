package kmod

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// seedModules are real modules of testdata, for the fuzzers' corpora.
func seedModules(f *testing.F, patterns ...string) [][]byte {
	f.Helper()
	var out [][]byte
	for _, p := range patterns {
		files, _ := filepath.Glob(filepath.Join("testdata", "modules", p))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			out = append(out, data)
		}
	}
	if len(out) == 0 {
		f.Fatalf("no seed modules for %v", patterns)
	}
	return out
}

// FuzzParseModule: any bytes as a module (ELF, .modinfo, __versions, the
// symbol table, the signature) are an error or a Module, never a panic, and
// checking what parses never panics either.
func FuzzParseModule(f *testing.F) {
	for _, m := range seedModules(f, cloud+"/*.ko", cloud+"/signed-ecdsa/*.ko", rt+"/dtkbot_hello.ko") {
		f.Add(m)
	}
	certs, err := LoadCertificates("testdata/certs/trusted.pem", "testdata/certs/trusted-ec.pem")
	if err != nil {
		f.Fatal(err)
	}
	k := &Kernel{Release: cloud, Vermagic: cloud + " SMP preempt mod_unload modversions ",
		Symvers: map[string]Symbol{"mutex_lock": {CRC: 0x4dfa8d4b, Module: "vmlinux"}, "crc_itu_t": {CRC: 1, Module: "lib/crc-itu-t", GPLOnly: true, Namespace: "NS"}},
		Modules: map[string]string{"crc_itu_t": "kernel/lib/crc-itu-t.ko"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseModule("fuzz.ko", data)
		if err != nil {
			return
		}
		if m.Size != int64(len(data)) {
			t.Errorf("size %d of %d bytes", m.Size, len(data))
		}
		r := Check(&Image{Pullspec: "fuzz", ModulePath: DefaultModulePath(cloud), Modules: []*Module{m}}, k, CheckOptions{Certs: certs})
		if r.Accepted != r.Modules[0].Loads {
			t.Errorf("accepted %v, the module loads %v", r.Accepted, r.Modules[0].Loads)
		}
	})
}

// FuzzParseVersions: any __versions section, 64- or 32-bit, either byte
// order: entries or an error.
func FuzzParseVersions(f *testing.F) {
	for _, m := range seedModules(f, cloud+"/*.ko") {
		ef, err := elf.NewFile(bytes.NewReader(m))
		if err != nil {
			f.Fatal(err)
		}
		raw, err := ef.Section("__versions").Data()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw, true, false)
	}
	f.Add(make([]byte, 64), false, true)
	f.Fuzz(func(t *testing.T, raw []byte, is64, bigEndian bool) {
		var order binary.ByteOrder = binary.LittleEndian
		if bigEndian {
			order = binary.BigEndian
		}
		v, err := ParseVersions(raw, is64, order)
		if err == nil && len(v) != len(raw)/versionEntrySize {
			t.Errorf("%d entries from %d bytes", len(v), len(raw))
		}
		for _, e := range v {
			if e.Name == "" || len(e.Name) >= versionEntrySize {
				t.Errorf("name %q", e.Name)
			}
			if !is64 && e.CRC > 0xffffffff {
				t.Errorf("a 32-bit CRC %#x", e.CRC)
			}
		}
	})
}

// FuzzParseSymvers: any Module.symvers is symbols or an error, and every
// symbol has a name and an exporting module.
func FuzzParseSymvers(f *testing.F) {
	f.Add([]byte("0x4c9d28b0\tphys_base\tvmlinux\tEXPORT_SYMBOL\t\n0x7140de40\tinit_uts_ns\tvmlinux\tEXPORT_SYMBOL_GPL\t\n"))
	f.Add([]byte("0x09a34a2b\tcrc_itu_t\tlib/crc-itu-t\tEXPORT_SYMBOL\t\n"))
	f.Add([]byte("0x0000abcd\tfoo\tvmlinux\tEXPORT_SYMBOL\n"))
	f.Add([]byte("0x00000001\tfoo\tFOO_NS\tdrivers/foo\tEXPORT_SYMBOL\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSymvers(data)
		if err != nil {
			return
		}
		for name, sym := range s {
			if name == "" || sym.Module == "" {
				t.Errorf("symbol %q %+v", name, sym)
			}
		}
		_, _ = ParseModulesDep(data)
		_, _ = ParseModulesBuiltin(data)
	})
}

// FuzzSplitSignature: any trailer and PKCS#7 message is a Signature (with
// a Problem if need be) or an error; verifying it never panics, and only a
// signature without a Problem can verify.
func FuzzSplitSignature(f *testing.F) {
	for _, m := range seedModules(f, cloud+"/signed/dtkbot_user.ko", cloud+"/signed-keyid/dtkbot_user.ko", cloud+"/signed-ecdsa/dtkbot_user.ko", cloud+"/signed-attrs/dtkbot_hello.ko") {
		// The ELF does not matter here: keep the fuzzer on the trailer.
		elfBytes, _, err := SplitSignature(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte("module bytes"), m[len(elfBytes):]...))
	}
	certs, err := LoadCertificates("testdata/certs/trusted.pem", "testdata/certs/trusted-ec.pem", "testdata/certs/other.pem")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		content, sig, err := SplitSignature(data)
		if err != nil || sig == nil {
			return
		}
		if len(content) >= len(data) {
			t.Errorf("content of %d bytes from %d", len(content), len(data))
		}
		if _, err := sig.Verify(certs); err == nil && sig.Problem != "" {
			t.Errorf("a signature with a problem verified: %s", sig.Problem)
		}
		_ = sig.Signer()
	})
}

// FuzzDecompress: any bytes named .ko.xz, .ko.zst or .ko.gz decompress
// within the limit or fail, and decoding allocates a bounded amount,
// whatever the headers ask for (a dictionary, a window, a content size):
// the limit, a few times over, and a little per byte of input.
func FuzzDecompress(f *testing.F) {
	for _, m := range seedModules(f, cloud+"/signed/dtkbot_user.ko.*") {
		f.Add(m)
	}
	content := []byte("a module, in two blocks")
	f.Add(craftXZ([]xzTestBlock{{18, content}, {40, content}}, nil))
	f.Add(craftXZ([]xzTestBlock{{18, content}, {40, content}}, []xzRecord{{2 * blockLen(len(content)), uint64(2 * len(content))}}))
	f.Add(craftZstd(content, 27, true))
	f.Add(craftZstd(content, 30, false))
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range []string{CompressionXZ, CompressionZstd, CompressionGzip} {
			var out []byte
			var err error
			got := allocated(func() { out, err = Decompress(data, c, limit) })
			if err == nil && len(out) > limit {
				t.Errorf("%s: %d bytes over the limit", c, len(out))
			}
			if bound := uint64(8*limit + 64*len(data)); got > bound {
				t.Errorf("%s: %d bytes allocated for %d bytes of input (%v); want at most %d", c, got, len(data), err, bound)
			}
			if size, ok := DeclaredSize(data, c); err == nil && ok && c != CompressionGzip && int64(len(out)) != size {
				t.Errorf("%s: %d bytes, the container declares %d", c, len(out), size)
			}
		}
	})
}
