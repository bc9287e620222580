// Command shape measures the shape of Go packages, for
// docs/development.md: each folder's lines of code (tests aside), the
// methods on each of its types, and its longest functions.
//
//	go run ./hack/shape reconcile plan ledger
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	for _, dir := range os.Args[1:] {
		if err := measure(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

type fn struct {
	name  string
	lines int
}

func measure(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return err
	}
	fset := token.NewFileSet()
	lines, sources := 0, 0
	methods := map[string]int{}
	var fns []fn
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		sources++
		lines += strings.Count(string(src), "\n")
		af, err := parser.ParseFile(fset, f, src, 0)
		if err != nil {
			return err
		}
		for _, d := range af.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			name := fd.Name.Name
			if fd.Recv != nil {
				t := fd.Recv.List[0].Type
				if s, ok := t.(*ast.StarExpr); ok {
					t = s.X
				}
				if ix, ok := t.(*ast.IndexExpr); ok {
					t = ix.X
				}
				if id, ok := t.(*ast.Ident); ok {
					methods[id.Name]++
					name = id.Name + "." + name
				}
			}
			fns = append(fns, fn{name, fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1})
		}
	}
	fmt.Printf("%s: %d lines in %d files (tests aside)\n", dir, lines, sources)
	var types []string
	for t := range methods {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool {
		if methods[types[i]] != methods[types[j]] {
			return methods[types[i]] > methods[types[j]]
		}
		return types[i] < types[j]
	})
	for _, t := range types[:min(5, len(types))] {
		fmt.Printf("  methods on %s: %d\n", t, methods[t])
	}
	sort.SliceStable(fns, func(i, j int) bool { return fns[i].lines > fns[j].lines })
	for _, f := range fns[:min(6, len(fns))] {
		fmt.Printf("  %-36s %d lines\n", f.name, f.lines)
	}
	return nil
}
