package raftnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
)

// ACLStaleAfter is how long a node that is not the metadata leader goes
// without hearing from it before it stops deciding with the access control
// it holds (a deleted token might still be in it): requests that need a
// decision then get ErrUnavailable until it hears again. With the
// metadata leader's lease it bounds how long a deleted token or a changed
// policy may still be honoured anywhere, once committed.
const ACLStaleAfter = time.Second

// AuthOptions qualify Authenticate.
type AuthOptions struct {
	// AcceptStale decides even when this node has not heard from the
	// metadata leader lately: for what must work on a node cut off from
	// the others (the fault hook that heals it).
	AcceptStale bool
}

// errNoSuchToken: a secret of the right form that no token has.
var errNoSuchToken = fmt.Errorf("%w: no such token (it may have been deleted)", base.ErrUnauthorized)

// Identity is who a request acts as: a token's accessor id and what it may
// do, or the anonymous policy's rights for a request without a token.
type Identity struct {
	// Accessor is the token's accessor id; empty for anonymous.
	Accessor string
	*acl.Authorizer
}

// Anonymous reports whether the request carried no token.
func (id Identity) Anonymous() bool { return id.Accessor == "" }

// Who names the identity in logs.
func (id Identity) Who() string {
	if id.Anonymous() {
		return "anonymous"
	}
	return id.Accessor
}

// aclView is the access control of one ACLState, with each token's
// decisions compiled once: it is rebuilt when the layout's ACLState
// changes, never per request.
type aclView struct {
	state  *layout.ACLState
	byHash map[string]*acl.Token
	anon   *acl.Authorizer
	mu     sync.Mutex
	auth   map[string]*acl.Authorizer // by accessor id
	// known caches the identities of secrets resolved under this state,
	// sparing each request a hash; only secrets of tokens are kept, at
	// most knownMax.
	known    sync.Map // secret -> Identity
	knownN   atomic.Int64
	knownMax int64
}

func newACLView(s *layout.ACLState) *aclView {
	v := &aclView{state: s, byHash: make(map[string]*acl.Token, len(s.Tokens)), auth: map[string]*acl.Authorizer{},
		knownMax: int64(len(s.Tokens))}
	for i := range s.Tokens {
		v.byHash[s.Tokens[i].SecretHash] = &s.Tokens[i]
	}
	v.anon = v.compile(nil)
	if p, ok := s.Policy(acl.Anonymous); ok {
		v.anon = v.compile([]string{p.Name})
	}
	return v
}

// compile is the authorizer of the named policies; one missing (never, as
// the state machine keeps them) grants nothing.
func (v *aclView) compile(names []string) *acl.Authorizer {
	var ps []acl.Policy
	for _, n := range names {
		if p, ok := v.state.Policy(n); ok {
			ps = append(ps, p)
		}
	}
	a, err := acl.Compile(ps)
	if err != nil {
		a, _ = acl.Compile(nil) // policies were validated when stored
	}
	return a
}

func (v *aclView) authorizer(t *acl.Token) *acl.Authorizer {
	if t.Management {
		return acl.Management()
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	a, ok := v.auth[t.AccessorID]
	if !ok {
		a = v.compile(t.Policies)
		v.auth[t.AccessorID] = a
	}
	return a
}

// ACLResolver resolves token secrets under an ACLState, keeping each
// token's compiled decisions until the state changes. The zero value is
// ready; it is safe for concurrent use.
type ACLResolver struct {
	view atomic.Pointer[aclView]
	mu   sync.Mutex
}

// Resolve returns the identity of secret ("" for none) under s: the
// anonymous policy's, or the token's whose secret it is. It fails with
// ErrUnauthorized for a secret of a bad form or that no token has.
func (c *ACLResolver) Resolve(s *layout.ACLState, secret string) (Identity, error) {
	v := c.get(s)
	if secret == "" {
		return Identity{Authorizer: v.anon}, nil
	}
	if id, ok := v.known.Load(secret); ok {
		return id.(Identity), nil
	}
	if err := acl.CheckSecret(secret); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", base.ErrUnauthorized, err)
	}
	t, ok := v.byHash[acl.HashSecret(secret)]
	if !ok {
		return Identity{}, errNoSuchToken
	}
	id := Identity{Accessor: t.AccessorID, Authorizer: v.authorizer(t)}
	if v.knownN.Add(1) <= v.knownMax {
		v.known.Store(secret, id)
	}
	return id, nil
}

