package layout

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/base"
)

// metaShapes returns layouts of every shape the metadata state machine
// meets: none yet, one node with one group, one node with several, several
// nodes, a ring change in each of its phases, one being aborted, and a
// replica move in flight.
func metaShapes(tb testing.TB) map[string]*Layout {
	tb.Helper()
	must := func(l *Layout, cmds ...Command) *Layout {
		tb.Helper()
		for _, c := range cmds {
			next, err := applyRules(l, c)
			if err != nil {
				tb.Fatalf("building a layout: %s: %v", c.Op, err)
			}
			l = next
		}
		return l
	}
	member := func(id string, port int) Command {
		return Command{Op: "add_node", Node: &NodeInfo{ID: base.NodeID(id),
			HTTPAddr: fmt.Sprintf("127.0.0.1:%d", port), RaftAddr: fmt.Sprintf("127.0.0.1:%d", port+1)}}
	}
	init := func(groups int) Command {
		return Command{Op: "init", Node: &NodeInfo{ID: "n1", HTTPAddr: "127.0.0.1:7070", RaftAddr: "127.0.0.1:7071"},
			Groups: groups, VNodes: 8, ClusterID: "c"}
	}
	one := must(&Layout{}, init(1))
	three := must(&Layout{}, init(3), member("n2", 7080), member("n3", 7090), member("n4", 7100))
	adding := must(three, Command{Op: "migrate_start", Change: &RingChange{Add: &GroupWeight{Group: 4, Weight: 1}}})
	t := adding.Migration.Transfers[0]
	fenced := must(adding, Command{Op: "migrate_phase", Phase: &MigrationPhase{From: t.From, To: t.To, Phase: PhaseFenced, FenceIndex: 9}})
	flipped := must(fenced, Command{Op: "migrate_phase", Phase: &MigrationPhase{From: t.From, To: t.To, Phase: PhaseFlipped}})
	return map[string]*Layout{
		"empty":              {},
		"one node, 1 group":  one,
		"one node, 3 groups": must(&Layout{}, init(3)),
		"3 nodes, 1 group":   must(one, member("n2", 7080), member("n3", 7090)),
		"4 nodes, 3 groups":  three,
		"adding a group":     adding,
		"transfer fenced":    fenced,
		"transfer flipped":   flipped,
		"removing a group":   must(three, Command{Op: "migrate_start", Change: &RingChange{Remove: 2}}),
		"aborting":           must(adding, Command{Op: "migrate_abort"}),
		"moving a replica": must(three, Command{Op: "replica_move_start",
			Move: &ReplicaMove{Group: 1, From: "n1", To: "n4", Reason: "balance"}}),
		"draining":                         must(three, Command{Op: "node_state", Node: &NodeInfo{ID: "n2"}, Draining: true, Leaving: true}),
		"restoring":                        must(three, Command{Op: "restore_begin", Restore: &RestoreLock{ID: strings.Repeat("ab", 16), Node: "n2"}}),
		"access control, not bootstrapped": must(&Layout{}, withACL(init(3)), member("n2", 7080)),
		"access control with tokens": must(&Layout{}, withACL(init(1)),
			Command{Op: "acl", ACL: &ACLChange{Op: "bootstrap", Token: &acl.Token{AccessorID: seedAccessor, SecretHash: strings.Repeat("ab", 32), Management: true}}},
			Command{Op: "acl", ACL: &ACLChange{Op: "policy_create", Policy: &acl.Policy{Name: "app", Operator: "read", Rules: []acl.Rule{{Prefix: "app/", Access: "write"}}}}},
			Command{Op: "acl", ACL: &ACLChange{Op: "token_create", Token: &acl.Token{AccessorID: seedAccessor2, SecretHash: strings.Repeat("cd", 32), Policies: []string{"app"}}}}),
	}
}

const (
	seedAccessor  = "0f0e0d0c-0b0a-4908-8706-050403020100"
	seedAccessor2 = "1f1e1d1c-1b1a-4918-8716-151413121110"
)

func withACL(c Command) Command {
	c.EnableACL = true
	return c
}

// checkACL asserts what deciding relies on: policies and tokens sorted and
// unique (they are found by binary search), every token's policies there,
// the anonymous policy kept, and a management token once bootstrapped.
func checkACL(t *testing.T, s *ACLState) {
	t.Helper()
	if s == nil {
		return
	}
	for i := 1; i < len(s.Policies); i++ {
		if s.Policies[i-1].Name >= s.Policies[i].Name {
			t.Fatalf("policies out of order: %q then %q", s.Policies[i-1].Name, s.Policies[i].Name)
		}
	}
	if _, ok := s.Policy(acl.Anonymous); !ok {
		t.Fatal("the anonymous policy is gone")
	}
	mgmt := 0
	for i, tok := range s.Tokens {
		if i > 0 && s.Tokens[i-1].AccessorID >= tok.AccessorID {
			t.Fatalf("tokens out of order at %d", i)
		}
		for _, p := range tok.Policies {
			if _, ok := s.Policy(p); !ok {
				t.Fatalf("token %s names policy %q, which is gone", tok.AccessorID, p)
			}
		}
		if tok.Management {
			mgmt++
		}
	}
	if s.Bootstrapped && mgmt == 0 {
		t.Fatal("no management token is left")
	}
	if len(s.Policies) > MaxPolicies || len(s.Tokens) > MaxTokens {
		t.Fatalf("%d policies, %d tokens", len(s.Policies), len(s.Tokens))
	}
}

