package plan

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestOnlyThePlanDecides holds the module to the shape of the pass: no code
// outside package plan builds a plan.Action (the plan decides every
// action), and no code outside package ledger sets an image's state (an
// image changes state only through the transitions of ledger.Image, which
// refuse an illegal one): no State assigned a state, no ledger.Image built
// with one. Tests are free to build what they check against.
func TestOnlyThePlanDecides(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("the module's root: %v", err)
	}
	var found []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")):
			return filepath.SkipDir
		case d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go"):
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		found = append(found, outsiders(t, path, rel)...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		t.Error(f)
	}
}

// TestOutsidersAreFound: the check finds each way of deciding outside the
// plan (testdata/outside/outside.go has one of each), and passes what is
// allowed there (comparisons).
func TestOutsidersAreFound(t *testing.T) {
	got := outsiders(t, "testdata/outside/outside.go", "reconcile/outside.go")
	want := []string{
		"reconcile/outside.go:12: builds a plan.Action",
		"reconcile/outside.go:13: builds a plan.Action",
		"reconcile/outside.go:14: builds a plan.Action",
		"reconcile/outside.go:15: builds a plan.Action",
		"reconcile/outside.go:19: sets an image's state (ledger.StateFailed)",
		"reconcile/outside.go:20: sets an image's state (a ledger.Image with State)",
		"reconcile/outside.go:24: sets an image's state (…, ledger.StateFailed)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("found:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// outsiders lists what file path (rel to the module, which says its
// package's folder) decides outside the plan.
func outsiders(t *testing.T, path, rel string) []string {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.ToSlash(filepath.Dir(rel))
	var out []string
	say := func(n ast.Node, what string) {
		out = append(out, rel+":"+strconv.Itoa(fset.Position(n.Pos()).Line)+": "+what)
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CompositeLit:
			if dir != "plan" && isAction(n.Type) {
				say(n, "builds a plan.Action")
			}
			if at, ok := n.Type.(*ast.ArrayType); ok && dir != "plan" && isAction(at.Elt) && len(n.Elts) > 0 {
				say(n, "builds a plan.Action")
			}
			if dir != "ledger" && isSelector(n.Type, "ledger", "Image") && slices.ContainsFunc(n.Elts, func(e ast.Expr) bool {
				kv, ok := e.(*ast.KeyValueExpr)
				return ok && isIdent(kv.Key, "State")
			}) {
				say(n, "sets an image's state (a ledger.Image with State)")
			}
		case *ast.ValueSpec:
			if dir != "plan" && n.Type != nil && isAction(n.Type) && len(n.Values) == 0 {
				say(n, "builds a plan.Action")
			}
		case *ast.CallExpr:
			if dir != "plan" && isIdent(n.Fun, "new") && len(n.Args) == 1 && isAction(n.Args[0]) {
				say(n, "builds a plan.Action")
			}
		case *ast.AssignStmt:
			if dir == "ledger" {
				break
			}
			for _, lhs := range n.Lhs {
				if sel, ok := lhs.(*ast.SelectorExpr); ok && sel.Sel.Name == "State" && slices.ContainsFunc(n.Rhs, namesAState) {
					say(n, "sets an image's state ("+render(n.Rhs)+")")
				}
			}
		}
		return true
	})
	slices.Sort(out)
	return out
}

func isAction(e ast.Expr) bool { return isSelector(e, "plan", "Action") }

// namesAState reports whether e names one of the ledger's image states.
// (A state copied from another record's State is not seen: the check
// reads syntax, not types, and other records have a State of their own.)
func namesAState(e ast.Expr) bool {
	found := false
	ast.Inspect(e, func(n ast.Node) bool {
		if s, ok := n.(*ast.SelectorExpr); ok && isStateConst(s) {
			found = true
		}
		return !found
	})
	return found
}

// render names what was assigned, for the message.
func render(es []ast.Expr) string {
	var out []string
	for _, e := range es {
		if s, ok := e.(*ast.SelectorExpr); ok {
			if x, ok := s.X.(*ast.Ident); ok {
				out = append(out, x.Name+"."+s.Sel.Name)
				continue
			}
		}
		out = append(out, "…")
	}
	return strings.Join(out, ", ")
}

func isStateConst(s *ast.SelectorExpr) bool {
	return isIdent(s.X, "ledger") && slices.Contains([]string{"StateNew", "StateBuildRequested", "StateBuilt", "StateVerified",
		"StatePromoted", "StateFailed"}, s.Sel.Name)
}

func isSelector(e ast.Expr, pkg, name string) bool {
	s, ok := e.(*ast.SelectorExpr)
	return ok && isIdent(s.X, pkg) && s.Sel.Name == name
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}
