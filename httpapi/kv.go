package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/raftnode"
)

// Response headers of the key-value API.
const (
	hdrKVIndex   = "X-KV-Index"
	hdrGroup     = "X-Raft-Group"
	hdrRaftIndex = "X-Raft-Index"
	hdrRaftTerm  = "X-Raft-Term"
	hdrServedBy  = "X-Served-By"
)

// writeBody is the JSON answer to a write. appendJSON writes it by hand;
// FuzzWriteBodyJSON holds the two to the same bytes, so a field added
// here goes into appendJSON too.
type writeBody struct {
	Key         string `json:"key"`
	KeyBase64   string `json:"key_base64,omitempty"`
	Index       uint64 `json:"index"`
	Group       uint32 `json:"group"`
	RaftIndex   uint64 `json:"raft_index"`
	Deleted     bool   `json:"deleted,omitempty"`
	Replication string `json:"replication"`
	RaftTerm    uint64 `json:"raft_term,omitempty"`
}

func (a *API) kvRequest(r *http.Request) ([]byte, kvQuery, error) {
	q, err := parseKVQuery(r.URL.RawQuery)
	if err != nil {
		return nil, q, err
	}
	key, err := parseKey(r.URL.EscapedPath(), a.cfg.MaxKeyBytes)
	if err != nil {
		return nil, q, err
	}
	if len(key) == 0 && !(q.recurse && r.Method != http.MethodPut) {
		return nil, q, badRequest("empty key: use /v1/kv/{key}")
	}
	return key, q, nil
}

// respondWrite answers a put or delete: its error, or its headers and JSON.
func respondWrite(w http.ResponseWriter, res protocol.WriteResult, by base.NodeID, err error, deleted, keysBase64 bool) error {
	h := w.Header()
	if err != nil {
		h.Set(hdrServedBy, string(by))
		return err
	}
	// Every write is answered so: the values share one slice, and the
	// names are already canonical.
	vals := []string{string(by), strconv.FormatUint(uint64(res.Group), 10), strconv.FormatUint(res.RaftIndex, 10), "application/json", ""}
	h[hdrServedBy], h[hdrGroup], h[hdrRaftIndex], h["Content-Type"] = vals[0:1:1], vals[1:2:2], vals[2:3:3], vals[3:4:4]
	status := http.StatusOK
	if res.Async {
		// Accepted: in the leader's log, not yet on a majority.
		status = http.StatusAccepted
		vals[4] = strconv.FormatUint(res.RaftTerm, 10)
		h[hdrRaftTerm] = vals[4:5:5]
	}
	w.WriteHeader(status)
	key, key64 := jsonKey(res.Key, keysBase64)
	body := writeBody{Key: key, KeyBase64: key64, Index: res.Index, Group: uint32(res.Group), RaftIndex: res.RaftIndex,
		Deleted: deleted, Replication: replicationOf(res), RaftTerm: res.RaftTerm}
	buf := make([]byte, 0, 128)
	w.Write(body.appendJSON(buf))
	return nil
}

