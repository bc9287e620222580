package version

import (
	"slices"
	"testing"
)

func TestCompareOrdersOpenShiftVersions(t *testing.T) {
	// Ascending, as a person reads a release history.
	want := []string{
		"4.9.0",
		"4.9.59",
		"4.10.0",
		"4.16.0-0.ci-2024-05-30-101010",
		"4.16.0-0.nightly-2024-05-01-000000",
		"4.16.0-0.nightly-2024-06-01-123456",
		"4.16.0-ec.1",
		"4.16.0-ec.2",
		"4.16.0-ec.10",
		"4.16.0-fc.1",
		"4.16.0-rc.2",
		"4.16.0-rc.9",
		"4.16.0-rc.10",
		"4.16.0",
		"4.16.2",
		"4.16.15",
		"4.17.0-rc.0",
		"4.17.0",
		"not-a-version",
		"",
	}
	got := slices.Clone(want)
	slices.Reverse(got)
	slices.SortFunc(got, Compare)
	if !slices.Equal(got, want) {
		t.Fatalf("sorted:\n got %q\nwant %q", got, want)
	}
	for i := range want {
		for j := range want {
			c := Compare(want[i], want[j])
			switch {
			case i < j && c >= 0, i > j && c <= 0, i == j && c != 0:
				t.Errorf("Compare(%q, %q) = %d", want[i], want[j], c)
			}
		}
	}
}

func TestNewer(t *testing.T) {
	if !Newer("4.16.0-rc.10", "4.16.0-rc.9") {
		t.Error("rc.10 is newer than rc.9")
	}
	if Newer("4.16.0-rc.9", "4.16.0-rc.10") || Newer("4.16.1", "4.16.1") {
		t.Error("rc.9 is not newer than rc.10, nor a version than itself")
	}
}

func TestKindAndMinor(t *testing.T) {
	for _, tc := range []struct{ v, kind, minor string }{
		{"4.16.15", KindGA, "4.16"},
		{"4.17.0-rc.10", KindRC, "4.17"},
		{"4.17.0-ec.3", KindEC, "4.17"},
		{"4.12.0-fc.1", KindFC, "4.12"},
		{"4.17.0-0.nightly-2024-06-01-123456", KindNightly, "4.17"},
		{"4.17.0-0.ci-2024-06-01-123456", KindCI, "4.17"},
		{"4.17.0-0.okd-2024-06-01", KindOther, "4.17"},
		{"", "", ""},
	} {
		if got := Kind(tc.v); got != tc.kind {
			t.Errorf("Kind(%q) = %q, want %q", tc.v, got, tc.kind)
		}
		if got := Minor(tc.v); got != tc.minor {
			t.Errorf("Minor(%q) = %q, want %q", tc.v, got, tc.minor)
		}
	}
	if !IsGA("4.16.15") || IsGA("4.16.0-rc.1") {
		t.Error("IsGA")
	}
}

// TestValid: the shape every release version read from outside must have
// (a payload's image-references and release-metadata, the update graph,
// release-controllers' tags) before it names anything.
func TestValid(t *testing.T) {
	for _, v := range []string{"4.16.15", "4.17.0-rc.1", "4.17.0-0.nightly-2024-06-01-123456", "4.16.0-0.ci-2024-05-30-101010", "4.16.15+build.1", "10.0.0"} {
		if !Valid(v) {
			t.Errorf("%q: not valid", v)
		}
	}
	for _, v := range []string{"", "4.16", "v4.16.15", "4.16.15 ", "4.16.15-", "4.16.15-rc/1", "../4.16.15", "4.16.15\n", "4.16.x"} {
		if Valid(v) {
			t.Errorf("%q: valid", v)
		}
	}
}
