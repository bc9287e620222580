package coverage

import (
	"sort"

	"github.com/dtkbot/dtkbot/kmm"
)

// Preflights are the PreflightValidationOCPs of the index: every promoted
// kernel's, for each release shipping it, narrowed by release, arch and
// stream ("" matches all), in release order.
func (ix *Index) Preflights(release, arch, stream string) []kmm.PreflightValidationOCP {
	var found []kmm.PreflightValidationOCP
	for _, k := range ix.Kernels {
		if (arch != "" && k.Arch != arch) || (stream != "" && k.Stream != stream) {
			continue
		}
		for _, p := range k.KMM.Preflights {
			if release == "" || p.Release == release {
				found = append(found, p.Manifest)
			}
		}
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].Metadata.Name < found[j].Metadata.Name })
	return found
}

// KernelMappings are one consumer's kernel mappings: one per kernel its
// image is promoted for.
func (ix *Index) KernelMappings(consumer string) []kmm.KernelMapping {
	out := []kmm.KernelMapping{}
	for _, k := range ix.Kernels {
		for _, m := range k.KMM.Mappings {
			if m.Consumer == consumer {
				out = append(out, m.Mapping)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Literal < out[j].Literal })
	return out
}
