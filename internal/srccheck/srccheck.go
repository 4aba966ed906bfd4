// Package srccheck reads a package's own source in its tests, so that a
// table (handlers, rules) can be checked against the constants it must
// cover: one cannot be added without the other.
package srccheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"strconv"
	"strings"
	"testing"
)

// StringConsts returns the string constants (value -> name) of the
// non-test files of the package in dir that keep says to.
func StringConsts(t testing.TB, dir string, keep func(name string, typ ast.Expr) bool) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]string{} // value -> constant
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, d := range f.Decls {
				g, ok := d.(*ast.GenDecl)
				if !ok || g.Tok != token.CONST {
					continue
				}
				for _, s := range g.Specs {
					vs := s.(*ast.ValueSpec)
					for i, name := range vs.Names {
						if !keep(name.Name, vs.Type) || i >= len(vs.Values) {
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
	}
	return declared
}
