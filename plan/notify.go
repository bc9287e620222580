package plan

import (
	"sort"

	"github.com/dtkbot/dtkbot/ledger"
)

// Notifications are the notify actions due: every kernel (its DTK image)
// whose notice (its state, releases, image, and what hash adds) changed
// since it was last announced.
func Notifications(dtks []ledger.Image, hash func(ledger.Image) string) []Action {
	var out []Action
	for _, k := range dtks {
		if k.NotifiedHash != hash(k) {
			out = append(out, Action{Type: ActionNotify, Kernel: k.Kernel, Stream: k.Stream, Arch: k.Arch,
				Releases: k.Releases, Image: k.Image, Reason: k.State, KernelKey: k.KernelKey()})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KernelKey < out[j].KernelKey })
	return out
}
