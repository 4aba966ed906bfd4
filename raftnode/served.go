package raftnode

import (
	"encoding/json"

	"github.com/ringkv/ringkv/protocol"
)

// servedLocally tells whether req is answered by the replica it reaches,
// leader or not: stale reads and the verification reads of one replica.
func servedLocally(r protocol.Request) bool {
	switch r.Op {
	case protocol.OpVerifyResult, protocol.OpVerifyTree, protocol.OpLeafEntries, protocol.OpRepair:
		return true
	}
	return (r.Op == protocol.OpGet || r.Op == protocol.OpScan) && (r.Consistency == protocol.Stale || brokenStaleReads)
}

func mustJSON(v interface{}) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
