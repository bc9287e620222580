package loopback

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestTestMains: every package of the module that has tests runs them
// through loopback.Run, so that none of them can reach the internet.
func TestTestMains(t *testing.T) {
	root := moduleRoot(t)
	missing, checked := packagesWithoutGuard(t, root)
	if checked < 10 {
		t.Fatalf("found only %d packages with tests under %s", checked, root)
	}
	if len(missing) > 0 {
		t.Fatalf("packages whose tests do not run through loopback.Run (add a main_test.go with "+
			"`func TestMain(m *testing.M) { os.Exit(loopback.Run(m)) }`, or call it from their TestMain): %s",
			strings.Join(missing, ", "))
	}
}

// TestTestMainsCheckFails: the walk finds a package without the guard, and
// one whose TestMain runs m.Run directly.
func TestTestMainsCheckFails(t *testing.T) {
	root := t.TempDir()
	write := func(path, text string) {
		t.Helper()
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/m\n")
	write("good/main_test.go", "package good\nfunc TestMain(m *testing.M) { os.Exit(loopback.Run(m)) }\n")
	write("good/x_test.go", "package good\n")
	write("bare/x_test.go", "package bare\nfunc TestX(t *testing.T) {}\n")
	write("direct/main_test.go", "package direct\nfunc TestMain(m *testing.M) { os.Exit(m.Run()) }\n")
	write("good/testdata/x_test.go", "package ignored\n")
	missing, checked := packagesWithoutGuard(t, root)
	if checked != 3 || strings.Join(missing, " ") != "bare direct" {
		t.Fatalf("checked %d, missing %q", checked, missing)
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// packagesWithoutGuard returns the directories under root (relative, sorted)
// that hold _test.go files but no TestMain calling loopback.Run, and how
// many directories with tests it checked. testdata, vendor and hidden
// directories are no packages of the module, nor are nested modules.
func packagesWithoutGuard(t *testing.T, root string) (missing []string, checked int) {
	t.Helper()
	tests := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			if path != root {
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if strings.HasSuffix(path, "_test.go") {
			tests[filepath.Dir(path)] = append(tests[filepath.Dir(path)], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, files := range tests {
		checked++
		if !guarded(t, files) {
			rel, _ := filepath.Rel(root, dir)
			missing = append(missing, filepath.ToSlash(rel))
		}
	}
	sort.Strings(missing)
	return missing, checked
}

// guarded: one of the files declares TestMain, and its body calls
// loopback.Run (or Run, in package loopback itself).
func guarded(t *testing.T, files []string) bool {
	t.Helper()
	fset := token.NewFileSet()
	for _, path := range files {
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parsing %s: %v", path, err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || fn.Name.Name != "TestMain" || fn.Body == nil {
				continue
			}
			found := false
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				switch fun := call.Fun.(type) {
				case *ast.SelectorExpr:
					if x, ok := fun.X.(*ast.Ident); ok && x.Name == "loopback" && fun.Sel.Name == "Run" {
						found = true
					}
				case *ast.Ident:
					if f.Name.Name == "loopback" && fun.Name == "Run" {
						found = true
					}
				}
				return !found
			})
			if found {
				return true
			}
		}
	}
	return false
}
