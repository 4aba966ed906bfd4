package layout

import (
	"errors"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/base"
)

// The rules of the access control state: bootstrap once, keep a
// management token and the anonymous policy, refuse a policy in use, a
// token naming no policy, and anything while access control is off.
func TestACLStateRules(t *testing.T) {
	s := NewACLState()
	mk := func(management bool, ps ...string) acl.Token {
		tok, _, err := acl.NewToken("", ps, management)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	step := func(c ACLChange, want error, says string) {
		t.Helper()
		next, err := s.With(&c)
		if want == nil {
			if err != nil {
				t.Fatalf("%s: %v", c.Op, err)
			}
			s = next
			return
		}
		if !errors.Is(err, want) || !strings.Contains(err.Error(), says) {
			t.Fatalf("%s = %v, want %v saying %q", c.Op, err, want, says)
		}
	}
	root := mk(true)
	step(ACLChange{Op: "bootstrap", Token: &root}, nil, "")
	other := mk(true)
	step(ACLChange{Op: "bootstrap", Token: &other}, base.ErrConflict, "bootstrapped already")
	notMgmt := mk(false)
	step(ACLChange{Op: "bootstrap", Token: &notMgmt}, base.ErrBadRequest, "must be a management token")
	step(ACLChange{Op: "token_delete", Name: root.AccessorID}, base.ErrConflict, "last management token")
	app := acl.Policy{Name: "app", Operator: "none", Rules: []acl.Rule{{Prefix: "app/", Access: "write"}}}
	user := mk(false, "app")
	step(ACLChange{Op: "token_create", Token: &user}, base.ErrBadRequest, `no policy "app"`)
	step(ACLChange{Op: "policy_update", Policy: &app}, base.ErrNotFound, `no policy "app"`)
	step(ACLChange{Op: "policy_create", Policy: &app}, nil, "")
	step(ACLChange{Op: "policy_create", Policy: &app}, base.ErrConflict, "exists")
	step(ACLChange{Op: "token_create", Token: &user}, nil, "")
	step(ACLChange{Op: "token_create", Token: &user}, base.ErrConflict, "exists")
	step(ACLChange{Op: "policy_delete", Name: "app"}, base.ErrConflict, "used by 1 token")
	step(ACLChange{Op: "policy_delete", Name: acl.Anonymous}, base.ErrConflict, "anonymous policy is kept")
	step(ACLChange{Op: "token_delete", Name: user.AccessorID}, nil, "")
	step(ACLChange{Op: "policy_delete", Name: "app"}, nil, "")
	second := mk(true)
	step(ACLChange{Op: "token_create", Token: &second}, nil, "")
	step(ACLChange{Op: "token_delete", Name: root.AccessorID}, nil, "") // another is left
	big := acl.Policy{Name: "big", Rules: make([]acl.Rule, acl.MaxRules*10)}
	for i := range big.Rules {
		big.Rules[i] = acl.Rule{Prefix: strings.Repeat("k", i%50) + string(rune('a'+i%26)), Access: "read"}
	}
	step(ACLChange{Op: "policy_create", Policy: &big}, base.ErrBadRequest, "10000 rules, at most 1000")
	if _, err := (*ACLState)(nil).With(&ACLChange{Op: "token_create", Token: &second}); !errors.Is(err, base.ErrBadRequest) {
		t.Fatalf("a change while access control is off: %v", err)
	}
	if len(s.Tokens) != 1 || s.Tokens[0].AccessorID != second.AccessorID || len(s.Policies) != 1 {
		t.Fatalf("left with %d tokens and %d policies", len(s.Tokens), len(s.Policies))
	}
}

// An access control change that reaches the metadata group before the
// init that turns access control on waits for it (503), rather than
// being told access control is off (400), which a bootstrap script
// racing a fresh node would take as final.
func TestACLChangeBeforeInit(t *testing.T) {
	root, _, err := acl.NewToken("", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	c := Command{Op: "acl", ACL: &ACLChange{Op: "bootstrap", Token: &root}}
	if _, err := Apply(&Layout{}, c); !errors.Is(err, base.ErrUnavailable) {
		t.Fatalf("bootstrap before init: %v, want ErrUnavailable", err)
	}
	n1 := NodeInfo{ID: "n1", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}
	l, err := Apply(&Layout{}, Command{Op: "init", Node: &n1, Groups: 1, VNodes: 8, EnableACL: true})
	if err != nil {
		t.Fatal(err)
	}
	if l, err = Apply(l, c); err != nil || !l.ACL.Bootstrapped {
		t.Fatalf("bootstrap after init: %v", err)
	}
	off, err := Apply(&Layout{}, Command{Op: "init", Node: &n1, Groups: 1, VNodes: 8})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(off, c); !errors.Is(err, base.ErrBadRequest) {
		t.Fatalf("bootstrap with access control off: %v, want ErrBadRequest", err)
	}
}