func (c *ACLResolver) get(s *layout.ACLState) *aclView {
	if v := c.view.Load(); v != nil && v.state == s {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.view.Load(); v != nil && v.state == s {
		return v
	}
	v := newACLView(s)
	c.view.Store(v)
	return v
}

// aclMarkerFile, in the data dir, records that the node's cluster has
// access control on, so that after a restart the node enforces it before
// its layout is known again, whatever its flags say.
const aclMarkerFile = "acl-on"

// ACLEnabled reports whether this node enforces access control: its
// cluster's layout has it on, or (before the layout is known) this node
// was started with it or its cluster had it on when it last knew.
func (n *Node) ACLEnabled() bool { return n.aclOn(n.Layout()) }

func (n *Node) aclOn(l *layout.Layout) bool {
	if !l.Initialized {
		return n.cfg.ACL || n.aclMarked.Load()
	}
	on := l.ACL != nil && l.ACL.Enabled
	if on && !n.aclMarked.Load() && n.aclMarked.CompareAndSwap(false, true) {
		if err := os.WriteFile(filepath.Join(n.cfg.DataDir, aclMarkerFile), []byte("access control is on in this node's cluster\n"), 0o600); err != nil {
			n.log.Warn("recording that access control is on", "err", err)
		}
	}
	if on != n.cfg.ACL && n.aclWarned.CompareAndSwap(false, true) {
		n.log.Error("this node's --acl is not its cluster's: it enforces the cluster's choice (access control on: " +
			fmt.Sprint(on) + "); start it with the same setting as the other nodes")
	}
	return on
}

// ACL returns the access control state this node decides by (nil when
// access control is off or the layout is not known yet). Callers must not
// modify it.
func (n *Node) ACL() *layout.ACLState { return n.Layout().ACL }

// Authenticate resolves a request's token secret ("" for none) to its
// identity; with access control off it returns an Identity without an
// Authorizer, and no error. It fails with ErrUnauthorized for a secret of a bad form or
// that no token has, and with ErrUnavailable when this node's access
// control may be stale (see ACLStaleAfter) or is not known yet. A secret
// this node does not know is looked up again once its layout has caught up
// with the metadata leader's, so that a token just created on another node
// works here at once. Safe for concurrent use; a decision costs a hash and
// a map lookup.
func (n *Node) Authenticate(ctx context.Context, secret string, o AuthOptions) (Identity, error) {
	l := n.Layout()
	if !n.aclOn(l) {
		return Identity{}, nil
	}
	s := l.ACL
	if s == nil {
		return Identity{}, fmt.Errorf("%w: this node does not know its cluster's access control yet", base.ErrUnavailable)
	}
	if !o.AcceptStale && !n.metaFresh() {
		return Identity{}, fmt.Errorf("%w: this node has not heard from the metadata group's leader for over %v, so its tokens and policies may be stale; ask another node",
			base.ErrUnavailable, ACLStaleAfter)
	}
	id, err := n.aclCache.Resolve(s, secret)
	if !errors.Is(err, errNoSuchToken) {
		return id, err
	}
	if err := n.aclCatchUp(ctx); err != nil {
		return Identity{}, err
	}
	return n.aclCache.Resolve(n.Layout().ACL, secret)
}

// aclCatchUp waits until this node's layout reflects every metadata entry
// committed before the call. Concurrent callers share one wait, so that a
// flood of unknown tokens costs one round trip to the metadata leader at a
// time, not one each.
func (n *Node) aclCatchUp(ctx context.Context) error {
	n.aclSyncMu.Lock()
	w := n.aclSync
	if w == nil {
		w = &aclWait{done: make(chan struct{})}
		n.aclSync = w
		go func() {
			cctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
			_, _, w.err = n.currentLayout(cctx, protocol.Linearizable)
			cancel()
			n.aclSyncMu.Lock()
			n.aclSync = nil
			n.aclSyncMu.Unlock()
			close(w.done)
		}()
	}
	n.aclSyncMu.Unlock()
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", base.ErrUnavailable, context.Cause(ctx))
	}
}

