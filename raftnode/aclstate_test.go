package raftnode

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

// A resolver decides by the state it is given, and a deleted token is
// refused at the next decision: nothing is cached across states.
func TestACLResolverFollowsTheState(t *testing.T) {
	s := NewACLState()
	tok, secret, _ := acl.NewToken("", nil, true)
	s, _ = s.With(&ACLChange{Op: "bootstrap", Token: &tok})
	p := acl.Policy{Name: "ro", Operator: "none", Rules: []acl.Rule{{Prefix: "", Access: "read"}}}
	s, _ = s.With(&ACLChange{Op: "policy_create", Policy: &p})
	user, userSecret, _ := acl.NewToken("", []string{"ro"}, false)
	s, _ = s.With(&ACLChange{Op: "token_create", Token: &user})
	var r ACLResolver
	id, err := r.Resolve(s, userSecret)
	if err != nil || id.Accessor != user.AccessorID || !id.Allows([]byte("k"), acl.Read) || id.Allows([]byte("k"), acl.Write) {
		t.Fatalf("resolve: %+v %v", id, err)
	}
	if id, err := r.Resolve(s, secret); err != nil || !id.IsManagement() {
		t.Fatalf("management: %+v %v", id, err)
	}
	p.Rules[0].Access = "write"
	s2, _ := s.With(&ACLChange{Op: "policy_update", Policy: &p})
	if id, _ := r.Resolve(s2, userSecret); !id.Allows([]byte("k"), acl.Write) {
		t.Fatal("a changed policy is not seen")
	}
	s3, _ := s2.With(&ACLChange{Op: "token_delete", Name: user.AccessorID})
	if _, err := r.Resolve(s3, userSecret); !errors.Is(err, base.ErrUnauthorized) {
		t.Fatalf("a deleted token: %v", err)
	}
	if id, err := r.Resolve(s3, ""); err != nil || !id.Anonymous() || id.Allows([]byte("k"), acl.Read) {
		t.Fatalf("anonymous: %+v %v", id, err)
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
	c := metaCommand{Op: "acl", ACL: &ACLChange{Op: "bootstrap", Token: &root}}
	if _, err := applyMeta(&Layout{}, c); !errors.Is(err, base.ErrUnavailable) {
		t.Fatalf("bootstrap before init: %v, want ErrUnavailable", err)
	}
	n1 := NodeInfo{ID: "n1", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}
	l, err := applyMeta(&Layout{}, metaCommand{Op: "init", Node: &n1, Groups: 1, VNodes: 8, EnableACL: true})
	if err != nil {
		t.Fatal(err)
	}
	if l, err = applyMeta(l, c); err != nil || !l.ACL.Bootstrapped {
		t.Fatalf("bootstrap after init: %v", err)
	}
	off, err := applyMeta(&Layout{}, metaCommand{Op: "init", Node: &n1, Groups: 1, VNodes: 8})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := applyMeta(off, c); !errors.Is(err, base.ErrBadRequest) {
		t.Fatalf("bootstrap with access control off: %v, want ErrBadRequest", err)
	}
}
