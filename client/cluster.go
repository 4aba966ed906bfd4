package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/ringkv/ringkv/api"
)

// Cluster describes every member, its replicas and leaderships, and the
// replica move in motion (GET /v1/cluster).
func (c *Client) Cluster(ctx context.Context) (api.ClusterInfo, error) {
	var ci api.ClusterInfo
	return ci, c.GetJSON(ctx, "/v1/cluster", nil, &ci)
}

// RemoveNode removes node id from the cluster (DELETE
// /v1/cluster/nodes/{id}): at once, or once its replicas have moved (the
// answer says which). force removes it even below a majority of the
// replication factor.
func (c *Client) RemoveNode(ctx context.Context, id string, force bool) (api.NodeRemoval, error) {
	path := "/v1/cluster/nodes/" + url.PathEscape(id)
	if force {
		path += "?force=true"
	}
	var rm api.NodeRemoval
	return rm, c.DoJSON(ctx, http.MethodDelete, path, nil, &rm)
}

// DrainNode moves node id's replicas to other nodes (on), or lets it take
// replicas again (PUT or DELETE /v1/cluster/nodes/{id}/drain).
func (c *Client) DrainNode(ctx context.Context, id string, on bool) error {
	method := http.MethodDelete
	if on {
		method = http.MethodPut
	}
	return c.DoJSON(ctx, method, "/v1/cluster/nodes/"+url.PathEscape(id)+"/drain", nil, nil)
}

// PinLeader makes node the preferred leader of group g; an empty node
// lifts the pin (PUT or DELETE /v1/groups/{id}/leader).
func (c *Client) PinLeader(ctx context.Context, g uint32, node string) error {
	path := "/v1/groups/" + strconv.FormatUint(uint64(g), 10) + "/leader"
	if node == "" {
		return c.DoJSON(ctx, http.MethodDelete, path, nil, nil)
	}
	return c.DoJSON(ctx, http.MethodPut, path, map[string]string{"node": node}, nil)
}
