package httpapi

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/mux"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/raftnode"
)

func wireErr(msg, code string) base.WireError { return base.WireError{Error: msg, Code: code} }

func (a *API) status(w http.ResponseWriter, r *http.Request) error {
	st := a.b.Status()
	st.Replication = a.cfg.Replication
	writeJSON(w, http.StatusOK, st)
	return nil
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

func (a *API) join(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, "body", 64<<10)
	if err != nil {
		return err
	}
	info, err := decodeJoin(body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := a.b.Join(ctx, info); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"joined": string(info.ID)})
	return nil
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

func (a *API) removeNode(w http.ResponseWriter, r *http.Request) error {
	id, err := nodeParam(r)
	if err != nil {
		return err
	}
	force, err := boolParam(r, "force")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	rm, err := a.b.RemoveNode(ctx, base.NodeID(id), raftnode.RemoveOptions{Force: force})
	if err != nil {
		return err
	}
	if rm.Draining {
		// The node leaves once its replicas have moved: GET
		// /v1/cluster shows the progress.
		writeJSON(w, http.StatusAccepted, api.NodeRemoval{Removing: base.NodeID(id), Draining: true, Replicas: rm.Replicas})
		return nil
	}
	writeJSON(w, http.StatusOK, api.NodeRemoval{Removed: base.NodeID(id)})
	return nil
}

// peerSecret hands the cluster's peer secret to a node about to join (GET
// /v1/cluster/peer-secret): with it, the node's Raft port and its peers'
// accept each other. 409 when the cluster has none.
func (a *API) peerSecret(w http.ResponseWriter, r *http.Request) error {
	s, err := a.b.PeerSecret()
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, raftnode.PeerSecretDoc{PeerSecret: hex.EncodeToString(s)})
	return nil
}

// cluster shows members, their replicas and leaderships, and the replica
// move in progress: GET /v1/cluster.
func (a *API) cluster(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, a.b.Cluster(r.Context()))
	return nil
}

// drainNode moves a node's replicas off it (PUT) or lets it hold replicas
// again (DELETE): /v1/cluster/nodes/{id}/drain.
func (a *API) drainNode(w http.ResponseWriter, r *http.Request) error {
	id, err := nodeParam(r)
	if err != nil {
		return err
	}
	on := r.Method == http.MethodPut
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := a.b.DrainNode(ctx, base.NodeID(id), on); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]interface{}{"node": id, "draining": on})
	return nil
}

func (a *API) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) error {
	// The answer names the node, so that a client given addresses (a
	// load balancer's, a container's published port) learns which
	// member each one reaches.
	w.Header().Set(hdrServedBy, string(a.b.ID()))
	ok, reason := a.b.Ready()
	if !ok {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]interface{}{"ready": false, "reason": reason, "code": base.CodeUnavailable, "error": reason})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]interface{}{"ready": true})
	return nil
}
