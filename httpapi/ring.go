package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/ring"
)

// ring describes the ring: GET /v1/ring[?tokens=true]; the groups'
// tokens, for clients that route keys themselves, only when asked.
func (a *API) ring(w http.ResponseWriter, r *http.Request) error {
	tokens, err := boolParam(r, "tokens")
	if err != nil {
		return err
	}
	info, err := a.b.Ring()
	if err != nil {
		return err
	}
	if !tokens {
		for i := range info.Groups {
			info.Groups[i].Tokens = nil
		}
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

// ringPlan previews a ring change: GET /v1/ring/plan?add=G[:W] |
// remove=G | weight=G:W [&ranges=true].
func (a *API) ringPlan(w http.ResponseWriter, r *http.Request) error {
	vals, err := parseQuery(r)
	if err != nil {
		return err
	}
	change, err := parseRingChange(vals)
	if err != nil {
		return err
	}
	withRanges, err := boolParam(r, "ranges")
	if err != nil {
		return err
	}
	p, err := a.b.Plan(r.Context(), change, withRanges)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// ringAdd starts adding a group: POST /v1/ring/groups {"id": N, "weight": W},
// both optional (the next free id, weight 1).
func (a *API) ringAdd(w http.ResponseWriter, r *http.Request) error {
	raw, err := readBody(w, r, "body", 4<<10)
	if err != nil {
		return err
	}
	body, err := decodeGroupBody(raw, false)
	if err != nil {
		return err
	}
	return a.changeRing(w, r, layout.RingChange{Add: &layout.GroupWeight{Group: base.GroupID(body.ID), Weight: body.Weight}})
}

// groupBody is the body of POST /v1/ring/groups and PUT .../weight.
type groupBody struct {
	ID     uint32 `json:"id"`
	Weight int    `json:"weight"`
}

// decodeGroupBody parses a group body strictly. An empty body is no id
// and weight 1, unless the weight is required.
func decodeGroupBody(b []byte, needWeight bool) (groupBody, error) {
	var raw struct {
		ID     *uint32 `json:"id"`
		Weight *int    `json:"weight"`
	}
	if len(bytes.TrimSpace(b)) > 0 {
		dec := json.NewDecoder(bytesReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&raw); err != nil || dec.More() {
			return groupBody{}, badRequest(fmt.Sprintf("body: want JSON {\"id\": GROUP, \"weight\": W}: %v", err))
		}
	}
	out := groupBody{Weight: 1}
	if raw.ID != nil {
		if *raw.ID == 0 {
			return out, badRequest("id: group 0 is the metadata group")
		}
		if *raw.ID > uint32(layout.MaxGroupID) {
			return out, badRequest(fmt.Sprintf("id %d: data group ids are 1 to %d (larger ids are reserved)", *raw.ID, layout.MaxGroupID))
		}
		out.ID = *raw.ID
	}
	switch {
	case raw.Weight != nil:
		out.Weight = *raw.Weight
	case needWeight:
		return out, badRequest("body: want JSON {\"weight\": W}")
	}
	if out.Weight < 1 || out.Weight > ring.MaxWeight {
		return out, badRequest(fmt.Sprintf("weight %d: want an integer from 1 to %d", out.Weight, ring.MaxWeight))
	}
	return out, nil
}

// ringRemove starts retiring a group: DELETE /v1/ring/groups/{id}.
func (a *API) ringRemove(w http.ResponseWriter, r *http.Request) error {
	g, err := groupParam(r)
	if err != nil {
		return err
	}
	return a.changeRing(w, r, layout.RingChange{Remove: g})
}

// ringWeight starts changing a weight: PUT /v1/ring/groups/{id}/weight
// {"weight": W}.
func (a *API) ringWeight(w http.ResponseWriter, r *http.Request) error {
	g, err := groupParam(r)
	if err != nil {
		return err
	}
	raw, err := readBody(w, r, "body", 4<<10)
	if err != nil {
		return err
	}
	body, err := decodeGroupBody(raw, true)
	if err != nil {
		return err
	}
	if body.ID != 0 && base.GroupID(body.ID) != g {
		return badRequest(fmt.Sprintf("body names group %d, the path group %d", body.ID, g))
	}
	return a.changeRing(w, r, layout.RingChange{Weight: &layout.GroupWeight{Group: g, Weight: body.Weight}})
}

// ringAbort undoes the ring change in motion: DELETE /v1/ring/migration.
// 409 once a transfer has flipped, 404 with no change in motion.
func (a *API) ringAbort(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := a.b.AbortRingChange(ctx); err != nil {
		return err
	}
	info, err := a.b.Ring()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, info)
	return nil
}

// pinLeader pins a group's leader: PUT /v1/groups/{id}/leader
// {"node": ID}; DELETE lifts the pin.
func (a *API) pinLeader(w http.ResponseWriter, r *http.Request) error {
	g, err := groupParam(r)
	if err != nil {
		return err
	}
	var node base.NodeID
	if r.Method == http.MethodPut {
		raw, err := readBody(w, r, "body", 4<<10)
		if err != nil {
			return err
		}
		if node, err = decodeLeaderBody(raw); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := a.b.PinLeader(ctx, g, node); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]interface{}{"group": g, "pinned": node})
	return nil
}

// decodeLeaderBody parses {"node": ID} strictly.
func decodeLeaderBody(b []byte) (base.NodeID, error) {
	var body struct {
		Node string `json:"node"`
	}
	dec := json.NewDecoder(bytesReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || dec.More() {
		return "", badRequest(fmt.Sprintf("body: want JSON {\"node\": ID}: %v", err))
	}
	if body.Node == "" || len(body.Node) > 128 {
		return "", badRequest("node: want a node id of 1 to 128 bytes")
	}
	return base.NodeID(body.Node), nil
}

// changeRing records a ring change and answers 202 with the ring and the
// change in motion; GET /v1/ring follows its progress.
func (a *API) changeRing(w http.ResponseWriter, r *http.Request, c layout.RingChange) error {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	got, err := a.b.ChangeRing(ctx, c)
	if err != nil {
		return err
	}
	info, err := a.b.Ring()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, api.RingChangeStarted{Started: got.String(), RingInfo: info})
	return nil
}

func (a *API) lookup(w http.ResponseWriter, r *http.Request) error {
	vals, err := parseQuery(r)
	if err != nil {
		return err
	}
	key := vals.Get("key")
	if key == "" {
		return badRequest("lookup needs ?key=K")
	}
	if len(key) > a.cfg.MaxKeyBytes {
		return &errTooLarge{what: "key", size: int64(len(key)), limit: int64(a.cfg.MaxKeyBytes)}
	}
	l, err := a.b.Lookup([]byte(key))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, l)
	return nil
}
