package version

import "testing"

func TestCompareKernel(t *testing.T) {
	// Each pair is older, newer, as `rpmdev-vercmp` orders them.
	for _, c := range [][2]string{
		{"5.14.0-427.9.1.el9_4", "5.14.0-427.10.1.el9_4"},
		{"5.14.0-427.37.1.el9_4", "5.14.0-427.40.1.el9_4"},
		{"5.14.0-427.50.1.el9_4", "5.14.0-570.19.1.el9_6"},
		{"4.18.0-372.9.1.el8", "5.14.0-70.13.1.el9_0"},
		{"5.14.0-427.37.1.el9_4", "5.14.0-427.37.1.el9_4.1"}, // runs left over
		{"5.14.0-284.11.1.el9_2", "5.14.0-284.11.1.el9_10"},
		{"5.14.0-1.el9", "5.14.0-1.1.el9"}, // a digit run is newer than a letter run
		{"5.14.0-070", "5.14.0-71"},        // leading zeros ignored
		{"5.14", "5.14.0-1"},
		{"6.12.0-55.9.1.el10_1", "6.12.0-124.8.1.el10_1"},
	} {
		if got := CompareKernel(c[0], c[1]); got != -1 {
			t.Errorf("CompareKernel(%s, %s) = %d, want -1", c[0], c[1], got)
		}
		if got := CompareKernel(c[1], c[0]); got != 1 {
			t.Errorf("CompareKernel(%s, %s) = %d, want 1", c[1], c[0], got)
		}
	}
	for _, k := range []string{"5.14.0-427.37.1.el9_4", "5.14.0-070.1", ""} {
		if got := CompareKernel(k, k); got != 0 {
			t.Errorf("CompareKernel(%s, itself) = %d", k, got)
		}
	}
	if got := CompareKernel("5.14.0-070.1", "5.14.0-70.1"); got != 0 {
		t.Errorf("leading zeros: %d, want 0 (rpm: equal)", got)
	}
}
