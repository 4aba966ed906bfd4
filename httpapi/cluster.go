package httpapi

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/verify"
)

func wireErr(msg, code string) base.WireError { return base.WireError{Error: msg, Code: code} }

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	st := a.b.Status()
	st.Replication = a.cfg.Replication
	writeJSON(w, http.StatusOK, st)
}

func (a *API) ring(w http.ResponseWriter, r *http.Request) {
	info, err := a.b.Ring()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// ringPlan previews a ring change: GET /v1/ring/plan?add=G[:W] |
// remove=G | weight=G:W [&ranges=true].
func (a *API) ringPlan(w http.ResponseWriter, r *http.Request) {
	vals, err := parseQuery(r)
	if err != nil {
		writeError(w, err)
		return
	}
	change, err := parseRingChange(vals)
	if err != nil {
		writeError(w, err)
		return
	}
	withRanges, err := boolParam(r, "ranges")
	if err != nil {
		writeError(w, err)
		return
	}
	p, err := a.b.Plan(r.Context(), change, withRanges)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// ringAdd starts adding a group: POST /v1/ring/groups {"id": N, "weight": W},
// both optional (the next free id, weight 1).
func (a *API) ringAdd(w http.ResponseWriter, r *http.Request) {
	raw, err := readBody(w, r, "body", 4<<10)
	if err != nil {
		writeError(w, err)
		return
	}
	body, err := decodeGroupBody(raw, false)
	if err != nil {
		writeError(w, err)
		return
	}
	a.changeRing(w, r, layout.RingChange{Add: &layout.GroupWeight{Group: base.GroupID(body.ID), Weight: body.Weight}})
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
func (a *API) ringRemove(w http.ResponseWriter, r *http.Request) {
	g, err := groupParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	a.changeRing(w, r, layout.RingChange{Remove: g})
}

// ringWeight starts changing a weight: PUT /v1/ring/groups/{id}/weight
// {"weight": W}.
func (a *API) ringWeight(w http.ResponseWriter, r *http.Request) {
	g, err := groupParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	raw, err := readBody(w, r, "body", 4<<10)
	if err != nil {
		writeError(w, err)
		return
	}
	body, err := decodeGroupBody(raw, true)
	if err != nil {
		writeError(w, err)
		return
	}
	if body.ID != 0 && base.GroupID(body.ID) != g {
		writeError(w, badRequest(fmt.Sprintf("body names group %d, the path group %d", body.ID, g)))
		return
	}
	a.changeRing(w, r, layout.RingChange{Weight: &layout.GroupWeight{Group: g, Weight: body.Weight}})
}

// ringAbort undoes the ring change in motion: DELETE /v1/ring/migration.
// 409 once a transfer has flipped, 404 with no change in motion.
func (a *API) ringAbort(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := a.b.AbortRingChange(ctx); err != nil {
		writeError(w, err)
		return
	}
	info, err := a.b.Ring()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, info)
}

// pinLeader pins a group's leader: PUT /v1/groups/{id}/leader
// {"node": ID}; DELETE lifts the pin.
func (a *API) pinLeader(w http.ResponseWriter, r *http.Request) {
	g, err := groupParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var node base.NodeID
	if r.Method == http.MethodPut {
		raw, err := readBody(w, r, "body", 4<<10)
		if err != nil {
			writeError(w, err)
			return
		}
		if node, err = decodeLeaderBody(raw); err != nil {
			writeError(w, err)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := a.b.PinLeader(ctx, g, node); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]interface{}{"group": g, "pinned": node})
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
func (a *API) changeRing(w http.ResponseWriter, r *http.Request, c layout.RingChange) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	got, err := a.b.ChangeRing(ctx, c)
	if err != nil {
		writeError(w, err)
		return
	}
	info, err := a.b.Ring()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, struct {
		Started string `json:"started"`
		raftnode.RingInfo
	}{got.String(), info})
}

func (a *API) lookup(w http.ResponseWriter, r *http.Request) {
	vals, err := parseQuery(r)
	if err != nil {
		writeError(w, err)
		return
	}
	key := vals.Get("key")
	if key == "" {
		writeError(w, badRequest("lookup needs ?key=K"))
		return
	}
	if len(key) > a.cfg.MaxKeyBytes {
		writeError(w, &errTooLarge{what: "key", size: int64(len(key)), limit: int64(a.cfg.MaxKeyBytes)})
		return
	}
	l, err := a.b.Lookup([]byte(key))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

// decodeJoin parses a join request body.
func decodeJoin(b []byte) (layout.NodeInfo, error) {
	var body struct {
		ID       base.NodeID `json:"id"`
		HTTPAddr string      `json:"http_addr"`
		RaftAddr string      `json:"raft_addr"`
		Weight   float64     `json:"weight"`
	}
	dec := json.NewDecoder(bytesReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || dec.More() {
		return layout.NodeInfo{}, badRequest(fmt.Sprintf("join body: want JSON {\"id\",\"http_addr\",\"raft_addr\"[,\"weight\"]}: %v", err))
	}
	info := layout.NodeInfo{ID: body.ID, HTTPAddr: body.HTTPAddr, RaftAddr: body.RaftAddr, Weight: body.Weight}
	if info.ID == "" || info.HTTPAddr == "" || info.RaftAddr == "" {
		return info, badRequest("join body: id, http_addr and raft_addr are all required")
	}
	if err := layout.CheckMember(info); err != nil {
		return info, err
	}
	return info, nil
}

func (a *API) join(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, "body", 64<<10)
	if err != nil {
		writeError(w, err)
		return
	}
	info, err := decodeJoin(body)
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := a.b.Join(ctx, info); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"joined": string(info.ID)})
}

