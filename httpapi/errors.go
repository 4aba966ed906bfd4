package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/ringkv/ringkv/base"
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
	base.CodeBadRequest:   http.StatusBadRequest,
	base.CodeNotFound:     http.StatusNotFound,
	base.CodeCASFailed:    http.StatusPreconditionFailed,
	base.CodeNotLeader:    http.StatusMisdirectedRequest,
	base.CodeNoLeader:     http.StatusServiceUnavailable,
	base.CodeUnavailable:  http.StatusServiceUnavailable,
	base.CodeTimeout:      http.StatusGatewayTimeout,
	base.CodeClusterFull:  http.StatusConflict,
	base.CodeConflict:     http.StatusConflict,
	base.CodeLost:         http.StatusGone,
	base.CodeMoved:        http.StatusServiceUnavailable,
	base.CodeInternal:     http.StatusInternalServerError,
	base.CodeUnauthorized: http.StatusUnauthorized,
	base.CodeForbidden:    http.StatusForbidden,
	base.CodeCompacted:    http.StatusGone,
	codeTooLarge:          http.StatusRequestEntityTooLarge,
	codeMethodNotAllowed:  http.StatusMethodNotAllowed,
}

// errorBody is the JSON body of every error response.
type errorBody struct {
	base.WireError
	Limit int64 `json:"limit,omitempty"`
	Size  int64 `json:"size,omitempty"`
}

// handler is an endpoint that answers success itself and returns the
// error it fails with; answer writes that error.
type handler func(w http.ResponseWriter, r *http.Request) error

// answer adapts h to net/http: an error h returns is answered as JSON with
// its status (writeError). A handler that has begun a successful answer
// (a stream) returns nil after it, having no way left to report one.
func answer(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			writeError(w, err)
		}
	}
}

// writeError answers err as JSON with its status.
func writeError(w http.ResponseWriter, err error) {
	body := errorBody{WireError: base.ToWire(err)}
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
	if errors.Is(err, base.ErrOutcomeUnknown) {
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
	return &wrapped{msg: msg, err: base.ErrBadRequest}
}

type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }
