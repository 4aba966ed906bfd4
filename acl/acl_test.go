package acl

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func mustCompile(t *testing.T, ps ...Policy) *Authorizer {
	t.Helper()
	a, err := Compile(ps)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The longest matching prefix decides, across policies; the more
// permissive wins on the same prefix; no matching rule denies.
func TestAuthorizerKeyAccess(t *testing.T) {
	app := Policy{Name: "app", Operator: "none", Rules: []Rule{
		{Prefix: "app/", Access: "write"},
		{Prefix: "app/secret/", Access: "deny"},
		{Prefix: "", Access: "read"},
	}}
	audit := Policy{Name: "audit", Operator: "read", Rules: []Rule{
		{Prefix: "app/secret/", Access: "read"},
		{Prefix: "logs", Access: "write"},
	}}
	tests := []struct {
		policies []Policy
		key      string
		want     Access
	}{
		{[]Policy{app}, "app/x", Write},
		{[]Policy{app}, "app/", Write},
		{[]Policy{app}, "app", Read}, // "app/" does not match "app"
		{[]Policy{app}, "app/secret/k", Deny},
		{[]Policy{app}, "other", Read},
		{[]Policy{app}, "", Read},
		{[]Policy{app, audit}, "app/secret/k", Read}, // same prefix: the more permissive
		{[]Policy{app, audit}, "logs/1", Write},
		{[]Policy{audit}, "other", Deny}, // no rule matches
		{nil, "anything", Deny},
	}
	for _, tt := range tests {
		a := mustCompile(t, tt.policies...)
		if got := a.Key([]byte(tt.key)); got != tt.want {
			t.Errorf("%d policies: Key(%q) = %s, want %s", len(tt.policies), tt.key, got, tt.want)
		}
	}
	if op := mustCompile(t, app, audit).Operator(); op != Read {
		t.Errorf("operator of app+audit = %s, want read", op.OperatorString())
	}
	if m := Management(); !m.Allows([]byte("anything"), Write) || m.Operator() != Write {
		t.Error("a management token may not do everything")
	}
}

// A decision agrees with a slow reference: scan every rule, keep the
// longest matching prefix, the most permissive among equals.
func TestAuthorizerAgreesWithAScan(t *testing.T) {
	words := []string{"deny", "read", "write"}
	prefixes := []string{"", "a", "ab", "abc", "b", "ba", "abd", "x/y", "a/"}
	var ps []Policy
	for i := 0; i < 4; i++ {
		p := Policy{Name: fmt.Sprintf("p%d", i), Operator: "none"}
		for j, pre := range prefixes {
			if (i+j)%3 == 0 {
				p.Rules = append(p.Rules, Rule{Prefix: pre, Access: words[(i*7+j)%3]})
			}
		}
		ps = append(ps, p)
	}
	a := mustCompile(t, ps...)
	for _, key := range []string{"", "a", "ab", "abc", "abcd", "abd", "b", "ba", "bb", "x", "x/y/z", "a/", "zzz"} {
		best, bestLen := Deny, -1
		for _, p := range ps {
			for _, r := range p.Rules {
				acc, _ := ParseAccess(r.Access)
				if !strings.HasPrefix(key, r.Prefix) {
					continue
				}
				if len(r.Prefix) > bestLen || len(r.Prefix) == bestLen && acc > best {
					best, bestLen = acc, len(r.Prefix)
				}
			}
		}
		if got := a.Key([]byte(key)); got != best {
			t.Errorf("Key(%q) = %s, a scan of the rules says %s", key, got, best)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	many := make([]Rule, MaxRules+1)
	for i := range many {
		many[i] = Rule{Prefix: fmt.Sprint(i), Access: "read"}
	}
	bad := []struct {
		p    Policy
		says string
	}{
		{Policy{Name: "", Operator: "none"}, "1 to 128"},
		{Policy{Name: "-x", Operator: "none"}, "beginning with a letter or digit"},
		{Policy{Name: "a/b", Operator: "none"}, "letters, digits"},
		{Policy{Name: strings.Repeat("a", MaxNameBytes+1)}, "1 to 128"},
		{Policy{Name: "p", Rules: many}, "1001 rules, at most 1000"},
		{Policy{Name: "p", Rules: []Rule{{Prefix: "a", Access: "admin"}}}, `access "admin": want deny, read or write`},
		{Policy{Name: "p", Rules: []Rule{{Prefix: "a", Access: "read"}, {Prefix: "a", Access: "write"}}}, `two rules for prefix "a"`},
		{Policy{Name: "p", Rules: []Rule{{Prefix: strings.Repeat("k", MaxPrefixBytes+1), Access: "read"}}}, "at most 4096"},
		{Policy{Name: "p", Operator: "root"}, `operator "root"`},
	}
	for _, b := range bad {
		err := b.p.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), b.says) {
			t.Errorf("Validate(%.60q...) = %v, want ErrInvalid saying %q", b.p.Name, err, b.says)
		}
		if _, cerr := Compile([]Policy{b.p}); cerr == nil {
			t.Errorf("Compile accepted a policy that does not validate: %v", err)
		}
	}
	ok := Policy{Name: "app", Rules: []Rule{{Prefix: "", Access: "read"}, {Prefix: "app/", Access: "write"}}, Operator: "read"}
	if err := ok.Validate(); err != nil {
		t.Errorf("a valid policy: %v", err)
	}
}

// A token's secret is stored only as a hash, matches itself only, and
// secrets of 0 or more than MaxSecretBytes bytes are refused unhashed.
func TestTokens(t *testing.T) {
	tok, secret, err := NewToken("app servers", []string{"app"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if tok.SecretHash == secret || strings.Contains(tok.SecretHash, secret) || len(tok.SecretHash) != 64 {
		t.Fatalf("the stored token holds the secret: %+v", tok)
	}
	if !tok.Matches(secret) || tok.Matches(secret+"x") || tok.Matches(tok.SecretHash) {
		t.Fatal("a token matches what is not its secret, or not its secret")
	}
	other, secret2, _ := NewToken("", nil, true)
	if other.AccessorID == tok.AccessorID || secret2 == secret || len(secret) != 36 {
		t.Fatalf("two tokens share an id or a secret, or a secret is not a UUID: %q %q", secret, secret2)
	}
	for _, s := range []string{"", strings.Repeat("s", MaxSecretBytes+1), strings.Repeat("s", 100000)} {
		if err := CheckSecret(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckSecret of %d bytes = %v, want ErrInvalid", len(s), err)
		}
	}
	if err := CheckSecret("x"); err != nil {
		t.Errorf("CheckSecret of one byte: %v (it is refused by lookup, not by form)", err)
	}
	if _, _, err := NewToken("", []string{"bad name"}, false); !errors.Is(err, ErrInvalid) {
		t.Errorf("a token naming an invalid policy: %v", err)
	}
}

func FuzzAuthorizer(f *testing.F) {
	f.Add("app/", "write", "app/x", "", "read")
	f.Add("", "deny", "", "a", "write")
	f.Fuzz(func(t *testing.T, p1, a1, key, p2, a2 string) {
		p := Policy{Name: "f", Operator: "none", Rules: []Rule{{Prefix: p1, Access: a1}, {Prefix: p2, Access: a2}}}
		a, err := Compile([]Policy{p})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Compile: %v, not ErrInvalid", err)
			}
			return
		}
		got := a.Key([]byte(key))
		want := Deny
		best := -1
		for _, r := range p.Rules {
			acc, _ := ParseAccess(r.Access)
			if strings.HasPrefix(key, r.Prefix) && len(r.Prefix) > best {
				want, best = acc, len(r.Prefix)
			}
		}
		if got != want {
			t.Fatalf("Key(%q) = %s, want %s", key, got, want)
		}
	})
}