// aclWait is one catch-up of the layout that callers share.
type aclWait struct {
	done chan struct{}
	err  error
}

// metaFresh: this node leads the metadata group, or heard from its leader
// within ACLStaleAfter.
func (n *Node) metaFresh() bool {
	if n.meta.isLeader() {
		return true
	}
	return time.Since(n.meta.raft.LastContact()) < ACLStaleAfter
}

// ACLBootstrap turns the cluster's access control on in earnest: it
// creates the first management token and returns it with its secret,
// once; a second call fails with ErrConflict.
func (n *Node) ACLBootstrap(ctx context.Context) (acl.Token, string, error) {
	t, secret, err := acl.NewToken("bootstrap management token", nil, true)
	if err != nil {
		return acl.Token{}, "", err
	}
	return t, secret, n.changeACL(ctx, &layout.ACLChange{Op: "bootstrap", Token: &t})
}

// ACLCreateToken creates a token with the named policies (or a
// management token) and returns it with its secret, which is stored
// nowhere: only its hash is.
func (n *Node) ACLCreateToken(ctx context.Context, description string, policies []string, management bool) (acl.Token, string, error) {
	t, secret, err := acl.NewToken(description, policies, management)
	if err != nil {
		return acl.Token{}, "", fmt.Errorf("%w: %v", base.ErrBadRequest, err)
	}
	return t, secret, n.changeACL(ctx, &layout.ACLChange{Op: "token_create", Token: &t})
}

// ACLDeleteToken deletes a token; the last management token is kept
// (ErrConflict).
func (n *Node) ACLDeleteToken(ctx context.Context, accessor string) error {
	return n.changeACL(ctx, &layout.ACLChange{Op: "token_delete", Name: accessor})
}

// ACLSetPolicy creates a policy (create) or replaces an existing one.
func (n *Node) ACLSetPolicy(ctx context.Context, p acl.Policy, create bool) error {
	op := "policy_update"
	if create {
		op = "policy_create"
	}
	return n.changeACL(ctx, &layout.ACLChange{Op: op, Policy: &p})
}

// ACLDeletePolicy deletes a policy no token uses; the anonymous policy is
// kept.
func (n *Node) ACLDeletePolicy(ctx context.Context, name string) error {
	return n.changeACL(ctx, &layout.ACLChange{Op: "policy_delete", Name: name})
}

// changeACL proposes c to the metadata group (on its leader, forwarded
// there if need be) and waits until this node has applied it, so that the
// caller's next request here sees it.
func (n *Node) changeACL(ctx context.Context, c *layout.ACLChange) error {
	if err := c.Check(); err != nil {
		return err
	}
	if !n.Layout().Initialized {
		return fmt.Errorf("%w: cluster layout not initialised yet", base.ErrUnavailable)
	}
	if !n.ACLEnabled() {
		return fmt.Errorf("%w: access control is off in this cluster (its nodes run without --acl)", base.ErrBadRequest)
	}
	resp, err := n.do(ctx, protocol.Request{Op: protocol.OpACL, Group: base.MetaGroup, ACL: c})
	if err != nil {
		return err
	}
	return n.waitLayout(ctx, resp.RaftIndex)
}
