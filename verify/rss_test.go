package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/dtkbot/dtkbot/imageread"
	"github.com/dtkbot/dtkbot/internal/citest"
	"github.com/dtkbot/dtkbot/internal/kmodtest"
	"github.com/dtkbot/dtkbot/internal/payloadtest"
	"github.com/dtkbot/dtkbot/internal/registrytest"
	"github.com/dtkbot/dtkbot/kmod"
	"github.com/dtkbot/dtkbot/registry"
)

// rssChildEnv, when set, makes the test binary the child of
// BenchmarkVerifyPeakRSS: TestPeakRSSChild reads what to verify from it.
const rssChildEnv = "DTKBOT_RSS_CHILD"

// rssJob is what the child verifies.
type rssJob struct {
	Images      []string `json:"images"`
	DTK         string   `json:"dtk"`
	Concurrency int      `json:"concurrency"`
	Budget      int64    `json:"budget"` // 0: kmod.DefaultMemoryBudget; -1: no budget
}

// BenchmarkVerifyPeakRSS measures the peak resident memory of verifying
// consumer images, each holding 300 MB of modules (2 of 40 MB and 4 of 20
// MB as .ko.zst, 60 of 1 MB as .ko.xz, 20 of 3 MB as .ko, 1,000 real
// modules of 10 KB as .ko), 16 at once as a pass runs them with
// registry.concurrency: 16, in a child process (the test binary run again)
// so that the registry holding the images, in this process, is not
// counted: its peak resident set (VmHWM). With the default memory budget,
// then with the GOMEMLIMIT the Deployment sets too, then without a budget. The deployment's limit is 512 MiB
// (deploy/kubernetes/base/deployment.yaml).
//
//	go test -run '^$' -bench BenchmarkVerifyPeakRSS -benchtime 1x ./verify/
func BenchmarkVerifyPeakRSS(b *testing.B) {
	srv := registrytest.New().Server()
	defer srv.Close()
	w := payloadtest.New(srv.Registry, srv.Host())
	dtkFiles := append([]payloadtest.TarEntry{payloadtest.File("etc/driver-toolkit-release.json", []byte(`{"KERNEL_VERSION":"`+kmodKernel+`"}`))},
		citest.DTKKernelFiles(kmodKernel, "", true)...)
	w.PushImage("acme/dtk", "dtk", payloadtest.Image{OCI: true, Layers: [][]byte{payloadtest.TarGz(dtkFiles...)}})
	dtkDigest, _ := srv.TagDigest("acme/dtk", "dtk")

	entries, total := modules300MB(b)
	// Two layers of modules: a layer is at most 256 MiB (imageread.Limits).
	w.PushImage("acme/kmod", "big", payloadtest.Image{OCI: true, Layers: [][]byte{
		payloadtest.NoiseLayer("ubi-minimal", 4<<20), payloadtest.TarGz(entries[:6]...), payloadtest.TarGz(entries[6:]...)}})
	job := rssJob{DTK: srv.Host() + "/acme/dtk@" + dtkDigest.String(), Concurrency: 16}
	for range job.Concurrency {
		job.Images = append(job.Images, srv.Host()+"/acme/kmod:big")
	}
	b.Logf("%d modules, %d MB, in each of %d images verified at once", len(entries), total>>20, len(job.Images))
	deployed := deployedGOMEMLIMIT(b)
	b.ResetTimer()
	for range b.N {
		for _, c := range []struct {
			name, gomemlimit string
			budget           int64
		}{{"the default budget", "", 0}, {"the default budget, GOMEMLIMIT=" + deployed + " as deployed", deployed, 0}, {"no budget", "", -1}} {
			job.Budget = c.budget
			peak := peakRSSOfChild(b, job, c.gomemlimit)
			b.Logf("peak RSS verifying %d images of %d MB of modules at once, %s: %d MiB", len(job.Images), total>>20, c.name, peak>>20)
			if c.budget == 0 && c.gomemlimit == "" {
				b.ReportMetric(float64(peak>>20), "peak-RSS-MiB")
				if peak >= 512<<20 {
					b.Errorf("peak RSS %d MiB: over the deployment's limit of 512 MiB", peak>>20)
				}
			}
		}
	}
}

// deployedGOMEMLIMIT is the GOMEMLIMIT of deploy/kubernetes's Deployment.
func deployedGOMEMLIMIT(b *testing.B) string {
	data, err := os.ReadFile("../deploy/kubernetes/base/deployment.yaml")
	if err != nil {
		b.Fatal(err)
	}
	m := regexp.MustCompile(`name: GOMEMLIMIT.*\n\s+value: (\S+)`).FindSubmatch(data)
	if m == nil {
		b.Fatal("deploy/kubernetes/base/deployment.yaml sets no GOMEMLIMIT")
	}
	return string(m[1])
}

