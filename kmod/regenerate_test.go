package kmod

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dtkbot/dtkbot/internal/need"
)

// TestMakeModulesScript runs testdata/make-modules.sh with the kernel's
// own tools (kbuild against three Debian header trees, sign-file, xz,
// zstd) into a temporary directory and checks that the checker judges
// what it makes exactly as it judges the committed modules, and that it
// reads them as modinfo and modprobe --dump-modversions do. It skips,
// saying what to install, on a machine without the tools; CI installs them
// (.ci/run).
func TestMakeModulesScript(t *testing.T) {
	need.Long(t, "builds six kernel modules (about 30 s)")
	dir := t.TempDir()
	out, err := exec.Command("./testdata/make-modules.sh", "--modules-only", dir).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		need.Missing(t, "the kernel's build tools are not installed:\n%s", out)
	}
	if err != nil {
		t.Fatalf("make-modules.sh: %v\n%s", err, out)
	}
	fresh := material{dir: dir}
	runCheckCases(t, fresh, checkCases())

	for _, tool := range []string{"modprobe", "modinfo"} {
		need.Command(t, tool, "apt-get install kmod")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "modules", "*", "dtkbot_*.ko"))
	if len(files) != 6 {
		t.Fatalf("%d modules built, want 6: %v", len(files), files)
	}
	for _, f := range files {
		rel, _ := filepath.Rel(filepath.Join(dir, "modules"), f)
		kernel, file := filepath.Dir(rel), filepath.Base(rel)
		m := fresh.parsed(t, kernel, "", file)
		dump, err := exec.Command("modprobe", "--dump-modversions", f).Output()
		if err != nil {
			t.Fatalf("modprobe --dump-modversions %s: %v", f, err)
		}
		var want, got []string
		for _, line := range strings.Split(strings.TrimSpace(string(dump)), "\n") {
			crc, name, _ := strings.Cut(line, "\t")
			var v uint64
			if _, err := fmt.Sscanf(crc, "0x%x", &v); err != nil {
				t.Fatalf("%s: %q", f, line)
			}
			want = append(want, fmt.Sprintf("%s=%#x", name, v))
		}
		for _, v := range m.Versions {
			got = append(got, fmt.Sprintf("%s=%#x", v.Name, v.CRC))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: __versions %v, modprobe says %v", rel, got, want)
		}
		for field, value := range map[string]string{"vermagic": m.Info.Vermagic, "depends": strings.Join(m.Info.Depends, ","), "name": m.Info.Name} {
			out, err := exec.Command("modinfo", "-F", field, f).Output()
			if err != nil {
				t.Fatalf("modinfo -F %s %s: %v", field, f, err)
			}
			if got := strings.TrimRight(string(out), "\n"); got != value {
				t.Errorf("%s: %s %q, modinfo says %q", rel, field, value, got)
			}
		}
	}
}
