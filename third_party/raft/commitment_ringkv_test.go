package raft

import "testing"

// A non-voter that acknowledges the entry promoting it before the leader
// installs the new configuration (appendConfigurationEntry dispatches the
// entry first) counts for that entry: with one of four voters down the
// change must still commit without any later entry.
func TestCommitmentKeepsWhatAPromotedServerReported(t *testing.T) {
	voter := func(id string) Server { return Server{Suffrage: Voter, ID: ServerID(id), Address: ServerAddress(id)} }
	old := Configuration{Servers: []Server{voter("a"), voter("b"), voter("c"), {Suffrage: Nonvoter, ID: "d", Address: "d"}}}
	c := newCommitment(make(chan struct{}, 1), old, 10)
	for _, id := range []ServerID{"b", "c", "d"} {
		c.match(id, 532)
	}
	// The promoting entry 533 is dispatched: the leader and the promoted
	// server store it before the configuration is installed.
	c.match("b", 533)
	c.match("d", 533)
	next := Configuration{Servers: []Server{voter("a"), voter("b"), voter("c"), voter("d")}}
	c.setConfiguration(next)
	c.match("c", 533) // a is down
	if got := c.getCommitIndex(); got != 533 {
		t.Fatalf("commit index %d after b, c and d of a, b, c, d stored 533; want 533", got)
	}
}
