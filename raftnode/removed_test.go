package raftnode

import (
	"testing"

	"github.com/ringkv/ringkv/layout"
)

// A peer's status proves a removal only when it is of the same cluster, at
// least as new as our layout (which lists us), and does not list us: a
// peer that has not yet applied our join, or one of another cluster, or an
// unknown index of ours, proves nothing.
func TestRemovedBy(t *testing.T) {
	mine := &layout.Layout{Initialized: true, ClusterID: "c1", Nodes: []layout.NodeInfo{{ID: "n1"}, {ID: "n2"}, {ID: "n4"}}}
	without := []layout.NodeInfo{{ID: "n1"}, {ID: "n2"}}
	with := mine.Nodes
	for _, tc := range []struct {
		name    string
		myIndex uint64
		peer    Status
		want    bool
	}{
		{"newer layout without us", 40, Status{Node: "n1", ClusterID: "c1", LayoutIndex: 45, Members: without}, true},
		{"same index without us", 40, Status{Node: "n1", ClusterID: "c1", LayoutIndex: 40, Members: without}, true},
		{"peer behind our join", 40, Status{Node: "n2", ClusterID: "c1", LayoutIndex: 39, Members: without}, false},
		{"newer layout with us", 40, Status{Node: "n1", ClusterID: "c1", LayoutIndex: 90, Members: with}, false},
		{"another cluster", 40, Status{Node: "n1", ClusterID: "c2", LayoutIndex: 90, Members: without}, false},
		{"our index unknown", 0, Status{Node: "n1", ClusterID: "c1", LayoutIndex: 90, Members: without}, false},
		{"ourselves", 40, Status{Node: "n4", ClusterID: "c1", LayoutIndex: 90, Members: without}, false},
	} {
		if got := removedBy("n4", mine, tc.myIndex, tc.peer); got != tc.want {
			t.Errorf("%s: removedBy = %v, want %v", tc.name, got, tc.want)
		}
	}
	if removedBy("n9", mine, 40, Status{Node: "n1", ClusterID: "c1", LayoutIndex: 90, Members: without}) {
		t.Error("a node our own layout does not list is judged removed")
	}
}
