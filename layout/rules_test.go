package layout

import (
	"go/ast"
	"testing"

	"github.com/ringkv/ringkv/internal/srccheck"
)

// Every metadata command (const OpX Op = "...") but init has a rule
// in rules, and every rule a command.
func TestEveryOpHasARule(t *testing.T) {
	declared := srccheck.StringConsts(t, ".", func(_ string, typ ast.Expr) bool {
		id, ok := typ.(*ast.Ident)
		return ok && id.Name == "Op"
	})
	if len(declared) < 15 {
		t.Fatalf("found %d metadata commands; the parse missed them", len(declared))
	}
	for v, name := range declared {
		if Op(v) != OpInit && rules[Op(v)] == nil {
			t.Errorf("%s (%q) has no rule in rules.go", name, v)
		}
	}
	for op := range rules {
		if _, ok := declared[string(op)]; !ok {
			t.Errorf("a rule for %q, which no metadata command names", op)
		}
	}
}
