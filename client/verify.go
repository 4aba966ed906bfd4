package client

import (
	"context"
	"encoding/base64"
	"net/url"
	"strconv"
)

// VerifyOptions qualifies a verification.
type VerifyOptions struct {
	// Group verifies one group; 0 verifies all.
	Group uint32
	// Shallow compares only the Merkle trees kept with the data, without
	// reading it.
	Shallow bool
	// NoRepair reports a divergent replica without reinstalling it.
	NoRepair bool
}

// Verification is the answer to a verification.
type Verification struct {
	Agree  bool                `json:"agree"`
	Groups []GroupVerification `json:"groups"`
}

// GroupVerification compares a group's replicas at one log index.
type GroupVerification struct {
	Group    uint32        `json:"group"`
	Index    uint64        `json:"index"`
	Root     string        `json:"root"`
	Agree    bool          `json:"agree"`
	Replicas []ReplicaRoot `json:"replicas"`
}

// ReplicaRoot is one replica's root at the verification index.
type ReplicaRoot struct {
	Node     string       `json:"node"`
	Index    uint64       `json:"index"`
	Root     string       `json:"root"`
	DataRoot string       `json:"data_root"`
	Error    string       `json:"error"`
	Diff     *ReplicaDiff `json:"diff"`
	Repair   *Repair      `json:"repair"`
}

// ReplicaDiff locates a divergent replica's differences.
type ReplicaDiff struct {
	Against  string     `json:"against"`
	Hashes   int        `json:"hashes_compared"`
	Ranges   []KeyRange `json:"ranges"`
	Keys     []string   `json:"keys"`
	MoreKeys bool       `json:"more_keys"`
	// KeysBase64 holds Keys' exact bytes when one is not valid UTF-8.
	KeysBase64 []string `json:"keys_base64"`
}

// KeyRange is a range of the key-hash space (one Merkle leaf).
type KeyRange struct {
	Leaf int    `json:"leaf"`
	From string `json:"from"`
	To   string `json:"to"`
}

// Repair reports a divergent replica's reinstallation.
type Repair struct {
	Done  bool   `json:"done"`
	From  string `json:"from"`
	Index uint64 `json:"index"`
	Error string `json:"error"`
}

// Verify runs a verification (POST /v1/verify or /v1/groups/{id}/verify).
func (c *Client) Verify(ctx context.Context, o VerifyOptions) (Verification, error) {
	path := "/v1/verify"
	if o.Group != 0 {
		path = "/v1/groups/" + strconv.FormatUint(uint64(o.Group), 10) + "/verify"
	}
	q := url.Values{}
	if o.Shallow {
		q.Set("deep", "false")
	}
	if o.NoRepair {
		q.Set("repair", "false")
	}
	var v Verification
	if err := c.PostJSONQuery(ctx, path, q, &v); err != nil {
		return v, err
	}
	// Keys that are not UTF-8 come exactly in keys_base64.
	for _, g := range v.Groups {
		for _, r := range g.Replicas {
			if d := r.Diff; d != nil && len(d.KeysBase64) == len(d.Keys) {
				for i, k := range d.KeysBase64 {
					if b, err := base64.StdEncoding.DecodeString(k); err == nil {
						d.Keys[i] = string(b)
					}
				}
			}
		}
	}
	return v, nil
}
