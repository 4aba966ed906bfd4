package acl

import (
	"fmt"
	"slices"
)

// Authorizer decides for one token. It is immutable, safe for concurrent
// use, and cheap to ask: a key costs a map lookup per distinct prefix
// length among the rules, longest first.
type Authorizer struct {
	management bool
	operator   Access
	rules      map[string]Access
	lengths    []int // distinct prefix lengths, longest first
}

// Management is the Authorizer of a management token.
func Management() *Authorizer { return &Authorizer{management: true, operator: Write} }

// Compile merges the rules of policies into one Authorizer: for a key the
// longest matching prefix decides, the more permissive where two policies
// name the same prefix; the operator level is the highest among them. It
// fails on a policy that does not validate.
func Compile(policies []Policy) (*Authorizer, error) {
	a := &Authorizer{rules: map[string]Access{}}
	for _, p := range policies {
		if err := p.Validate(); err != nil {
			return nil, err
		}
		op, _ := ParseOperator(p.Operator)
		a.operator = max(a.operator, op)
		for _, r := range p.Rules {
			acc, _ := ParseAccess(r.Access)
			if cur, ok := a.rules[r.Prefix]; !ok || acc > cur {
				a.rules[r.Prefix] = acc
			}
		}
	}
	for prefix := range a.rules {
		if !slices.Contains(a.lengths, len(prefix)) {
			a.lengths = append(a.lengths, len(prefix))
		}
	}
	slices.Sort(a.lengths)
	slices.Reverse(a.lengths)
	return a, nil
}

// IsManagement reports whether the token may do everything.
func (a *Authorizer) IsManagement() bool { return a.management }

// Key is the access the token has to key.
func (a *Authorizer) Key(key []byte) Access {
	if a.management {
		return Write
	}
	for _, n := range a.lengths {
		if n > len(key) {
			continue
		}
		if acc, ok := a.rules[string(key[:n])]; ok {
			return acc
		}
	}
	return Deny
}

// Operator is the token's operator level.
func (a *Authorizer) Operator() Access { return a.operator }

// Allows reports whether the token has at least need on key.
func (a *Authorizer) Allows(key []byte, need Access) bool { return a.Key(key) >= need }

// String describes the authorizer for logs.
func (a *Authorizer) String() string {
	if a.management {
		return "management"
	}
	return fmt.Sprintf("%d prefix rules, operator %s", len(a.rules), a.operator.OperatorString())
}
