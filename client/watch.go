package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/ringkv/ringkv/api"
)

// WatchOptions qualify a watch.
type WatchOptions struct {
	// Since resumes right after the event whose cursor it is; empty
	// starts at the current state.
	Since string
	// Initial first delivers every key under the prefix as a put, then
	// the changes (not with Since).
	Initial bool
}

// WatchEvent is one change a watch delivers, or, with Err set, its end.
type WatchEvent struct {
	api.WatchEvent
	// Cursor is the watch's position after this event: WatchOptions.Since
	// resumes right after it.
	Cursor string
	// Err, on the last event only, says why the watch ended: its context,
	// or an answer no reconnection can change (a compacted cursor, a
	// token no longer allowed).
	Err error
}

// maxEventBytes bounds one line of a change stream (a 1 MiB value is
// about 1.4 MiB in base64).
const maxEventBytes = 16 << 20

// Watch follows the changes under prefix (GET /v1/watch/{prefix}). The
// channel delivers them in the order the node sends them and closes after
// an event with Err. A broken stream (the node died, the network
// dropped) is opened again, with backoff, from the last cursor, through
// whichever node the client's transport picks: a client made with
// NewCluster goes on through the other nodes.
func (c *Client) Watch(ctx context.Context, prefix string, o WatchOptions) <-chan WatchEvent {
	out := make(chan WatchEvent)
	go func() {
		defer close(out)
		cursor, initial := o.Since, o.Initial
		b := &backoff.ExponentialBackOff{InitialInterval: 50 * time.Millisecond, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: 2 * time.Second}
		for {
			delivered, err := c.watchOnce(ctx, prefix, cursor, initial, func(ev WatchEvent) bool {
				select {
				case out <- ev:
					cursor = ev.Cursor
					return true
				case <-ctx.Done():
					return false
				}
			})
			if delivered {
				initial = false // resumed by cursor from now on
				b.Reset()
			}
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			if final(err) {
				select {
				case out <- WatchEvent{Cursor: cursor, Err: err}:
				case <-ctx.Done():
				}
				return
			}
			select {
			case <-time.After(b.NextBackOff()):
			case <-ctx.Done():
			}
		}
	}()
	return out
}

// final says whether err ends a watch: its context ended, or the server
// refused it for good.
func final(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var e *Error
	if !errors.As(err, &e) {
		return false // the transport: open again
	}
	switch e.Code {
	case "compacted", "bad_request", "unauthorized", "forbidden", "not_found", "method_not_allowed":
		return true
	}
	return false
}

// watchOnce opens one stream and hands its events to emit until it ends;
// delivered says whether an event (or the stream's start, with initial)
// went out. Its error is the stream's error event, or how it broke.
func (c *Client) watchOnce(ctx context.Context, prefix, cursor string, initial bool, emit func(WatchEvent) bool) (delivered bool, err error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("since", cursor)
	}
	if initial {
		q.Set("initial", "true")
	}
	resp, err := c.Stream(ctx, http.MethodGet, "/v1/watch/"+url.PathEscape(prefix), q, nil)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	err = ReadEvents(resp.Body, func(id, event, data string) error {
		if event == "error" {
			e := &Error{Status: http.StatusOK}
			if json.Unmarshal([]byte(data), e) != nil || e.Code == "" {
				e.Message, e.Code = data, "stream_error"
			}
			return e
		}
		var ev WatchEvent
		if err := json.Unmarshal([]byte(data), &ev.WatchEvent); err != nil {
			return fmt.Errorf("watch: an event that is not JSON: %v", err)
		}
		ev.Cursor = id
		if !emit(ev) {
			return ctx.Err()
		}
		delivered = true
		return nil
	})
	if err == nil {
		err = io.ErrUnexpectedEOF // a stream only ends with an error event
	}
	return delivered, err
}

// ReadEvents reads server-sent events from r, calling fn with each
// event's id (the last one given), type ("" for a message) and data,
// until r ends (nil) or fn fails (its error). Comments are skipped.
func ReadEvents(r io.Reader, fn func(id, event, data string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventBytes)
	var id, event string
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if len(data) > 0 {
				if err := fn(id, event, strings.Join(data, "\n")); err != nil {
					return err
				}
			}
			event, data = "", data[:0]
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "event":
			event = value
		case "data":
			data = append(data, value)
		}
	}
	return sc.Err()
}
