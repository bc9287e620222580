package notify

import (
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/ledger"
)

// FuzzMarker: a kernel's issue body carries its marker, and no other
// kernel's marker is found in it, whatever the kernel strings hold.
func FuzzMarker(f *testing.F) {
	f.Add("rhel-9", "amd64", "5.14.0-427.37.1.el9_4", "5.14.0-427.37.1.el9_40", "4.16.15")
	f.Add("rhel-10", "arm64", "6.12.0-55.9.1.el10_1", "6.12.0-55.9.1.el10_1 -->", "")
	f.Fuzz(func(t *testing.T, stream, arch, kernel, other, release string) {
		k := ledger.Image{Stream: stream, Arch: arch, Kernel: kernel, KernelFull: kernel, Releases: []string{release}, State: "new"}
		body := Body(k, nil, nil)
		if !strings.Contains(body, Marker(k)) {
			t.Fatalf("the body lacks its marker")
		}
		o := k
		o.Kernel = other
		if other != kernel && strings.Contains(body, Marker(o)) && !strings.Contains(kernel, "-->") && !strings.Contains(release, "<!--") {
			t.Errorf("kernel %q's body carries the marker of %q", kernel, other)
		}
	})
}
