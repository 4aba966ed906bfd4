package raftnode

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"strconv"
	"strings"
	"testing"
)

// Every op constant of the package (const opX = "...") has a handler, and
// every handler serves an op so declared: an op cannot be added without
// the code that serves it, nor served without a name.
func TestEveryOpHasAHandler(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]string{} // value -> constant
	for _, f := range pkgs["raftnode"].Files {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !strings.HasPrefix(name.Name, "op") || len(name.Name) < 3 || name.Name[2] < 'A' || name.Name[2] > 'Z' || i >= len(vs.Values) {
						continue
					}
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						v, _ := strconv.Unquote(lit.Value)
						declared[v] = name.Name
					}
				}
			}
		}
	}
	if len(declared) < 25 {
		t.Fatalf("found %d op constants; the parse missed them", len(declared))
	}
	for v, name := range declared {
		if handlers[v] == nil {
			t.Errorf("%s (%q) has no handler in ops.go", name, v)
		}
	}
	for v := range handlers {
		if _, ok := declared[v]; !ok {
			t.Errorf("handler for %q, which no op constant names", v)
		}
	}
}
