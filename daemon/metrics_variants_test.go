package daemon

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/internal/need"
	"github.com/dtkbot/dtkbot/ledger"
	"github.com/dtkbot/dtkbot/state"
)

// TestConsumerImagesByVariant: dtkbot_consumer_images counts each
// consumer's images by kernel variant and state, as the coverage index
// has them: a promoted RT image, a missing one (the release ships an RT
// kernel its DTK does not carry), a pending 64k one (carried, not built
// yet); the states nothing is in stay at 0; promtool takes it.
func TestConsumerImagesByVariant(t *testing.T) {
	r := start(t, servicePasser{}, "", func(d *Daemon) {
		d.Upgrades.Consumers = []string{"simple-kmod"}
		d.Upgrades.Variants = map[string][]string{"simple-kmod": {ledger.VariantDefault, ledger.VariantRT, ledger.Variant64K}}
	})
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	digest := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	dtk := func(arch, kernel, full, d string, variants ...ledger.VariantKernel) ledger.Image {
		return ledger.Image{Stream: "rhel-9", Arch: arch, Kernel: kernel, KernelFull: full, RTKernel: kernel, State: ledger.StatePromoted,
			Image: "quay.io/acme/driver-toolkit:" + full, ImageDigest: d, Published: true, FirstSeen: at, UpdatedAt: at, PromotedAt: at,
			KernelFiles: &ledger.KernelFilesCheck{Digest: d, Variants: variants, VariantsRead: true}}
	}
	image := func(k ledger.Image, variant, full, d string) ledger.Image {
		return ledger.Image{Consumer: "simple-kmod", Stream: k.Stream, Arch: k.Arch, Kernel: k.Kernel, Variant: variant, KernelFull: full,
			State: ledger.StatePromoted, Image: "quay.io/acme/simple-kmod:" + strings.ReplaceAll(full, "+", "_"), ImageDigest: d,
			Published: true, DTKImage: k.PinnedImage(), FirstSeen: at, UpdatedAt: at, PromotedAt: at}
	}
	const k1, k2 = "5.14.0-570.12.1.el9_6", "5.14.0-570.10.1.el9_6"
	amd := dtk("amd64", k1, k1+".x86_64", digest("a"), ledger.VariantKernel{Variant: ledger.VariantRT, KernelFull: k1 + ".x86_64+rt"})
	arm := dtk("arm64", k1, k1+".aarch64", digest("b"), ledger.VariantKernel{Variant: ledger.Variant64K, KernelFull: k1 + ".aarch64+64k"})
	arm.RTKernel = ""
	old := dtk("amd64", k2, k2+".x86_64", digest("c")) // ships an RT kernel it does not carry
	if err := r.d.Store.Update(func(tx *state.Tx) error {
		for _, m := range []ledger.Image{amd, arm, old, image(amd, ledger.VariantDefault, amd.KernelFull, digest("1")),
			image(amd, ledger.VariantRT, k1+".x86_64+rt", digest("2")), image(arm, ledger.VariantDefault, arm.KernelFull, digest("3"))} {
			if err := tx.PutImage(m); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_, metrics := get(t, r.url+"/metrics")
	for _, want := range []string{
		`dtkbot_consumer_images{consumer="simple-kmod",state="promoted",variant="default"} 2`,
		// old's, and start's promoted kernel's: their DTKs have no image of it yet
		`dtkbot_consumer_images{consumer="simple-kmod",state="pending",variant="default"} 2`,
		`dtkbot_consumer_images{consumer="simple-kmod",state="promoted",variant="rt"} 1`,
		`dtkbot_consumer_images{consumer="simple-kmod",state="missing",variant="rt"} 1`,
		`dtkbot_consumer_images{consumer="simple-kmod",state="pending",variant="64k"} 1`,
		`dtkbot_consumer_images{consumer="simple-kmod",state="promoted",variant="64k"} 0`,
		`dtkbot_consumer_images{consumer="simple-kmod",state="failed",variant="rt"} 0`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if n := strings.Count(metrics, "\ndtkbot_consumer_images{"); n != 3*7 {
		t.Errorf("%d series of dtkbot_consumer_images, want 21 (3 variants, 7 states)", n)
	}
	promtool := need.Command(t, "promtool", "Debian's prometheus package has it; .ci/run installs it")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(metrics)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
