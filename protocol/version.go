package protocol

import (
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

	"github.com/hashicorp/raft"
)

// Version is the node-to-node protocol this release speaks. A node says it
// in the greeting of every forwarding stream it serves, in the
// X-Ringkv-Protocol header of every forwarding answer, and in its status
// (GET /v1/status, "protocol"). Releases before versioning said nothing:
// their version counts as 1.
//
//	1  every release before versioning (the latest of them have forwarding
//	   streams and layout_index; the earliest have neither)
//	2  versioned greeting and header; every op of this package but changes
//	3  changes (the watch's reads of a group's history)
const Version = 3

// VersionHeader carries Version on forwarding answers.
const VersionHeader = "X-Ringkv-Protocol"

// Unversioned is the version of a peer that did not say.
const Unversioned = 1

// greeting is the body of a stream's greeting: the version as a uvarint,
// or nothing for Unversioned, as releases before versioning greet.
func greeting(version int) []byte {
	if version <= Unversioned {
		return nil
	}
	return binary.AppendUvarint(nil, uint64(version))
}

// parseGreeting reads a greeting's body; an empty one is a node of a
// release before versioning.
func parseGreeting(body []byte) int {
	if v, n := binary.Uvarint(body); n > 0 && v > 0 && v < 1<<16 {
		return int(v)
	}
	return Unversioned
}

// mustJSON encodes what cannot fail to encode.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// headerVersion reads VersionHeader; a missing one is Unversioned.
func headerVersion(h http.Header) int {
	if v, err := strconv.Atoi(h.Get(VersionHeader)); err == nil && v > 0 && v < 1<<16 {
		return v
	}
	return Unversioned
}

// versions are the protocol versions peers last said, by Raft address.
type versions struct {
	mu sync.Mutex
	by map[string]int
}

func (v *versions) note(addr string, version int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.by == nil {
		v.by = map[string]int{}
	}
	v.by[addr] = version
}

// PeerVersion returns the protocol version the node at raftAddr said in
// its last stream greeting or forwarding answer; false before it said any.
func (f *Forwarder) PeerVersion(raftAddr string) (int, bool) {
	f.versions.mu.Lock()
	defer f.versions.mu.Unlock()
	v, ok := f.versions.by[raftAddr]
	return v, ok
}

// UseStreams sends the small requests on forwarding streams dialled
// through layer (the mux's stream layer) from now on.
func (f *Forwarder) UseStreams(layer raft.StreamLayer) { f.streams = newStreams(layer, &f.versions) }

// Client is the HTTP client for peers' client ports (joins, status).
func (f *Forwarder) Client() *http.Client { return f.client }
