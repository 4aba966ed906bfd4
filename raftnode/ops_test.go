package raftnode

import (
	"go/ast"
	"testing"

	"github.com/ringkv/ringkv/internal/srccheck"
	"github.com/ringkv/ringkv/protocol"
)

// Every op of the node-to-node protocol (const protocol.OpX Op = "...")
// has a handler, and every handler serves an op so declared: an op cannot
// be added without the code that serves it, nor served without a name.
func TestEveryOpHasAHandler(t *testing.T) {
	declared := srccheck.StringConsts(t, "../protocol", func(_ string, typ ast.Expr) bool {
		id, ok := typ.(*ast.Ident)
		return ok && id.Name == "Op"
	})
	if len(declared) < 25 {
		t.Fatalf("found %d op constants; the parse missed them", len(declared))
	}
	for v, name := range declared {
		if handlers[protocol.Op(v)] == nil {
			t.Errorf("%s (%q) has no handler in ops.go", name, v)
		}
	}
	for v := range handlers {
		if _, ok := declared[string(v)]; !ok {
			t.Errorf("handler for %q, which no op constant names", v)
		}
	}
}
