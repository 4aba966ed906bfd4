package client

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/ringkv/ringkv/api"
)

// AddGroup adds a data group to the ring with weight (POST
// /v1/ring/groups): group id, or the next free one when id is 0. The keys
// move online; follow them with Ring until its epoch passes the answer's
// Migration.NextEpoch and Migration is nil.
func (c *Client) AddGroup(ctx context.Context, id uint32, weight int) (api.RingChangeStarted, error) {
	body := map[string]any{"weight": weight}
	if id != 0 {
		body["id"] = id
	}
	var s api.RingChangeStarted
	return s, c.DoJSON(ctx, http.MethodPost, "/v1/ring/groups", body, &s)
}

// RemoveGroup retires a data group (DELETE /v1/ring/groups/{id}): its keys
// move to the others first.
func (c *Client) RemoveGroup(ctx context.Context, id string) (api.RingChangeStarted, error) {
	var s api.RingChangeStarted
	return s, c.DoJSON(ctx, http.MethodDelete, "/v1/ring/groups/"+url.PathEscape(id), nil, &s)
}

// SetGroupWeight changes a group's weight (PUT
// /v1/ring/groups/{id}/weight): its share of the key space follows.
func (c *Client) SetGroupWeight(ctx context.Context, id string, weight int) (api.RingChangeStarted, error) {
	var s api.RingChangeStarted
	return s, c.DoJSON(ctx, http.MethodPut, "/v1/ring/groups/"+url.PathEscape(id)+"/weight", map[string]int{"weight": weight}, &s)
}

// AbortRingChange undoes the ring change in motion (DELETE
// /v1/ring/migration), before any range has flipped.
func (c *Client) AbortRingChange(ctx context.Context) (api.RingChangeStarted, error) {
	var s api.RingChangeStarted
	return s, c.DoJSON(ctx, http.MethodDelete, "/v1/ring/migration", nil, &s)
}

// Snapshot takes a Raft snapshot of every replica of the node now (POST
// /v1/snapshot), so their logs can be compacted behind it.
func (c *Client) Snapshot(ctx context.Context) ([]api.SnapshotResult, error) {
	var s api.Snapshots
	return s.Groups, c.PostJSON(ctx, "/v1/snapshot", &s)
}

// GroupTree fetches a group's Merkle tree at one index (GET
// /v1/groups/{id}/merkle).
func (c *Client) GroupTree(ctx context.Context, group uint32) (api.GroupTree, error) {
	var t api.GroupTree
	return t, c.GetJSON(ctx, "/v1/groups/"+strconv.FormatUint(uint64(group), 10)+"/merkle", nil, &t)
}

// Backup starts a backup of every group (GET /v1/backup) and returns the
// archive as a stream, with its size in bytes (-1 when the node does not
// say); the caller closes it. It is bounded by ctx only.
func (c *Client) Backup(ctx context.Context) (io.ReadCloser, int64, error) {
	resp, err := c.Stream(ctx, http.MethodGet, "/v1/backup", nil, nil)
	if err != nil {
		return nil, 0, err
	}
	return resp.Body, resp.ContentLength, nil
}

// Restore loads the backup archive read from archive into the cluster
// (POST /v1/restore), all or nothing; force allows a cluster that holds
// keys already. The report proves the cluster holds the backup's data, or
// says where it does not.
func (c *Client) Restore(ctx context.Context, archive io.Reader, force bool) (api.RestoreReport, error) {
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	var rep api.RestoreReport
	resp, err := c.Stream(ctx, http.MethodPost, "/v1/restore", q, archive)
	if err != nil {
		return rep, err
	}
	defer resp.Body.Close()
	return rep, json.NewDecoder(resp.Body).Decode(&rep)
}
