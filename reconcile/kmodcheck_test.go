package reconcile

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/internal/citest"
	"github.com/dtkbot/dtkbot/internal/kmodtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/kmod"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/state"
	"github.com/dtkbot/dtkbot/verify"
)

// settle runs passes, an hour apart, until the consumer's image of kernel
// is promoted or failed (at most six).
func (w *consumerWorld) settle(kernel string) ledger.Image {
	w.t.Helper()
	w.builder.sync = true
	var c ledger.Image
	for i := 0; i < 6; i++ {
		_, _ = w.reconciler().RunOnce(context.Background(), w.now, Options{})
		w.now = w.now.Add(time.Hour)
		c = consumerBuilds(w.t.(*testing.T), w.store)[kernel]
		if c.State == ledger.StatePromoted || c.State == ledger.StateFailed {
			return c
		}
	}
	w.t.Fatalf("the consumer's image of %s did not settle: %+v", kernel, c)
	return c
}

func trustedCerts(t *testing.T, key string) []*x509.Certificate {
	t.Helper()
	certs, err := kmod.ParseCertificates(key+".pem", kmodtest.Cert(key))
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// TestKmodImageIsCheckedAgainstTheExactKernel: a consumer's image is
// promoted only when every module would load on the kernel of the DTK it
// was built FROM, as the kernel's module loader decides (real kbuild-built
// modules, a real kernel's Module.symvers): each rejection names the module
// and why, and no tag names a rejected image.
func TestKmodImageIsCheckedAgainstTheExactKernel(t *testing.T) {
	ci := func(f func(*citest.Builds)) func(*consumerWorld) { return func(w *consumerWorld) { w.ci.Change(f) } }
	for name, tc := range map[string]struct {
		tweak  func(w *consumerWorld)
		certs  string // a trusted key's name: signatures are checked
		noABI  bool
		accept bool
		want   []string // in the reason (rejected) or in Checked (accepted)
	}{
		"the right kernel": {accept: true, want: []string{"vermagic, symbol versions, dependencies"}},
		"a module for kernel-rt": {tweak: ci(func(b *citest.Builds) { b.Flavour = map[string]string{k1.Kernel: kmodtest.FlavourRT} }),
			want: []string{"dtkbot_hello.ko: ", "6 symbol versions differ from kernel " + k1.Kernel + ".x86_64", "mutex_lock", "kmalloc_trace", "preempt_rt"}},
		"another kernel's vermagic": {tweak: ci(func(b *citest.Builds) { b.Vermagic = map[string]string{k1.Kernel: k2.Kernel + ".x86_64"} }),
			want: []string{"dtkbot_hello.ko: vermagic", k2.Kernel + ".x86_64"}},
		"a dependency missing": {tweak: ci(func(b *citest.Builds) { b.Only = map[string][]string{k1.Kernel: {"dtkbot_user"}} }),
			want: []string{"dtkbot_user.ko: ", "depends on modules that are neither kernel " + k1.Kernel + ".x86_64's nor in the image: dtkbot_hello"}},
		"unsigned, with signing certs": {certs: "trusted", want: []string{"dtkbot_hello.ko: ", "not signed"}},
		"signed by another key":        {certs: "trusted", tweak: ci(func(b *citest.Builds) { b.Signed = map[string]string{k1.Kernel: "other"} }), want: []string{"dtkbot_hello.ko: ", "a key none of the 1 trusted certificates holds"}},
		"signed by the trusted key":    {certs: "trusted", accept: true, tweak: ci(func(b *citest.Builds) { b.Signed = map[string]string{k1.Kernel: "trusted"} }), want: []string{"signatures"}},
		"without the module KMM loads": {tweak: func(w *consumerWorld) { w.moduleName = "simple-kmod" },
			want: []string{"the module a node loads, simple-kmod (modprobe), is not under /opt/lib/modules/" + k1.Kernel + ".x86_64/: the image holds dtkbot_hello.ko, dtkbot_user.ko"}},
		"with the module KMM loads": {accept: true, tweak: func(w *consumerWorld) { w.moduleName = "dtkbot-user" }, want: []string{"dependencies"}},
		"a DTK without them, abi: false": {noABI: true, accept: true, tweak: func(w *consumerWorld) { w.builder.noKernelFiles = map[string]bool{k1.Kernel: true} },
			want: []string{"ABI not checked: the promoted DTK", "vermagic, dependencies"}},
	} {
		t.Run(name, func(t *testing.T) {
			w := newConsumerWorld(t)
			if tc.tweak != nil {
				tc.tweak(w)
			}
			if tc.certs != "" {
				w.certs = trustedCerts(t, tc.certs)
			}
			w.skipABI = tc.noABI
			w.publish("stable-4.16", "4.16.15", k1)
			c := w.settle(k1.Kernel)
			_, tagged := w.srv.TagDigest(kmodRepo, k1.Kernel+".x86_64")
			if !tc.accept {
				if c.State != ledger.StateFailed || tagged || len(c.Rejections) == 0 {
					t.Fatalf("not rejected: %+v (tagged %v)", c, tagged)
				}
				for _, want := range tc.want {
					if !strings.Contains(c.Rejections[0].Reason, want) {
						t.Errorf("the rejection %q does not say %q", c.Rejections[0].Reason, want)
					}
				}
				return
			}
			if c.State != ledger.StatePromoted || !tagged {
				t.Fatalf("not promoted: %+v", c)
			}
			for _, want := range tc.want {
				if !strings.Contains(c.Checked, want) {
					t.Errorf("checked %q does not say %q", c.Checked, want)
				}
			}
			if len(c.Modules) != 2 || c.Modules[0].Name != "dtkbot_hello" || c.Modules[1].Name != "dtkbot_user" {
				t.Fatalf("the modules recorded: %+v", c.Modules)
			}
			hello, user := c.Modules[0], c.Modules[1]
			if _, ok := hello.Imports["_printk"]; !ok || len(hello.Imports) < 6 {
				t.Errorf("dtkbot_hello's imports: %v", hello.Imports)
			}
			if _, ok := user.Imports["dtkbot_hello_greet"]; ok {
				t.Errorf("an import from another module of the image is recorded as the kernel's: %v", user.Imports)
			}
			if strings.Join(user.Depends, ",") != "dtkbot_hello,crc-itu-t" && strings.Join(user.Depends, ",") != "crc-itu-t,dtkbot_hello" {
				t.Errorf("dtkbot_user's depends: %v", user.Depends)
			}
			if signed := tc.certs != ""; signed != (hello.Signer != "") || (signed && !strings.Contains(hello.Signer, "dtkbot test signing key (trusted)")) {
				t.Errorf("the signer recorded: %q", hello.Signer)
			}
		})
	}
}

// TestKernelFilesReadOncePerKernel: the kernel's files are read from the
// promoted DTK once per DTK and kernel, whichever consumers and passes
// need them; the state keeps them, compactly.
func TestKernelFilesReadOncePerKernel(t *testing.T) {
	w := newConsumerWorld(t)
	w.builder.wholeSymvers = true
	w.second = true
	w.publish("stable-4.16", "4.16.15", k1)
	c := w.settle(k1.Kernel)
	if c.State != ledger.StatePromoted {
		t.Fatalf("%+v", c)
	}
	dtk := kernels(t, w.store)[k1.Kernel]
	for i := 0; i < 6 && consumerBuildsOf(t, w, "beta")[k1.Kernel].State != ledger.StatePromoted; i++ {
		w.pass()
	}
	if b := consumerBuildsOf(t, w, "beta")[k1.Kernel]; b.State != ledger.StatePromoted {
		t.Fatalf("the second consumer: %+v", b)
	}
	top := dtkTopLayer(t, w, dtk)
	st := w.srv.Stats()
	// One read when the DTK was verified, one of its kernel files: not one
	// per consumer or pass.
	if n := st.ByPath["GET /v2/dtkbot/driver-toolkit/blobs/"+top]; n != 2 {
		t.Errorf("the DTK's top layer was read %d times, want 2 (its verification, its kernel files)", n)
	}
	data, ok, err := w.store.KernelFiles(dtk.ImageDigest + "/" + k1.Kernel + ".x86_64")
	if err != nil || !ok {
		t.Fatalf("the kernel is not kept in the state: %v", err)
	}
	s, err := kmod.DecodeStoredKernel(data)
	if err != nil || len(s.Kernel.Symvers) != 14415 {
		t.Fatalf("the kernel kept: %v, %d symbols", err, len(s.Kernel.Symvers))
	}
	t.Logf("the state keeps %d bytes for the kernel (%d symbols, %d modules)", len(data), len(s.Kernel.Symvers), len(s.Kernel.Modules))
}

func consumerBuildsOf(t *testing.T, w *consumerWorld, name string) map[string]ledger.Image {
	t.Helper()
	out := map[string]ledger.Image{}
	exp, err := w.store.Export()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range exp.Consumers {
		if c.Consumer == name {
			out[c.Kernel] = c
		}
	}
	return out
}

// dtkTopLayer is the digest of the last layer of a promoted DTK.
func dtkTopLayer(t *testing.T, w *consumerWorld, dtk ledger.Image) string {
	t.Helper()
	body, _, ok := w.srv.Manifest("dtkbot/driver-toolkit", dtk.ImageDigest)
	if !ok {
		t.Fatalf("no manifest %s", dtk.ImageDigest)
	}
	var m struct {
		Layers []struct{ Digest string }
	}
	if err := json.Unmarshal(body, &m); err != nil || len(m.Layers) == 0 {
		t.Fatalf("manifest %s: %v", body, err)
	}
	return m.Layers[len(m.Layers)-1].Digest
}

// TestABIVerdictOnANewKernel: when a new kernel's DTK is promoted, each
// consumer's newest promoted modules (of another kernel of the stream) are
// judged against its Module.symvers: "would load" when every CRC they
// import is the new kernel's, else the symbols that changed; the verdict
// is recorded on the new kernel's DTK, once.
func TestABIVerdictOnANewKernel(t *testing.T) {
	for name, tc := range map[string]struct {
		abi     string
		loads   bool
		changed []string
	}{
		"the same kABI":    {abi: kmodtest.Older, loads: true},
		"the kABI changed": {abi: kmodtest.RT, changed: []string{"kmalloc_caches", "kmalloc_trace", "module_layout", "mutex_lock", "mutex_unlock", "param_ops_int"}},
	} {
		t.Run(name, func(t *testing.T) {
			w := newConsumerWorld(t)
			w.publish("stable-4.16", "4.16.15", k1)
			first := w.settle(k1.Kernel)
			if first.State != ledger.StatePromoted {
				t.Fatalf("the first kernel's consumer image: %+v", first)
			}
			if v := kernels(t, w.store)[k1.Kernel].ABI; len(v) != 0 {
				t.Errorf("a verdict on the first kernel, with no module set before it: %+v", v)
			}
			w.builder.kernelABI = map[string]string{k2.Kernel: tc.abi}
			w.publish("stable-4.16", "4.16.17", k2)
			second := w.settle(k2.Kernel)
			dtk := kernels(t, w.store)[k2.Kernel]
			if len(dtk.ABI) != 1 {
				t.Fatalf("the new kernel's verdicts: %+v", dtk.ABI)
			}
			v := dtk.ABI[0]
			if v.Consumer != "acme-nic" || v.From != k1.Kernel+".x86_64" || v.Loads != tc.loads || strings.Join(v.Changed, ",") != strings.Join(tc.changed, ",") || len(v.Gone) != 0 {
				t.Errorf("the verdict %+v", v)
			}
			t.Logf("%s", v)
			if !tc.loads && (second.State != ledger.StateFailed || !strings.Contains(second.Reason, "symbol versions differ")) {
				t.Errorf("the verdict said the modules would not load, the new kernel's own image was %s: %s", second.State, second.Reason)
			}
			// Decided once: the next pass reads nothing for it.
			before := w.srv.Stats()
			w.pass()
			if after := kernels(t, w.store)[k2.Kernel].ABI; len(after) != 1 || w.srv.Stats().Sub(before).BlobGETs != 0 {
				t.Errorf("the next pass: verdicts %+v, %d blob reads", after, w.srv.Stats().Sub(before).BlobGETs)
			}
		})
	}
}

// TestKmodCheckCost measures one kmod check as the pass makes it, on a
// world DTK with a whole Module.symvers (14,415 symbols): the first for a
// kernel reads the DTK's kernel files and keeps them; the next (another
// consumer, the next pass) reads only the kmod image.
func TestKmodCheckCost(t *testing.T) {
	w := newConsumerWorld(t)
	w.builder.wholeSymvers = true
	w.publish("stable-4.16", "4.16.15", k1)
	c := w.settle(k1.Kernel)
	if c.State != ledger.StatePromoted {
		t.Fatalf("%+v", c)
	}
	st, err := state.Open(t.TempDir()+"/fresh.db", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v := &verify.Kmod{Registry: w.client(), Limits: imageread.DefaultLimits(), Kernels: st}
	check := verify.KmodCheck{Image: c.PinnedImage(), Arch: "amd64", KernelFull: c.KernelFull, ModulePath: "opt/lib/modules/" + c.KernelFull + "/", DTK: c.DTKImage}
	var costs []registrytest.Stats
	for i := 0; i < 2; i++ {
		before := w.srv.Stats()
		if _, err := v.VerifyKmod(context.Background(), check); err != nil {
			t.Fatal(err)
		}
		costs = append(costs, w.srv.Stats().Sub(before))
	}
	data, _, _ := st.KernelFiles(strings.SplitN(c.DTKImage, "@", 2)[1] + "/" + c.KernelFull)
	t.Logf("one kmod check, the first for its kernel: %d registry requests (+%d token), %d bytes served; the next: %d requests, %d bytes; the state keeps %d bytes for the kernel",
		costs[0].Requests, costs[0].Tokens, costs[0].BytesServed, costs[1].Requests, costs[1].BytesServed, len(data))
	if costs[1].BytesServed >= costs[0].BytesServed || costs[1].Requests >= costs[0].Requests || len(data) == 0 {
		t.Errorf("the second check read the DTK again: %+v then %+v", costs[0], costs[1])
	}
	if len(data) > 256<<10 {
		t.Errorf("the state keeps %d bytes for one kernel", len(data))
	}
}
