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
	declared := stringConsts(t, func(name string, typ ast.Expr) bool {
		return strings.HasPrefix(name, "op") && len(name) > 2 && name[2] >= 'A' && name[2] <= 'Z'
	})
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

// Every metadata command (const metaX metaOp = "...") but init has a rule
// in metaRules, and every rule a command.
func TestEveryMetaOpHasARule(t *testing.T) {
	declared := stringConsts(t, func(_ string, typ ast.Expr) bool {
		id, ok := typ.(*ast.Ident)
		return ok && id.Name == "metaOp"
	})
	if len(declared) < 15 {
		t.Fatalf("found %d metadata commands; the parse missed them", len(declared))
	}
	for v, name := range declared {
		if metaOp(v) != metaInit && metaRules[metaOp(v)] == nil {
			t.Errorf("%s (%q) has no rule in meta_rules.go", name, v)
		}
	}
	for op := range metaRules {
		if _, ok := declared[string(op)]; !ok {
			t.Errorf("a rule for %q, which no metadata command names", op)
		}
	}
}

// stringConsts returns the package's string constants (value -> name)
// that keep says to.
func stringConsts(t *testing.T, keep func(name string, typ ast.Expr) bool) map[string]string {
	t.Helper()
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
	return declared
}