// modules300MB are the module files of the benchmark's image, the six
// .ko.zst first: about 300 MB in all, incompressible content appended to a real module (the ELF parser
// reads its section headers; what follows the file's end is no section).
func modules300MB(b *testing.B) ([]payloadtest.TarEntry, int) {
	dir := "opt/lib/modules/" + kmodKernel + "/"
	hello := kmodtest.Modules(kmodtest.FlavourCloud, kmodKernel)["dtkbot_hello.ko"]
	rng := rand.New(rand.NewChaCha8([32]byte{'d', 't', 'k', 'b', 'o', 't'}))
	padded := func(n int) []byte {
		out := make([]byte, len(hello)+n)
		copy(out, hello)
		for i := len(hello); i < len(out); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8 && i+j < len(out); j++ {
				out[i+j] = byte(v >> (8 * j))
			}
		}
		return out
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	var entries []payloadtest.TarEntry
	total := 0
	add := func(name string, content, stored []byte) {
		entries = append(entries, payloadtest.File(dir+name, stored))
		total += len(content)
	}
	for i := range 6 {
		size := 20 << 20
		if i < 2 {
			size = 40 << 20
		}
		m := padded(size)
		add(fmt.Sprintf("extra/vendor%d.ko.zst", i), m, enc.EncodeAll(m, nil))
	}
	for i := range 60 {
		m := padded(1 << 20)
		var buf bytes.Buffer
		xw, err := xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 1 << 20}.NewWriter(&buf) // as kbuild writes them
		if err != nil {
			b.Fatal(err)
		}
		if _, err := xw.Write(m); err != nil {
			b.Fatal(err)
		}
		if err := xw.Close(); err != nil {
			b.Fatal(err)
		}
		add(fmt.Sprintf("kernel/drivers/x%02d.ko.xz", i), m, buf.Bytes())
	}
	for i := range 20 {
		m := padded(3 << 20)
		add(fmt.Sprintf("kernel/drivers/p%02d.ko", i), m, m)
	}
	for i := range 1000 {
		add(fmt.Sprintf("kernel/small/m%04d.ko", i), hello, hello)
	}
	return entries, total
}

// peakRSSOfChild runs the test binary again as TestPeakRSSChild with job,
// and returns the child's peak resident set, as it read it from
// /proc/self/status (VmHWM) before it ended. (Its rusage's ru_maxrss will
// not do: Go starts a child with vfork, and exec records the RSS of the
// memory it leaves, this process's, as the child's maximum.)
func peakRSSOfChild(b *testing.B, job rssJob, gomemlimit string) int64 {
	data, err := json.Marshal(job)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPeakRSSChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), rssChildEnv+"="+string(data))
	if gomemlimit != "" {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+gomemlimit)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("the child: %v\n%s", err, out)
	}
	if heap := regexp.MustCompile(`max HeapAlloc.*`).Find(out); heap != nil {
		b.Logf("the child's heap: %s", heap)
	}
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(out)
	if m == nil || !bytes.Contains(out, []byte("verified")) {
		b.Fatalf("the child verified nothing, or did not say its peak:\n%s", out)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// TestPeakRSSChild is BenchmarkVerifyPeakRSS's child: it verifies the
// images of $DTKBOT_RSS_CHILD at once through one verifier, as a pass does,
// and skips when the variable is not set.
func TestPeakRSSChild(t *testing.T) {
	spec := os.Getenv(rssChildEnv)
	if spec == "" {
		t.Skip("run by BenchmarkVerifyPeakRSS only")
	}
	var job rssJob
	if err := json.Unmarshal([]byte(spec), &job); err != nil {
		t.Fatal(err)
	}
	f := false
	reg := registry.New(registry.Options{TLSVerify: &f, RegistriesConf: "/dev/null", Attempts: 1, Timeout: 5 * time.Minute, Concurrency: job.Concurrency})
	v := &Kmod{Registry: reg, Limits: imageread.DefaultLimits()}
	if job.Budget >= 0 {
		v.Read.Budget = kmod.NewBudget(job.Budget)
	}
	stop := make(chan struct{})
	var maxHeap, maxInuse, maxSys uint64
	var polled sync.WaitGroup
	polled.Go(func() {
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			maxHeap, maxInuse, maxSys = max(maxHeap, ms.HeapAlloc), max(maxInuse, ms.HeapInuse), max(maxSys, ms.HeapSys-ms.HeapReleased)
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	var wg sync.WaitGroup
	for _, img := range job.Images {
		wg.Go(func() {
			res, err := v.VerifyKmod(context.Background(), KmodCheck{Image: img, Arch: "amd64", KernelFull: kmodKernel,
				ModulePath: "opt/lib/modules/" + kmodKernel + "/", DTK: job.DTK})
			if err != nil {
				t.Errorf("%s: %v", img, err)
				return
			}
			t.Logf("%s: verified, %d modules", img, len(res.Modules))
		})
	}
	wg.Wait()
	close(stop)
	polled.Wait()
	t.Logf("max HeapAlloc %d MiB, HeapInuse %d MiB, HeapSys-Released %d MiB", maxHeap>>20, maxInuse>>20, maxSys>>20)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	hwm := regexp.MustCompile(`VmHWM:\s+\d+ kB`).Find(status)
	t.Logf("peak resident memory (/proc/self/status) %s", hwm)
}
