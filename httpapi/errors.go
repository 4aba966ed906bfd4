package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/ringkv/ringkv/raftnode"
)

// Codes only the HTTP layer produces.
const (
	codeTooLarge         = "too_large"
	codeMethodNotAllowed = "method_not_allowed"
)

// errTooLarge is a request over a size limit.
type errTooLarge struct {
	what  string
	size  int64
	limit int64
}

func (e *errTooLarge) Error() string {
	return e.what + " is over the limit"
}

// statusOf is the one table from error code to HTTP status.
var statusOf = map[string]int{
	raftnode.CodeBadRequest:   http.StatusBadRequest,
	raftnode.CodeNotFound:     http.StatusNotFound,
	raftnode.CodeCASFailed:    http.StatusPreconditionFailed,
	raftnode.CodeNotLeader:    http.StatusMisdirectedRequest,
	raftnode.CodeNoLeader:     http.StatusServiceUnavailable,
	raftnode.CodeUnavailable:  http.StatusServiceUnavailable,
	raftnode.CodeTimeout:      http.StatusGatewayTimeout,
	raftnode.CodeClusterFull:  http.StatusConflict,
	raftnode.CodeConflict:     http.StatusConflict,
	raftnode.CodeLost:         http.StatusGone,
	raftnode.CodeMoved:        http.StatusServiceUnavailable,
	raftnode.CodeInternal:     http.StatusInternalServerError,
	raftnode.CodeUnauthorized: http.StatusUnauthorized,
	raftnode.CodeForbidden:    http.StatusForbidden,
	codeTooLarge:              http.StatusRequestEntityTooLarge,
	codeMethodNotAllowed:      http.StatusMethodNotAllowed,
}

// errorBody is the JSON body of every error response.
type errorBody struct {
	raftnode.WireError
	Limit int64 `json:"limit,omitempty"`
	Size  int64 `json:"size,omitempty"`
}

// writeError answers err as JSON with its status.
func writeError(w http.ResponseWriter, err error) {
	body := errorBody{WireError: raftnode.ToWire(err)}
	var tl *errTooLarge
	if errors.As(err, &tl) {
		body.Code, body.Limit = codeTooLarge, tl.limit
		if tl.size > 0 { // unknown for a chunked body
			body.Size = tl.size
		}
	}
	status, ok := statusOf[body.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if errors.Is(err, raftnode.ErrOutcomeUnknown) {
		// Only a write has an unknown outcome; a read or a wait that
		// ran out of time (ErrTimeout) changed nothing.
		body.Error += " (the write may or may not have been applied; read the key to find out)"
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func badRequest(msg string) error {
	return &wrapped{msg: msg, err: raftnode.ErrBadRequest}
}

type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }
