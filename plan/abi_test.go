package plan

import "testing"

// TestABIBaseIsTheNewestKernelBefore: of module sets promoted at once, the
// verdict's base is the newest kernel before the new one, kernels ordered
// as rpm orders them (427.10 after 427.9), not as strings.
func TestABIBaseIsTheNewestKernelBefore(t *testing.T) {
	for _, c := range []struct {
		a, b, k string
		want    bool
	}{
		{"5.14.0-427.10.1.el9_4", "5.14.0-427.9.1.el9_4", "5.14.0-427.95.1.el9_4", true},
		{"5.14.0-427.9.1.el9_4", "5.14.0-427.10.1.el9_4", "5.14.0-427.95.1.el9_4", false},
		{"5.14.0-427.9.1.el9_4", "5.14.0-427.50.1.el9_4", "5.14.0-427.40.1.el9_4", true},  // before the new kernel wins
		{"5.14.0-427.60.1.el9_4", "5.14.0-427.50.1.el9_4", "5.14.0-427.40.1.el9_4", true}, // none before: the newest
	} {
		if got := closer(c.a, c.b, c.k); got != c.want {
			t.Errorf("closer(%s, %s, %s) = %v, want %v", c.a, c.b, c.k, got, c.want)
		}
	}
}