// nodeParam is the {id} of a node's path, percent-decoded: a node whose id
// predates the id rules (a '/' in it, say) can still be named, escaped.
func nodeParam(r *http.Request) (string, error) {
	raw := mux.Vars(r)["id"]
	id, err := url.PathUnescape(raw)
	if err != nil || id == "" {
		return "", badRequest(fmt.Sprintf("node id %q: want a non-empty, percent-encoded id", raw))
	}
	return id, nil
}

func (a *API) removeNode(w http.ResponseWriter, r *http.Request) {
	id, err := nodeParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	force, err := boolParam(r, "force")
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	rm, err := a.b.RemoveNode(ctx, base.NodeID(id), raftnode.RemoveOptions{Force: force})
	if err != nil {
		writeError(w, err)
		return
	}
	if rm.Draining {
		// The node leaves once its replicas have moved: GET
		// /v1/cluster shows the progress.
		writeJSON(w, http.StatusAccepted, map[string]interface{}{"removing": id, "draining": true, "replicas": rm.Replicas})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": id})
}

// cluster shows members, their replicas and leaderships, and the replica
// move in progress: GET /v1/cluster.
// peerSecret hands the cluster's peer secret to a node about to join (GET
// /v1/cluster/peer-secret): with it, the node's Raft port and its peers'
// accept each other. 409 when the cluster has none.
func (a *API) peerSecret(w http.ResponseWriter, r *http.Request) {
	s, err := a.b.PeerSecret()
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, raftnode.PeerSecretDoc{PeerSecret: hex.EncodeToString(s)})
}

func (a *API) cluster(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.b.Cluster(r.Context()))
}

// drainNode moves a node's replicas off it (PUT) or lets it hold replicas
// again (DELETE): /v1/cluster/nodes/{id}/drain.
func (a *API) drainNode(w http.ResponseWriter, r *http.Request) {
	id, err := nodeParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	on := r.Method == http.MethodPut
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := a.b.DrainNode(ctx, base.NodeID(id), on); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]interface{}{"node": id, "draining": on})
}

func (a *API) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ok, reason := a.b.Ready()
	if !ok {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]interface{}{"ready": false, "reason": reason, "code": base.CodeUnavailable, "error": reason})
		return
	}
	writeJSON(w, http.StatusOK, map[string]interface{}{"ready": true})
}

