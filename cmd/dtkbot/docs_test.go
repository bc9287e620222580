package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDocumentedFlagsAreTheCommands: docs/commands.md's table of each
// command lists every flag `dtkbot COMMAND --help` prints, with its short
// name and the default it prints, and no other.
func TestDocumentedFlagsAreTheCommands(t *testing.T) {
	data, err := os.ReadFile("../../docs/commands.md")
	if err != nil {
		t.Fatal(err)
	}
	type flagDoc struct{ short, def string }
	documented := map[string]map[string]flagDoc{} // command -> long flag -> short, default
	command := ""
	row := regexp.MustCompile("^\\| (?:`-([a-z])`, )?`--([a-z-]+)` \\| (.*?) \\| .* \\|$")
	for _, line := range strings.Split(string(data), "\n") {
		if c, ok := strings.CutPrefix(line, "## dtkbot "); ok {
			command = c
			documented[command] = map[string]flagDoc{}
			continue
		}
		if strings.HasPrefix(line, "| `-") && !row.MatchString(line) {
			t.Errorf("docs/commands.md: %s: a flag row is | `-s`, `--long` | default | meaning | or | `--long` | ...: %s", command, line)
		}
		if m := row.FindStringSubmatch(line); m != nil && command != "" {
			def := m[3]
			switch {
			case def == "none":
				def = ""
			case strings.HasPrefix(def, "`") || strings.HasPrefix(def, "*"):
				def = strings.Trim(def, "`*")
			default:
				t.Errorf("docs/commands.md: %s --%s: a default is `code`, none or *prose*, not %q", command, m[2], def)
			}
			documented[command][m[2]] = flagDoc{short: m[1], def: def}
		}
	}
	// pflag's lines: "  -o, --output string   usage (default "table")".
	flagLine := regexp.MustCompile(`^ +(?:-([a-z]), )?--([a-z-]+)(?: [a-zA-Z]+)?  +(.*)$`)
	defaultOf := regexp.MustCompile(`\(default "?(.*?)"?\)$`)
	for _, cmd := range []string{"reconcile", "run", "release-info", "kmod check", "report", "upgrade-check", "validate-config", "state export", "state check", "state recover"} {
		want, ok := documented[cmd]
		if !ok {
			t.Errorf("docs/commands.md has no section for dtkbot %s", cmd)
			continue
		}
		code, stdout, stderr := runCLI(t, append(strings.Fields(cmd), "--help")...)
		if code != 0 || stderr != "" {
			t.Fatalf("dtkbot %s --help: exit %d\n%s", cmd, code, stderr)
		}
		got := map[string]flagDoc{}
		for _, line := range strings.Split(stdout, "\n") {
			m := flagLine.FindStringSubmatch(line)
			if m == nil || m[2] == "help" {
				continue
			}
			f := flagDoc{short: m[1]}
			if d := defaultOf.FindStringSubmatch(strings.TrimSpace(m[3])); d != nil {
				f.def = d[1]
			}
			got[m[2]] = f
		}
		if len(got) == 0 {
			t.Fatalf("dtkbot %s --help printed no flags:\n%s", cmd, stdout)
		}
		for f, g := range got {
			w, ok := want[f]
			switch {
			case !ok:
				t.Errorf("dtkbot %s --%s is not in docs/commands.md", cmd, f)
			case w.def != g.def:
				t.Errorf("dtkbot %s --%s: --help says default %q, docs/commands.md %q", cmd, f, g.def, w.def)
			case w.short != g.short:
				t.Errorf("dtkbot %s --%s: --help says short -%s, docs/commands.md -%s", cmd, f, g.short, w.short)
			}
		}
		var extra []string
		for f := range want {
			if _, ok := got[f]; !ok {
				extra = append(extra, f)
			}
		}
		slices.Sort(extra)
		if len(extra) > 0 {
			t.Errorf("docs/commands.md documents flags dtkbot %s does not have: %v", cmd, extra)
		}
	}
}

// TestDocumentationLinksResolve: every relative link of README.md and
// docs/*.md names a file that exists and, with a #fragment, a heading of
// it (GitHub's anchors: lower case, punctuation dropped, spaces as dashes).
func TestDocumentationLinksResolve(t *testing.T) {
	pages, _ := filepath.Glob("../../docs/*.md")
	pages = append(pages, "../../README.md")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading := regexp.MustCompile(`(?m)^#+ (.*)$`)
	anchors := func(path string) map[string]bool {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		out := map[string]bool{}
		for _, m := range heading.FindAllStringSubmatch(string(data), -1) {
			a := strings.ToLower(m[1])
			a = regexp.MustCompile(`[^\p{L}\p{N} _-]`).ReplaceAllString(a, "")
			out[strings.ReplaceAll(a, " ", "-")] = true
		}
		return out
	}
	for _, page := range pages {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, frag, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s: the link %s names no file", page, target)
					continue
				}
			}
			if frag != "" && strings.HasSuffix(path, ".md") && !anchors(path)[frag] {
				t.Errorf("%s: the link %s names no heading of %s", page, target, path)
			}
		}
	}
}
