package client

import (
	"context"

	"github.com/ringkv/ringkv/api"
)

// Cluster describes every member, its replicas and leaderships, and the
// replica move in motion (GET /v1/cluster).
func (c *Client) Cluster(ctx context.Context) (api.ClusterInfo, error) {
	var ci api.ClusterInfo
	return ci, c.GetJSON(ctx, "/v1/cluster", nil, &ci)
}
