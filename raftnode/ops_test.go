package raftnode

import (
	"go/ast"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/internal/srccheck"
)

// Every op constant of the package (const opX = "...") has a handler, and
// every handler serves an op so declared: an op cannot be added without
// the code that serves it, nor served without a name.
func TestEveryOpHasAHandler(t *testing.T) {
	declared := srccheck.StringConsts(t, ".", func(name string, typ ast.Expr) bool {
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
