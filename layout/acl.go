package layout

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/base"
)

// Bounds on the access control state the metadata group keeps: every node
// Holds all of it in memory and in each metadata snapshot.
const (
	MaxPolicies = 1000
	MaxTokens   = 10000
)

// ACLState is the cluster's access control: whether it is on (chosen when
// the cluster was bootstrapped), its policies and its tokens, secrets only
// as hashes. An ACLState is immutable once published in a layout; a change
// makes a new one.
type ACLState struct {
	Enabled bool `json:"enabled"`
	// Bootstrapped: the first management token was handed out; a second
	// bootstrap is refused.
	Bootstrapped bool         `json:"bootstrapped,omitempty"`
	Policies     []acl.Policy `json:"policies,omitempty"` // sorted by name
	Tokens       []acl.Token  `json:"tokens,omitempty"`   // sorted by accessor id
}

// ACLChange is one change to the access control state, carried by the
// metadata command "acl" and by the request that proposes it.
type ACLChange struct {
	// Op is bootstrap, policy_create, policy_update, policy_delete,
	// token_create or token_delete.
	Op     string      `json:"op"`
	Policy *acl.Policy `json:"policy,omitempty"`
	Token  *acl.Token  `json:"token,omitempty"`
	// Name is the policy (policy_delete) or the token's accessor id
	// (token_delete) removed.
	Name string `json:"name,omitempty"`
}

// check validates a change that arrived from the network or the log.
func (c *ACLChange) Check() error {
	if c == nil {
		return fmt.Errorf("%w: acl change missing", base.ErrBadRequest)
	}
	var err error
	switch c.Op {
	case "bootstrap", "token_create":
		if c.Token == nil {
			return fmt.Errorf("%w: acl %s without a token", base.ErrBadRequest, c.Op)
		}
		err = c.Token.Validate()
		if err == nil && c.Op == "bootstrap" && !c.Token.Management {
			err = fmt.Errorf("%w: the bootstrap token must be a management token", base.ErrBadRequest)
		}
	case "policy_create", "policy_update":
		if c.Policy == nil {
			return fmt.Errorf("%w: acl %s without a policy", base.ErrBadRequest, c.Op)
		}
		err = c.Policy.Validate()
	case "policy_delete":
		err = acl.Policy{Name: c.Name}.Validate()
	case "token_delete":
		err = acl.CheckAccessor(c.Name)
	default:
		return fmt.Errorf("%w: acl op %q", base.ErrBadRequest, c.Op)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", base.ErrBadRequest, err)
	}
	return nil
}

// NewACLState is the state of a cluster bootstrapped with access control
// on: the anonymous policy, denying everything, and no token yet.
func NewACLState() *ACLState {
	return &ACLState{Enabled: true, Policies: []acl.Policy{{Name: acl.Anonymous, Operator: "none",
		Description: "requests without a token; denies everything until edited", Rules: []acl.Rule{}}}}
}

// Policy returns the policy named name.
func (s *ACLState) Policy(name string) (acl.Policy, bool) {
	if s == nil {
		return acl.Policy{}, false
	}
	i, ok := slices.BinarySearchFunc(s.Policies, name, func(p acl.Policy, n string) int { return strings.Compare(p.Name, n) })
	if !ok {
		return acl.Policy{}, false
	}
	return s.Policies[i], true
}

// Token returns the token with the accessor id.
func (s *ACLState) Token(accessor string) (acl.Token, bool) {
	if s == nil {
		return acl.Token{}, false
	}
	i, ok := slices.BinarySearchFunc(s.Tokens, accessor, func(t acl.Token, a string) int { return strings.Compare(t.AccessorID, a) })
	if !ok {
		return acl.Token{}, false
	}
	return s.Tokens[i], true
}

// With returns the access control state after c, which it checks first;
// it is deterministic and leaves s unchanged.
func (s *ACLState) With(c *ACLChange) (*ACLState, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	return applyACL(s, c)
}

