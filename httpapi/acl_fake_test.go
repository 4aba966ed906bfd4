package httpapi

import (
	"bytes"
	"context"
	"fmt"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/raftnode"
)

// The fake's access control decides with raftnode's own state and
// resolver: only the consensus around them is missing.

func (f *fakeBackend) ACLEnabled() bool { return f.acl != nil || f.aclPending }

// PeerSecret is a fixed secret while access control is on.
func (f *fakeBackend) PeerSecret() ([]byte, error) {
	if f.ACL() == nil {
		return nil, fmt.Errorf("%w: this cluster has no peer secret", base.ErrConflict)
	}
	return bytes.Repeat([]byte{7}, 32), nil
}

func (f *fakeBackend) ACL() *layout.ACLState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acl
}

func (f *fakeBackend) Authenticate(_ context.Context, secret string, _ raftnode.AuthOptions) (raftnode.Identity, error) {
	s := f.ACL()
	if s == nil {
		return raftnode.Identity{}, nil // off
	}
	return f.aclResolver.Resolve(s, secret)
}

func (f *fakeBackend) changeACL(c *layout.ACLChange) error {
	f.touch()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.acl == nil {
		return fmt.Errorf("%w: access control is off", base.ErrBadRequest)
	}
	next, err := f.acl.With(c)
	if err != nil {
		return err
	}
	f.acl = next
	return nil
}

func (f *fakeBackend) ACLBootstrap(context.Context) (acl.Token, string, error) {
	t, secret, err := acl.NewToken("bootstrap", nil, true)
	if err != nil {
		return t, "", err
	}
	return t, secret, f.changeACL(&layout.ACLChange{Op: "bootstrap", Token: &t})
}

func (f *fakeBackend) ACLCreateToken(_ context.Context, d string, ps []string, m bool) (acl.Token, string, error) {
	t, secret, err := acl.NewToken(d, ps, m)
	if err != nil {
		return t, "", fmt.Errorf("%w: %v", base.ErrBadRequest, err)
	}
	return t, secret, f.changeACL(&layout.ACLChange{Op: "token_create", Token: &t})
}

func (f *fakeBackend) ACLDeleteToken(_ context.Context, accessor string) error {
	return f.changeACL(&layout.ACLChange{Op: "token_delete", Name: accessor})
}

func (f *fakeBackend) ACLSetPolicy(_ context.Context, p acl.Policy, create bool) error {
	op := "policy_update"
	if create {
		op = "policy_create"
	}
	return f.changeACL(&layout.ACLChange{Op: op, Policy: &p})
}

func (f *fakeBackend) ACLDeletePolicy(_ context.Context, name string) error {
	return f.changeACL(&layout.ACLChange{Op: "policy_delete", Name: name})
}