// checkLayout asserts what every replica relies on in a layout: replicas
// on members and within the factor, group ids that are not reserved, a
// form that a snapshot restores, and a ring that routes every key.
func checkLayout(t *testing.T, l *Layout) {
	t.Helper()
	for _, g := range l.Groups {
		if CheckGroupID("group", g.ID) != nil {
			t.Fatalf("the layout holds group %d", g.ID)
		}
		if len(g.Replicas) > l.ReplicasPerGroup() {
			t.Fatalf("group %d has %d replicas, factor %d", g.ID, len(g.Replicas), l.ReplicasPerGroup())
		}
		for _, id := range g.Replicas {
			if _, ok := l.Node(id); !ok {
				t.Fatalf("group %d has a replica on non-member %s", g.ID, id)
			}
		}
	}
	checkACL(t, l.ACL)
	back, err := Decode(bytes.NewReader(mustJSON(l)))
	if err != nil {
		t.Fatalf("the layout does not survive a snapshot: %v", err)
	}
	if !l.Initialized {
		return
	}
	for _, k := range []string{"a", "b", "\xff", strings.Repeat("k", 300)} {
		g, err := back.Route([]byte(k))
		if err != nil {
			t.Fatalf("key %q: no route: %v", k, err)
		}
		if _, ok := back.Group(g); !ok {
			t.Fatalf("key %q routes to group %d, not in the layout", k, g)
		}
	}
}

// FuzzApplyMeta applies any sequence of metadata commands (one JSON
// command per line) to layouts of every shape. Whatever decodes must apply
// or be refused without a panic, deterministically, and leave a layout
// that checkLayout accepts.
func FuzzApplyMeta(f *testing.F) {
	for _, s := range []string{
		`{"op":"migrate_start","change":{"weight":{"group":1,"weight":2}}}`,
		`{"op":"migrate_start","change":{"add":{"group":4294967295,"weight":1}}}`,
		`{"op":"migrate_start","change":{"add":{"group":1048575,"weight":1}}}`,
		`{"op":"migrate_start","change":{"remove":1}}`,
		`{"op":"migrate_start","change":{"weight":{"group":3,"weight":64}}}`,
		`{"op":"migrate_phase","phase":{"From":1,"To":4,"Phase":"done"}}` + "\n" + `{"op":"migrate_end"}`,
		`{"op":"migrate_abort"}` + "\n" + `{"op":"migrate_aborted"}`,
		`{"op":"add_node","node":{"id":"n9","http_addr":"127.0.0.1:1","raft_addr":"127.0.0.1:2"}}`,
		`{"op":"add_node","node":{"id":"../x","http_addr":"a","raft_addr":"b"}}`,
		`{"op":"remove_node","node":{"id":"n1"}}` + "\n" + `{"op":"remove_node","node":{"id":"n2"}}`,
		`{"op":"replica_move_end","move":{"group":1,"from":"n1","to":"n4","reason":"balance"}}`,
		`{"op":"replica_move_start","move":{"group":2,"to":"n4","reason":"replicate"}}`,
		`{"op":"pin_leader","group":1,"node":{"id":"n2"}}`,
		`{"op":"loads","loads":{"1":5,"4294967295":3}}`,
		`{"op":"node_state","node":{"id":"n3"},"draining":true}`,
		`{"op":"restore_begin","restore":{"id":"0123456789abcdef0123456789abcdef","node":"n1"}}` + "\n" + `{"op":"migrate_start","change":{"remove":1}}`,
		`{"op":"restore_renew","restore":{"id":"abababababababababababababababab"}}` + "\n" + `{"op":"restore_end","restore":{"id":"abababababababababababababababab"}}`,
		`{"op":"restore_begin","restore":{"id":"../x","node":"a/b"}}`,
		`{"op":"acl","acl":{"op":"token_delete","name":"` + seedAccessor + `"}}`,
		`{"op":"acl","acl":{"op":"policy_delete","name":"app"}}` + "\n" + `{"op":"acl","acl":{"op":"token_delete","name":"` + seedAccessor2 + `"}}`,
		`{"op":"acl","acl":{"op":"policy_delete","name":"anonymous"}}`,
		`{"op":"acl","acl":{"op":"bootstrap","token":{"accessor_id":"` + seedAccessor2 + `","secret_hash":"` + strings.Repeat("ef", 32) + `","management":true}}}`,
		`{"op":"acl","acl":{"op":"token_create","token":{"accessor_id":"2f1e1d1c-1b1a-4918-8716-151413121110","secret_hash":"` + strings.Repeat("cd", 32) + `","policies":["nope"]}}}`,
		`{"op":"acl","acl":{"op":"policy_update","policy":{"name":"anonymous","rules":[{"prefix":"","access":"read"}],"operator":"read"}}}`,
		`{"op":"acl","acl":{"op":"policy_create","policy":{"name":"x","rules":[{"prefix":"a","access":"root"}]}}}`,
	} {
		f.Add(s)
	}
	shapes := metaShapes(f)
	f.Fuzz(func(t *testing.T, s string) {
		lines := strings.Split(s, "\n")
		if len(lines) > 8 {
			return
		}
		var cmds []Command
		for _, line := range lines {
			c, err := DecodeCommand([]byte(line))
			if err != nil {
				if !errors.Is(err, base.ErrBadRequest) {
					t.Fatalf("decode refused %q with %v, not a bad request", line, err)
				}
				continue
			}
			cmds = append(cmds, c)
		}
		for name, l := range shapes {
			for _, c := range cmds {
				a, errA := applyRules(l, c)
				b, errB := applyRules(l, c)
				if (errA == nil) != (errB == nil) || string(mustJSON(a)) != string(mustJSON(b)) {
					t.Fatalf("%s: %s is not deterministic", name, c.Op)
				}
				if errA != nil || a == nil {
					continue
				}
				checkLayout(t, a)
				l = a
			}
		}
	})
}