// applyACL computes the access control state after c, a checked change.
func applyACL(cur *ACLState, c *ACLChange) (*ACLState, error) {
	if cur == nil || !cur.Enabled {
		return nil, fmt.Errorf("%w: access control is off in this cluster (it was bootstrapped without --acl)", base.ErrBadRequest)
	}
	next := &ACLState{Enabled: true, Bootstrapped: cur.Bootstrapped,
		Policies: slices.Clone(cur.Policies), Tokens: slices.Clone(cur.Tokens)}
	byName := func(p acl.Policy, n string) int { return strings.Compare(p.Name, n) }
	byAccessor := func(t acl.Token, a string) int { return strings.Compare(t.AccessorID, a) }
	switch c.Op {
	case "bootstrap":
		if cur.Bootstrapped {
			return nil, fmt.Errorf("%w: access control was bootstrapped already; ask a holder of a management token", base.ErrConflict)
		}
		next.Bootstrapped = true
		return next, addToken(next, *c.Token)
	case "token_create":
		return next, addToken(next, *c.Token)
	case "token_delete":
		i, ok := slices.BinarySearchFunc(next.Tokens, c.Name, byAccessor)
		if !ok {
			return nil, fmt.Errorf("%w: no token %s", base.ErrNotFound, c.Name)
		}
		if next.Tokens[i].Management && managementTokens(next) == 1 {
			return nil, fmt.Errorf("%w: token %s is the last management token; create another before deleting it", base.ErrConflict, c.Name)
		}
		next.Tokens = slices.Delete(next.Tokens, i, i+1)
	case "policy_create", "policy_update":
		i, ok := slices.BinarySearchFunc(next.Policies, c.Policy.Name, byName)
		switch {
		case c.Op == "policy_create" && ok:
			return nil, fmt.Errorf("%w: a policy named %q exists; update it with PUT /v1/acl/policy/%s", base.ErrConflict, c.Policy.Name, c.Policy.Name)
		case c.Op == "policy_update" && !ok:
			return nil, fmt.Errorf("%w: no policy %q", base.ErrNotFound, c.Policy.Name)
		case ok:
			next.Policies[i] = *c.Policy
		case len(next.Policies) >= MaxPolicies:
			return nil, fmt.Errorf("%w: %d policies already, at most %d", base.ErrConflict, len(next.Policies), MaxPolicies)
		default:
			next.Policies = slices.Insert(next.Policies, i, *c.Policy)
		}
	case "policy_delete":
		i, ok := slices.BinarySearchFunc(next.Policies, c.Name, byName)
		if !ok {
			return nil, fmt.Errorf("%w: no policy %q", base.ErrNotFound, c.Name)
		}
		if c.Name == acl.Anonymous {
			return nil, fmt.Errorf("%w: the anonymous policy is kept; edit its rules instead", base.ErrConflict)
		}
		var users []string
		for _, t := range next.Tokens {
			if slices.Contains(t.Policies, c.Name) {
				users = append(users, t.AccessorID)
			}
		}
		if len(users) > 0 {
			return nil, fmt.Errorf("%w: policy %q is used by %d token(s) (%s); delete them or their use of it first",
				base.ErrConflict, c.Name, len(users), strings.Join(users[:min(3, len(users))], ", "))
		}
		next.Policies = slices.Delete(next.Policies, i, i+1)
	default:
		return nil, fmt.Errorf("%w: acl op %q", base.ErrBadRequest, c.Op)
	}
	return next, nil
}

// addToken inserts t into s, whose policies it must name.
func addToken(s *ACLState, t acl.Token) error {
	if len(s.Tokens) >= MaxTokens {
		return fmt.Errorf("%w: %d tokens already, at most %d", base.ErrConflict, len(s.Tokens), MaxTokens)
	}
	for _, p := range t.Policies {
		if _, ok := s.Policy(p); !ok {
			return fmt.Errorf("%w: no policy %q", base.ErrBadRequest, p)
		}
	}
	for _, o := range s.Tokens {
		if o.SecretHash == t.SecretHash {
			return fmt.Errorf("%w: a token with this secret exists", base.ErrConflict)
		}
	}
	i, ok := slices.BinarySearchFunc(s.Tokens, t.AccessorID, func(o acl.Token, a string) int { return strings.Compare(o.AccessorID, a) })
	if ok {
		return fmt.Errorf("%w: a token with accessor id %s exists", base.ErrConflict, t.AccessorID)
	}
	s.Tokens = slices.Insert(s.Tokens, i, t)
	return nil
}

func managementTokens(s *ACLState) int {
	n := 0
	for _, t := range s.Tokens {
		if t.Management {
			n++
		}
	}
	return n
}
