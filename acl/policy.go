package acl

import (
	"errors"
	"fmt"
	"strings"
)

// Limits on what a policy may hold, so that one cannot grow the layout or
// the per-request decision without bound.
const (
	// MaxRules is the most rules one policy holds.
	MaxRules = 1000
	// MaxPrefixBytes is the longest prefix a rule may name.
	MaxPrefixBytes = 4096
	// MaxNameBytes is the longest policy name.
	MaxNameBytes = 128
	// MaxDescriptionBytes is the longest description of a policy or token.
	MaxDescriptionBytes = 1024
)

// ErrInvalid is wrapped by every validation error; the message names the
// rule that was broken.
var ErrInvalid = errors.New("acl: invalid")

// Access is what a rule grants on keys, or an operator level.
type Access uint8

// The access levels, weakest first.
const (
	Deny Access = iota
	Read
	Write
)

// ParseAccess reads a key rule's access: deny, read or write.
func ParseAccess(s string) (Access, error) {
	switch s {
	case "deny":
		return Deny, nil
	case "read":
		return Read, nil
	case "write":
		return Write, nil
	}
	return Deny, fmt.Errorf("%w: access %q: want deny, read or write", ErrInvalid, s)
}

// ParseOperator reads an operator level: none, read or write.
func ParseOperator(s string) (Access, error) {
	switch s {
	case "none", "":
		return Deny, nil
	case "read":
		return Read, nil
	case "write":
		return Write, nil
	}
	return Deny, fmt.Errorf("%w: operator %q: want none, read or write", ErrInvalid, s)
}

// String is the access's word in a rule.
func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	}
	return "deny"
}

// OperatorString is the access's word as an operator level.
func (a Access) OperatorString() string {
	if a == Deny {
		return "none"
	}
	return a.String()
}

// Rule grants Access on every key that starts with Prefix ("" is every
// key).
type Rule struct {
	Prefix string `json:"prefix"`
	Access string `json:"access"`
}

// Policy is a named set of rules and an operator level.
type Policy struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Rules       []Rule `json:"rules"`
	// Operator is none, read (status, ring, cluster, metrics, verify
	// without repair, backup) or write (every other operator action).
	Operator string `json:"operator"`
}

// Anonymous is the policy of requests without a token: it denies
// everything until an operator edits it.
const Anonymous = "anonymous"

// Validate checks p's name, rules and operator level.
func (p Policy) Validate() error {
	if err := checkName(p.Name); err != nil {
		return err
	}
	if len(p.Description) > MaxDescriptionBytes {
		return fmt.Errorf("%w: policy %q: description of %d bytes, at most %d", ErrInvalid, p.Name, len(p.Description), MaxDescriptionBytes)
	}
	if len(p.Rules) > MaxRules {
		return fmt.Errorf("%w: policy %q: %d rules, at most %d", ErrInvalid, p.Name, len(p.Rules), MaxRules)
	}
	seen := make(map[string]bool, len(p.Rules))
	for i, r := range p.Rules {
		if len(r.Prefix) > MaxPrefixBytes {
			return fmt.Errorf("%w: policy %q: rule %d: prefix of %d bytes, at most %d", ErrInvalid, p.Name, i, len(r.Prefix), MaxPrefixBytes)
		}
		if _, err := ParseAccess(r.Access); err != nil {
			return fmt.Errorf("policy %q: rule %d (prefix %q): %w", p.Name, i, r.Prefix, err)
		}
		if seen[r.Prefix] {
			return fmt.Errorf("%w: policy %q: two rules for prefix %q", ErrInvalid, p.Name, r.Prefix)
		}
		seen[r.Prefix] = true
	}
	if _, err := ParseOperator(p.Operator); err != nil {
		return fmt.Errorf("policy %q: %w", p.Name, err)
	}
	return nil
}

// checkName: 1 to MaxNameBytes letters, digits, '.', '_' or '-',
// beginning with a letter or digit.
func checkName(name string) error {
	if name == "" || len(name) > MaxNameBytes {
		return fmt.Errorf("%w: policy name %q: 1 to %d characters", ErrInvalid, name, MaxNameBytes)
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || i > 0 && strings.ContainsRune("._-", c)
		if !ok {
			return fmt.Errorf("%w: policy name %q: letters, digits, '.', '_' or '-', beginning with a letter or digit", ErrInvalid, name)
		}
	}
	return nil
}
