package releaseinfo

// Report is what one release payload says about its kernels. Its JSON form is
// the output of `dtkbot release-info -o json` and what the state store keeps.
type Report struct {
	Release  string `json:"release"`
	Pullspec string `json:"pullspec"`
	// Digest is the digest of the manifest the pullspec names (a manifest
	// list for multi-arch payloads): the identity of the payload.
	Digest string `json:"digest"`
	// InstanceDigest is the per-arch manifest read, when Digest is a list.
	InstanceDigest string `json:"instance_digest,omitempty"`
	Arch           string `json:"arch"`
	// RHCOSVersions are the RHCOS build ids of the payload's OS images, from
	// their machine-os= annotations.
	RHCOSVersions []string `json:"rhcos_versions"`
	Streams       []Stream `json:"streams"`
	Warnings      []string `json:"warnings,omitempty"`
}

// Stream is one OS stream of a payload: RHEL 8, 9 or 10 RHCOS with its DTK.
type Stream struct {
	Stream       string `json:"stream"` // rhel-8, rhel-9, rhel-10
	OSTag        string `json:"os_tag"` // rhel-coreos, rhel-coreos-10, machine-os-content, ...
	OSImage      string `json:"os_image"`
	RHCOSVersion string `json:"rhcos_version"`
	DTKTag       string `json:"dtk_tag,omitempty"`
	DTKImage     string `json:"dtk_image"`
	// Kernel is the node kernel, VERSION-RELEASE without arch: the OS
	// image's where it was read, else the DTK's. KernelFull is as `uname -r`.
	Kernel     string `json:"kernel"`
	KernelFull string `json:"kernel_full"`
	// RTKernel is VERSION-RELEASE of the real-time kernel, empty if none.
	RTKernel     string `json:"rt_kernel"`
	RTKernelFull string `json:"rt_kernel_full,omitempty"`
	RHELVersion  string `json:"rhel_version"`
	// KernelSource says where Kernel was read ("unknown" when nowhere).
	KernelSource string `json:"kernel_source"`
	// DTKKernel is the kernel the payload's DTK declares (`uname -r`), for
	// the consistency check.
	DTKKernel       string `json:"dtk_kernel,omitempty"`
	DTKKernelSource string `json:"dtk_kernel_source,omitempty"`
	// Consistent is true when the DTK kernel and the OS kernel are both known
	// and equal: only then may a build be based on this stream.
	Consistent bool     `json:"consistent"`
	Warnings   []string `json:"warnings,omitempty"`
}

// Kernel sources, cheapest and most trustworthy first.
const (
	SourceDTKReleaseJSON = "driver-toolkit:" + dtkReleasePath
	SourceDTKLabel       = "driver-toolkit-label:kernel-version"
	SourceOSTreeLabel    = "os-label:ostree.linux"
	SourceRPMLabel       = "os-label:com.coreos.rpm.kernel"
	SourceMetaLayer      = "os-metalayer:" + metaJSONPath
	SourceUnknown        = "unknown"
)
