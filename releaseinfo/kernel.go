package releaseinfo

import (
	"fmt"
	"regexp"
	"strings"
)

// Kernel is one kernel build, as `uname -r` names it.
type Kernel struct {
	Version string // 5.14.0
	Release string // 427.22.1.el9_4
	Arch    string // x86_64
	RT      bool   // the "+rt" flavour of RHEL 9 and later (RHEL 8 writes "rt" into Release)
	// Pages64K is the "+64k" flavour of aarch64 (kernel-64k, RHEL 9.2 and
	// later): 64 KB pages.
	Pages64K bool
}

// kernelPattern is the shape of a `uname -r` string: VERSION-RELEASE.ARCH with
// an optional "+rt". RELEASE must carry a dist tag (el8_4, el9, el10_0, fc37)
// so that labels like "true" or "package kernel-rt-core is not installed" are
// never taken for kernels.
var (
	kernelPattern = regexp.MustCompile(`^([0-9]+\.[0-9]+(?:\.[0-9]+)?)-([0-9][0-9A-Za-z_]*(?:\.[0-9A-Za-z_]+)*)\.(x86_64|aarch64|s390x|ppc64le)(\+rt|\+64k)?$`)
	vrPattern     = regexp.MustCompile(`^([0-9]+\.[0-9]+(?:\.[0-9]+)?)-([0-9][0-9A-Za-z_]*(?:\.[0-9A-Za-z_]+)*)$`)
	distPattern   = regexp.MustCompile(`(?:^|\.)(el[0-9]+(?:_[0-9]+)?|fc[0-9]+)(?:\.|$)`)
)

const maxKernelLen = 128

// ParseKernel parses a `uname -r` string such as "5.14.0-427.22.1.el9_4.x86_64",
// "5.14.0-427.22.1.el9_4.x86_64+rt" or "5.14.0-427.22.1.el9_4.aarch64+64k".
// It is strict: anything else is an error (an RT kernel off x86_64, a 64k
// one off aarch64 among them: RHEL builds neither).
func ParseKernel(s string) (Kernel, error) {
	if len(s) > maxKernelLen {
		return Kernel{}, fmt.Errorf("kernel %.40q...: longer than %d characters", s, maxKernelLen)
	}
	m := kernelPattern.FindStringSubmatch(s)
	if m == nil {
		return Kernel{}, fmt.Errorf("kernel %q: not of the form VERSION-RELEASE.ARCH", s)
	}
	if !distPattern.MatchString(m[2]) {
		return Kernel{}, fmt.Errorf("kernel %q: release %q has no dist tag (el9_4, fc37, ...)", s, m[2])
	}
	k := Kernel{Version: m[1], Release: m[2], Arch: m[3], RT: m[4] == "+rt", Pages64K: m[4] == "+64k"}
	if (k.RT && k.Arch != "x86_64") || (k.Pages64K && k.Arch != "aarch64") {
		return Kernel{}, fmt.Errorf("kernel %q: RHEL builds %s kernels for %s only", s, m[4], map[bool]string{true: "x86_64", false: "aarch64"}[k.RT])
	}
	return k, nil
}

// ParseKernelVR parses VERSION-RELEASE without arch, as the DTK recipe's
// KERNEL_VERSION build argument takes it ("4.18.0-348.2.1.el8_5").
func ParseKernelVR(s string) (Kernel, error) {
	if len(s) > maxKernelLen {
		return Kernel{}, fmt.Errorf("kernel %.40q...: longer than %d characters", s, maxKernelLen)
	}
	m := vrPattern.FindStringSubmatch(s)
	if m == nil || !distPattern.MatchString(m[2]) {
		return Kernel{}, fmt.Errorf("kernel %q: not of the form VERSION-RELEASE (4.18.0-348.2.1.el8_5)", s)
	}
	for _, a := range []string{".x86_64", ".aarch64", ".s390x", ".ppc64le"} {
		if strings.HasSuffix(s, a) {
			return Kernel{}, fmt.Errorf("kernel %q: give VERSION-RELEASE without the architecture", s)
		}
	}
	return Kernel{Version: m[1], Release: m[2]}, nil
}

// VR is VERSION-RELEASE, the form package managers and the DTK recipe use.
func (k Kernel) VR() string {
	if k.Version == "" {
		return ""
	}
	return k.Version + "-" + k.Release
}

// String is the `uname -r` form.
func (k Kernel) String() string {
	if k.Version == "" {
		return ""
	}
	s := k.VR()
	if k.Arch != "" {
		s += "." + k.Arch
	}
	if k.RT {
		s += "+rt"
	}
	if k.Pages64K {
		s += "+64k"
	}
	return s
}

// IsZero reports whether k is the unknown kernel.
func (k Kernel) IsZero() bool { return k.Version == "" }

// Dist is the dist tag of the release: "el9_4", "el8_5", "el10_0", "fc37".
func (k Kernel) Dist() string {
	m := distPattern.FindStringSubmatch(k.Release)
	if m == nil {
		return ""
	}
	return m[1]
}

// RHEL is the RHEL minor version the dist tag names ("9.4" for el9_4), or
// only the major ("9") for a dist tag without minor; empty for non-RHEL.
func (k Kernel) RHEL() string {
	d := k.Dist()
	if !strings.HasPrefix(d, "el") {
		return ""
	}
	return strings.Replace(strings.TrimPrefix(d, "el"), "_", ".", 1)
}

// Stream is the OS stream the kernel belongs to: "rhel-8", "rhel-9", "rhel-10".
func (k Kernel) Stream() string {
	r := k.RHEL()
	if r == "" {
		return ""
	}
	major, _, _ := strings.Cut(r, ".")
	return "rhel-" + major
}

// goArch is KernelArch the other way round.
func goArch(kernelArch string) string {
	switch kernelArch {
	case "x86_64":
		return "amd64"
	case "aarch64":
		return "arm64"
	default:
		return kernelArch
	}
}

// KernelArch maps the architecture names of the update graph and of image
// configs (GOARCH style: amd64, arm64) to the kernel's (x86_64, aarch64).
func KernelArch(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	default:
		return goarch
	}
}
