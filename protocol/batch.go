package protocol

import (
	"encoding/json"
	"fmt"

	"github.com/ringkv/ringkv/base"
)

// Batch is the body of a forwarding call: requests bound for one node,
// each with its own remaining deadline.
type Batch struct {
	Requests []BatchItem `json:"requests"`
}

// BatchItem is one forwarded request.
type BatchItem struct {
	Request
	DeadlineMS int64 `json:"deadline_ms"`
}

// BatchReply answers a Batch, one result per request, in order.
type BatchReply struct {
	Results []BatchResult `json:"results"`
}

// BatchResult is a response or an error.
type BatchResult struct {
	Response *Response       `json:"response,omitempty"`
	Error    *base.WireError `json:"error,omitempty"`
}

// DecodeBatch parses and validates a forwarding call's body.
func DecodeBatch(b []byte) (Batch, error) {
	var batch Batch
	if err := json.Unmarshal(b, &batch); err != nil {
		return batch, fmt.Errorf("%w: %v", base.ErrBadRequest, err)
	}
	if len(batch.Requests) == 0 || len(batch.Requests) > maxBatch {
		return batch, fmt.Errorf("%w: batch of %d requests (want 1 to %d)", base.ErrBadRequest, len(batch.Requests), maxBatch)
	}
	for i, it := range batch.Requests {
		if err := it.Validate(); err != nil {
			return batch, fmt.Errorf("request %d: %w", i, err)
		}
		if it.DeadlineMS < 0 {
			return batch, fmt.Errorf("%w: request %d: negative deadline", base.ErrBadRequest, i)
		}
	}
	return batch, nil
}

// maxBatch bounds the requests in one forwarding call.
const maxBatch = 256
