package client

import (
	"context"
	"encoding/base64"
	"net/url"
	"strconv"

	"github.com/ringkv/ringkv/api"
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

// The answer to a verification, as the server defines it (package api):
// one definition shared by both sides.
type (
	Verification      = api.Verification
	GroupVerification = api.GroupVerification
	ReplicaRoot       = api.ReplicaRoot
	ReplicaDiff       = api.ReplicaDiff
	KeyRange          = api.KeyRange
	Repair            = api.Repair
)

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
