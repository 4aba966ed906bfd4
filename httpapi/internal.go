package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/ringkv/ringkv/protocol"
)

// forward serves a batch of requests another node forwarded to this one.
func (a *API) forward(w http.ResponseWriter, r *http.Request) error {
	if v := a.b.ProtocolVersion(); v > protocol.Unversioned {
		w.Header().Set(protocol.VersionHeader, strconv.Itoa(v))
	}
	body, err := readBody(w, r, "body", 4*a.cfg.MaxValueBytes+64<<20)
	if err != nil {
		return err
	}
	batch, err := protocol.DecodeBatch(body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.b.ServeBatch(r.Context(), batch))
	return nil
}

// faultBody is the body of POST /v1/debug/fault.
type faultBody struct {
	Block []string `json:"block"`
}

// fault sets the Raft fault hook: {"block": ["host:port", ...]} cuts those
// peers off; {"block": []} heals.
func (a *API) fault(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, "body", 64<<10)
	if err != nil {
		return err
	}
	var fb faultBody
	dec := json.NewDecoder(bytesReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fb); err != nil {
		return badRequest("fault body: want JSON {\"block\": [raft addresses]}: " + err.Error())
	}
	a.b.BlockPeers(fb.Block)
	writeJSON(w, http.StatusOK, map[string]interface{}{"blocked": fb.Block})
	return nil
}
