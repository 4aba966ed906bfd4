package raftnode

import (
	"errors"
	"testing"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
)

// A resolver decides by the state it is given, and a deleted token is
// refused at the next decision: nothing is cached across states.
func TestACLResolverFollowsTheState(t *testing.T) {
	s := layout.NewACLState()
	tok, secret, _ := acl.NewToken("", nil, true)
	s, _ = s.With(&layout.ACLChange{Op: "bootstrap", Token: &tok})
	p := acl.Policy{Name: "ro", Operator: "none", Rules: []acl.Rule{{Prefix: "", Access: "read"}}}
	s, _ = s.With(&layout.ACLChange{Op: "policy_create", Policy: &p})
	user, userSecret, _ := acl.NewToken("", []string{"ro"}, false)
	s, _ = s.With(&layout.ACLChange{Op: "token_create", Token: &user})
	var r ACLResolver
	id, err := r.Resolve(s, userSecret)
	if err != nil || id.Accessor != user.AccessorID || !id.Allows([]byte("k"), acl.Read) || id.Allows([]byte("k"), acl.Write) {
		t.Fatalf("resolve: %+v %v", id, err)
	}
	if id, err := r.Resolve(s, secret); err != nil || !id.IsManagement() {
		t.Fatalf("management: %+v %v", id, err)
	}
	p.Rules[0].Access = "write"
	s2, _ := s.With(&layout.ACLChange{Op: "policy_update", Policy: &p})
	if id, _ := r.Resolve(s2, userSecret); !id.Allows([]byte("k"), acl.Write) {
		t.Fatal("a changed policy is not seen")
	}
	s3, _ := s2.With(&layout.ACLChange{Op: "token_delete", Name: user.AccessorID})
	if _, err := r.Resolve(s3, userSecret); !errors.Is(err, base.ErrUnauthorized) {
		t.Fatalf("a deleted token: %v", err)
	}
	if id, err := r.Resolve(s3, ""); err != nil || !id.Anonymous() || id.Allows([]byte("k"), acl.Read) {
		t.Fatalf("anonymous: %+v %v", id, err)
	}
}
