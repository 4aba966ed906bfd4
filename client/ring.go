package client

import (
	"context"
	"net/url"

	"github.com/ringkv/ringkv/api"
)

// Ring describes the ring as the node has it (GET /v1/ring): the epoch,
// every group's weight, share, leader and replicas, and the ring change in
// motion, if any.
func (c *Client) Ring(ctx context.Context) (api.RingInfo, error) {
	var r api.RingInfo
	return r, c.GetJSON(ctx, "/v1/ring", nil, &r)
}

// Lookup names the group, leader and replicas owning key (GET
// /v1/ring/lookup).
func (c *Client) Lookup(ctx context.Context, key string) (api.Lookup, error) {
	var l api.Lookup
	return l, c.GetJSON(ctx, "/v1/ring/lookup", url.Values{"key": {key}}, &l)
}

// Plan previews a ring change (GET /v1/ring/plan): what would move where,
// and how many keys and bytes. change is one of add=GROUP[:WEIGHT],
// remove=GROUP or weight=GROUP:WEIGHT; ranges lists every moving range.
func (c *Client) Plan(ctx context.Context, change url.Values, ranges bool) (api.Plan, error) {
	q := url.Values{}
	for k, v := range change {
		q[k] = v
	}
	if ranges {
		q.Set("ranges", "true")
	}
	var p api.Plan
	return p, c.GetJSON(ctx, "/v1/ring/plan", q, &p)
}