// The poison pills found against real clusters, each refused as a
// recorded error instead of panicking or being stored.
func TestMetaPoisonPillsAreRefused(t *testing.T) {
	shapes := metaShapes(t)
	always := func(*Layout) bool { return true }
	for _, tc := range []struct {
		name string
		cmd  Command
		// on says which layouts must refuse the command.
		on func(*Layout) bool
	}{
		{"the weight of the only group", Command{Op: "migrate_start", Change: &RingChange{Weight: &GroupWeight{Group: 1, Weight: 2}}},
			func(l *Layout) bool { return len(l.Groups) == 1 }},
		{"the forwarding streams' group id", Command{Op: "migrate_start", Change: &RingChange{Add: &GroupWeight{Group: 1<<32 - 1, Weight: 1}}}, always},
		{"a reserved group id", Command{Op: "migrate_start", Change: &RingChange{Add: &GroupWeight{Group: MaxGroupID + 1, Weight: 1}}}, always},
		{"a node id with a slash", Command{Op: "add_node", Node: &NodeInfo{ID: "a/../b", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}}, always},
		{"a node id with NUL", Command{Op: "add_node", Node: &NodeInfo{ID: "a\x00", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}}, always},
		{"an address that is none", Command{Op: "add_node", Node: &NodeInfo{ID: "n9", HTTPAddr: "127.0.0.1:1", RaftAddr: "not an address"}}, always},
		{"a restore id that is not one", Command{Op: "restore_begin", Restore: &RestoreLock{ID: "x/../y", Node: "n1"}}, always},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for name, l := range shapes {
				var next *Layout
				c, err := DecodeCommand(mustJSON(tc.cmd))
				if err == nil {
					next, err = Apply(l, c)
				}
				if tc.on(l) && !errors.Is(err, base.ErrBadRequest) {
					t.Fatalf("%s: applying it gave %v, want a bad request", name, err)
				}
				if err != nil && next != nil {
					t.Fatalf("%s: a refused command changed the layout", name)
				}
			}
		})
	}
}

// TestRestoreLockIsOneAtATime: a second restore and a ring change are
// refused while the lock is held; only its holder renews or releases it.
func TestRestoreLockIsOneAtATime(t *testing.T) {
	l := metaShapes(t)["restoring"]
	other := &RestoreLock{ID: strings.Repeat("cd", 16), Node: "n3"}
	for _, c := range []Command{
		{Op: "restore_begin", Restore: other},
		{Op: "restore_renew", Restore: other},
		{Op: "restore_end", Restore: other},
		{Op: "migrate_start", Change: &RingChange{Remove: 2}},
	} {
		if _, err := Apply(l, c); !errors.Is(err, base.ErrConflict) {
			t.Fatalf("%s while a restore holds the lock: %v, want a conflict", c.Op, err)
		}
	}
	mine := &RestoreLock{ID: l.Restore.ID}
	renewed, err := Apply(l, Command{Op: "restore_renew", Restore: mine})
	if err != nil || renewed.Restore.Renewals != 1 {
		t.Fatalf("renewal by the holder: %v, %+v", err, renewed)
	}
	ended, err := Apply(renewed, Command{Op: "restore_end", Restore: mine})
	if err != nil || ended.Restore != nil {
		t.Fatalf("release by the holder: %v, %+v", err, ended)
	}
	if _, err := Apply(ended, Command{Op: "restore_begin", Restore: other}); err != nil {
		t.Fatalf("a restore after the release: %v", err)
	}
}
