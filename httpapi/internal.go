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
	// Via, when present, replaces the dial routes; absent, they stay.
	Via *map[string]string `json:"via"`
}

// decodeFault reads a fault body.
func decodeFault(body []byte) (faultBody, error) {
	var fb faultBody
	dec := json.NewDecoder(bytesReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fb); err != nil {
		return fb, badRequest("fault body: want JSON {\"block\": [raft addresses], \"via\": {raft address: address to dial}}: " + err.Error())
	}
	if fb.Via != nil {
		for k, v := range *fb.Via {
			if k == "" || v == "" {
				return fb, badRequest("fault body: via maps a raft address to the address to dial; neither may be empty")
			}
		}
	}
	return fb, nil
}

// fault sets the Raft fault hook: {"block": ["host:port", ...]} cuts those
// peers off, {"block": []} (or no block) heals; {"via": {"peer": "addr"}}
// dials peer at addr from now on (a link between the two nodes).
func (a *API) fault(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, "body", 64<<10)
	if err != nil {
		return err
	}
	fb, err := decodeFault(body)
	if err != nil {
		return err
	}
	a.b.BlockPeers(fb.Block)
	out := map[string]interface{}{"blocked": fb.Block}
	if fb.Via != nil {
		a.b.RoutePeers(*fb.Via)
		out["via"] = *fb.Via
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