// forward serves a batch of requests another node forwarded to this one.
func (a *API) forward(w http.ResponseWriter, r *http.Request) {
	if v := a.b.ProtocolVersion(); v > protocol.Unversioned {
		w.Header().Set(protocol.VersionHeader, strconv.Itoa(v))
	}
	body, err := readBody(w, r, "body", 4*a.cfg.MaxValueBytes+64<<20)
	if err != nil {
		writeError(w, err)
		return
	}
	batch, err := protocol.DecodeBatch(body)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a.b.ServeBatch(r.Context(), batch))
}

// readBody reads a request body of at most limit bytes, chunked or not;
// what names it in a 413.
func readBody(w http.ResponseWriter, r *http.Request, what string, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		// Refused before a byte is read: a client that sent
		// "Expect: 100-continue" is never invited to send it, and the
		// connection closes rather than drain it.
		w.Header().Set("Connection", "close")
		return nil, &errTooLarge{what: what, size: r.ContentLength, limit: limit}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, &errTooLarge{what: what, size: r.ContentLength, limit: limit}
		}
		return nil, badRequest("reading body: " + err.Error())
	}
	return b, nil
}

// faultBody is the body of POST /v1/debug/fault.
type faultBody struct {
	Block []string `json:"block"`
}

// fault sets the Raft fault hook: {"block": ["host:port", ...]} cuts those
// peers off; {"block": []} heals.
func (a *API) fault(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, "body", 64<<10)
	if err != nil {
		writeError(w, err)
		return
	}
	var fb faultBody
	dec := json.NewDecoder(bytesReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fb); err != nil {
		writeError(w, badRequest("fault body: want JSON {\"block\": [raft addresses]}: "+err.Error()))
		return
	}
	a.b.BlockPeers(fb.Block)
	writeJSON(w, http.StatusOK, map[string]interface{}{"blocked": fb.Block})
}

func (a *API) verifyAll(w http.ResponseWriter, r *http.Request) {
	a.verify(w, r, func(ctx context.Context, o verify.Options) ([]api.GroupVerification, error) {
		return a.b.VerifyAll(ctx, o)
	})
}

func (a *API) verifyGroup(w http.ResponseWriter, r *http.Request) {
	id, err := groupParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	a.verify(w, r, func(ctx context.Context, o verify.Options) ([]api.GroupVerification, error) {
		v, err := a.b.Verify(ctx, id, o)
		return []api.GroupVerification{v}, err
	})
}

// verify reads the options, runs fn under the verification's deadline and
// answers whether every group agrees.
func (a *API) verify(w http.ResponseWriter, r *http.Request, fn func(context.Context, verify.Options) ([]api.GroupVerification, error)) {
	o, err := verifyOptions(r)
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), verifyTimeout(o))
	defer cancel()
	if o.Deep {
		extendDeadlines(w) // a deep verification reads all the data
	}
	vs, err := fn(ctx, o)
	if err != nil {
		writeError(w, err)
		return
	}
	body := api.Verification{Agree: true, Groups: vs}
	for _, v := range vs {
		body.Agree = body.Agree && v.Agree
	}
	writeJSON(w, http.StatusOK, body)
}

// verifyOptions reads ?repair=false, which reports a divergent replica
// without reinstalling it, and ?deep=false, which compares only the trees
// kept alongside the data instead of recomputing every root from it.
func verifyOptions(r *http.Request) (verify.Options, error) {
	o := verify.Options{Deep: true}
	for _, p := range []struct {
		name string
		dst  *bool
		neg  bool
	}{{"repair", &o.NoRepair, true}, {"deep", &o.Deep, false}} {
		if r.URL.Query().Get(p.name) == "" {
			continue
		}
		v, err := boolParam(r, p.name)
		if err != nil {
			return o, err
		}
		*p.dst = v != p.neg
	}
	return o, nil
}

// verifyTimeout bounds a verification: a deep one reads all the data.
func verifyTimeout(o verify.Options) time.Duration {
	if o.Deep {
		return 10 * time.Minute
	}
	return 60 * time.Second
}

func (a *API) snapshot(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
	defer cancel()
	res, err := a.b.SnapshotAll(ctx)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]interface{}{"groups": res})
}