// appendJSON appends what json.Encoder writes for b, newline included,
// without reflection: every write is answered with one.
func (b writeBody) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"key":`...)
	dst = appendJSONString(dst, b.Key)
	if b.KeyBase64 != "" {
		dst = append(dst, `,"key_base64":`...)
		dst = appendJSONString(dst, b.KeyBase64)
	}
	dst = append(dst, `,"index":`...)
	dst = strconv.AppendUint(dst, b.Index, 10)
	dst = append(dst, `,"group":`...)
	dst = strconv.AppendUint(dst, uint64(b.Group), 10)
	dst = append(dst, `,"raft_index":`...)
	dst = strconv.AppendUint(dst, b.RaftIndex, 10)
	if b.Deleted {
		dst = append(dst, `,"deleted":true`...)
	}
	dst = append(dst, `,"replication":`...)
	dst = appendJSONString(dst, b.Replication)
	if b.RaftTerm != 0 {
		dst = append(dst, `,"raft_term":`...)
		dst = strconv.AppendUint(dst, b.RaftTerm, 10)
	}
	return append(dst, "}\n"...)
}

// appendJSONString appends s as encoding/json quotes it. Printable ASCII
// other than the characters it escapes is copied; anything else goes
// through encoding/json itself.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

func replicationOf(res protocol.WriteResult) string {
	if res.Async {
		return "async"
	}
	return "sync"
}

// async reports whether a write asks for, or defaults to, asynchronous
// acknowledgement. A compare-and-swap is always synchronous.
func (a *API) async(q kvQuery) bool {
	if q.hasCAS {
		return false
	}
	return q.replication == "async" || (q.replication == "" && a.cfg.Replication == "async")
}

func (a *API) putKV(w http.ResponseWriter, r *http.Request) error {
	key, q, err := a.kvRequest(r)
	if err != nil {
		return err
	}
	if q.recurse {
		return badRequest("recurse is not valid on PUT")
	}
	if err := a.allowKey(r, "kv", key, acl.Write); err != nil {
		return err
	}
	value, err := readBody(w, r, "value", a.cfg.MaxValueBytes)
	if err != nil {
		return err
	}
	res, by, err := a.b.Put(r.Context(), key, value, raftnode.WriteOptions{HasCAS: q.hasCAS, CAS: q.cas, Async: a.async(q)})
	return respondWrite(w, res, by, err, false, q.keysBase64)
}

func (a *API) deleteKV(w http.ResponseWriter, r *http.Request) error {
	key, q, err := a.kvRequest(r)
	if err != nil {
		return err
	}
	if q.recurse {
		return badRequest("recursive delete is not supported; delete keys one by one")
	}
	if err := a.allowKey(r, "kv", key, acl.Write); err != nil {
		return err
	}
	res, by, err := a.b.Delete(r.Context(), key, raftnode.WriteOptions{HasCAS: q.hasCAS, CAS: q.cas, Async: a.async(q)})
	return respondWrite(w, res, by, err, true, q.keysBase64)
}

func (a *API) getKV(w http.ResponseWriter, r *http.Request) error {
	key, q, err := a.kvRequest(r)
	if err != nil {
		return err
	}
	if q.recurse {
		return a.list(w, r, key, q)
	}
	if err := a.allowKey(r, "kv", key, acl.Read); err != nil {
		return err
	}
	var res raftnode.ReadResult
	if q.blocking {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(blockWait(q) + 2*watchCheck))
		res, err = a.getBlocking(r.Context(), key, q)
	} else {
		res, err = a.b.GetAt(r.Context(), key, q.consistency, q.minIndex)
	}
	if err != nil {
		w.Header().Set(hdrServedBy, string(res.ServedBy))
		if errors.Is(err, base.ErrNotFound) {
			// What a blocking query on the key's creation passes back.
			w.Header().Set(hdrKVIndex, "0")
		}
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set(hdrKVIndex, strconv.FormatUint(res.ModifyIndex, 10))
	h.Set(hdrGroup, strconv.FormatUint(uint64(res.Group), 10))
	h.Set(hdrRaftIndex, strconv.FormatUint(res.RaftIndex, 10))
	h.Set(hdrServedBy, string(res.ServedBy))
	h.Set("Content-Length", strconv.Itoa(len(res.Value)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(res.Value)
	}
	return nil
}

// maxWait bounds POST /v1/wait's timeout.
const maxWait = 5 * time.Minute

// wait answers POST /v1/wait?group=G&index=N[&term=T][&timeout=2s]: 200
// once index N of group G is committed by a majority (turning an
// asynchronous write into a durable one), 504 if not within the timeout,
// 410 if the entry at N is no longer the one appended in term T.
func (a *API) wait(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	g, err := strconv.ParseUint(q.Get("group"), 10, 32)
	if err != nil || g == 0 {
		return badRequest("group: want a positive integer")
	}
	index, err := strconv.ParseUint(q.Get("index"), 10, 64)
	if err != nil || index == 0 {
		return badRequest("index: want a positive Raft index")
	}
	var term uint64
	if s := q.Get("term"); s != "" {
		if term, err = strconv.ParseUint(s, 10, 64); err != nil {
			return badRequest("term: want a non-negative integer")
		}
	}
	timeout := 2 * time.Second
	if s := q.Get("timeout"); s != "" {
		if timeout, err = time.ParseDuration(s); err != nil || timeout <= 0 || timeout > maxWait {
			return badRequest(fmt.Sprintf("timeout %q: want a duration up to %v", s, maxWait))
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	resp, err := a.b.Wait(ctx, base.GroupID(g), index, term)
	if err != nil {
		w.Header().Set(hdrServedBy, string(resp.ServedBy))
		return err
	}
	w.Header().Set(hdrServedBy, string(resp.ServedBy))
	writeJSON(w, http.StatusOK, map[string]interface{}{"group": g, "index": index, "committed": true})
	return nil
}
