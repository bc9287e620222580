package plan

import (
	"testing"
	"time"

	"github.com/dtkbot/dtkbot/ledger"
)

func TestAuditDue(t *testing.T) {
	for _, tt := range []struct {
		name     string
		last     time.Time
		interval time.Duration
		promoted int
		due      bool
	}{
		{"never audited", time.Time{}, time.Hour, 1, true},
		{"within the interval", now.Add(-30 * time.Minute), time.Hour, 1, false},
		{"the interval passed", now.Add(-time.Hour), time.Hour, 1, true},
		{"audits off", time.Time{}, 0, 1, false},
		{"nothing promoted", time.Time{}, time.Hour, 0, false},
	} {
		if got := AuditDue(tt.last, now, tt.interval, tt.promoted); got != tt.due {
			t.Errorf("%s: %v", tt.name, got)
		}
	}
}

// TestAudit: a promoted tag someone moved or deleted is put back on the
// verified image it held (another tag than the kernel tag once the kernel
// tag holds it), or reported; one as dtkbot left it is left alone.
func TestAudit(t *testing.T) {
	m := kernel(kA, ledger.StatePromoted, "4.16.15")
	release := "quay.io/acme/dtk:4.16.15"
	promoted := map[string]ledger.Promotion{
		kernelA: {Ref: kernelA, Digest: m.ImageDigest, Kernel: kA, KernelKey: m.KernelKey(), Kind: ledger.TagKernel},
		release: {Ref: release, Digest: m.ImageDigest, Kernel: kA, KernelKey: m.KernelKey(), Kind: ledger.TagRelease, Release: "4.16.15"},
	}
	for _, tt := range []struct {
		name    string
		holds   map[string]string
		images  []ledger.Image
		repair  bool
		actions string
		check   func(t *testing.T, a []Action)
	}{
		{"as dtkbot left them", map[string]string{kernelA: m.ImageDigest, release: m.ImageDigest}, []ledger.Image{m}, true, "", nil},
		{"moved, repaired: re-pointed after its kernel tag", map[string]string{kernelA: m.ImageDigest, release: d1}, []ledger.Image{m}, true, "audit " + release,
			func(t *testing.T, a []Action) {
				if !a[0].Repoint || a[0].Image != m.PinnedImage() || a[0].After != kernelA || a[0].Reason != "moved to "+d1+" (dtkbot promoted it to "+m.ImageDigest+")" {
					t.Errorf("%+v", a[0])
				}
			}},
		{"the kernel tag gone: re-pointed on its own", map[string]string{kernelA: ""}, []ledger.Image{m}, true, "audit " + kernelA,
			func(t *testing.T, a []Action) {
				if !a[0].Repoint || a[0].After != "" || a[0].Reason != "gone (dtkbot promoted it to "+m.ImageDigest+")" {
					t.Errorf("%+v", a[0])
				}
			}},
		{"moved, report only", map[string]string{release: d1}, []ledger.Image{m}, false, "audit " + release,
			func(t *testing.T, a []Action) {
				if a[0].Repoint || a[0].Unrepaired != "" {
					t.Errorf("%+v", a[0])
				}
			}},
		{"moved, its image not in the ledger", map[string]string{release: d1}, nil, true, "audit " + release,
			func(t *testing.T, a []Action) {
				if a[0].Repoint || a[0].Unrepaired != "its image is not in the ledger" {
					t.Errorf("%+v", a[0])
				}
			}},
		{"a tag the audit could not look at", map[string]string{}, []ledger.Image{m}, true, "", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := Audit(Auditing{Promoted: promoted, Holds: tt.holds, Images: tt.images, Repair: tt.repair})
			if summary(a) != tt.actions {
				t.Fatalf("%q, want %q", summary(a), tt.actions)
			}
			if tt.check != nil {
				tt.check(t, a)
			}
		})
	}
}

// TestABIDue: each promoted DTK gets, per consumer, one verdict, as soon as
// a module set of another kernel of its stream and arch is promoted.
func TestABIDue(t *testing.T) {
	const kB = "5.14.0-427.40.1.el9_4"
	dtk := kernel(kB, ledger.StatePromoted, "4.16.17")
	dtk.PromotedAt = now
	base := kernel(kA, ledger.StatePromoted, "4.16.15")
	base.Consumer, base.PromotedAt = "acme-nic", now.Add(-time.Hour)
	base.Modules = []ledger.ModuleRecord{{Name: "nic.ko", Imports: map[string]uint32{"printk": 1}}}
	later := base
	later.PromotedAt = now.Add(time.Hour)
	judged := dtk
	judged.ABI = []ledger.ABIVerdict{{Consumer: "acme-nic"}}
	for _, tt := range []struct {
		name   string
		dtk    ledger.Image
		images []ledger.Image
		due    int
	}{
		{"a module set of another kernel: due", dtk, []ledger.Image{base}, 1},
		{"none yet: nothing", dtk, nil, 0},
		{"one promoted later than the DTK: not a base", dtk, []ledger.Image{later}, 0},
		{"judged already: once", judged, []ledger.Image{base}, 0},
		{"a DTK not promoted", kernel(kB, ledger.StateVerified, "4.16.17"), []ledger.Image{base}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			due := ABIDue([]ledger.Image{tt.dtk}, tt.images, map[string][]string{"acme-nic": nil})
			if len(due) != tt.due || (tt.due > 0 && (due[0].Base.Kernel != kA || due[0].Consumer != "acme-nic")) {
				t.Errorf("%+v", due)
			}
		})
	}
}

func TestNotifications(t *testing.T) {
	a, b := kernel(kA, ledger.StatePromoted, "4.16.15"), kernel("5.14.0-427.40.1.el9_4", ledger.StateNew, "4.16.17")
	a.NotifiedHash = "promoted"
	got := Notifications([]ledger.Image{b, a}, func(m ledger.Image) string { return m.State })
	if len(got) != 1 || got[0].Type != ActionNotify || got[0].Kernel != b.Kernel || got[0].Reason != ledger.StateNew {
		t.Errorf("%+v", got)
	}
}
