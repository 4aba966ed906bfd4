package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/raftnode"
)

// listEntry is one element of a recurse answer; Value is base64, as in
// Consul, since values are arbitrary bytes. KeyBase64 is the key's exact
// bytes when they are not valid UTF-8 (which a JSON string cannot hold).
type listEntry struct {
	Key         string `json:"key"`
	KeyBase64   string `json:"key_base64,omitempty"`
	Value       []byte `json:"value"`
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
	Group       uint32 `json:"group"`
}

// jsonKey is how a key travels in JSON: as text, with its base64 beside it
// when it is not valid UTF-8, or (key_encoding=base64) as base64 alone.
func jsonKey(key []byte, keysBase64 bool) (text, b64 string) {
	switch {
	case keysBase64:
		return base64.StdEncoding.EncodeToString(key), ""
	case !utf8.Valid(key):
		return string(key), base64.StdEncoding.EncodeToString(key)
	}
	return string(key), ""
}

// errListDone ends a filtered list that has shown as many keys as asked.
var errListDone = errors.New("list done")

// listFlushBytes is how much of a list's answer is gathered before it is
// written out.
const listFlushBytes = 32 << 10

func (a *API) list(w http.ResponseWriter, r *http.Request, prefix []byte, q kvQuery) error {
	if q.blocking {
		// Before taking a list slot: a waiting list holds none.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(blockWait(q) + 2*watchCheck))
		a.waitListChange(r.Context(), prefix, q.cursor, q)
	}
	release, err := a.listSlot(r.Context())
	if err != nil {
		return err
	}
	defer release()
	// Without a cursor (a group led by a node of an earlier release,
	// which keeps no history) the list is still answered.
	if cursor, err := a.listCursor(r.Context()); err == nil {
		w.Header().Set(hdrKVCursor, cursor.String())
	}
	o := raftnode.ListOptions{Prefix: prefix, Limit: q.limit, KeysOnly: q.keysOnly, Consistency: q.consistency}
	if q.hasAfter {
		o.After = q.after
	}
	lw := &listWriter{w: w, q: q, buf: make([]byte, 0, listFlushBytes+4096)}
	emit := lw.add
	if id, ok := identityOf(r.Context()); ok && !id.IsManagement() {
		// Only the keys the token may read, as many as asked for: the
		// limit counts what is shown, not what is read.
		limit := o.Limit
		o.Limit = 0
		emit = func(kv protocol.KV) error {
			if !id.Allows(kv.Key, acl.Read) {
				return nil
			}
			if limit > 0 && lw.n >= limit {
				return errListDone
			}
			return lw.add(kv)
		}
	}
	err = a.b.ListEach(r.Context(), o, emit)
	if errors.Is(err, errListDone) {
		err = nil
	}
	if err == nil {
		err = lw.finish()
	}
	if err == nil {
		return nil
	}
	if !lw.started {
		return err
	}
	// Half an array is already on its way: cut the connection, so that
	// the client sees a broken answer, never a short one that parses.
	a.log.Warn("list cut short", "prefix", fmt.Sprintf("%q", prefix), "err", err)
	panic(http.ErrAbortHandler)
}

// listWriter writes a list's JSON array element by element, as
// encoding/json would write the whole array.
type listWriter struct {
	w       http.ResponseWriter
	q       kvQuery
	buf     []byte
	n       int
	started bool // the status line went out
}

func (lw *listWriter) add(kv protocol.KV) error {
	if lw.n == 0 {
		lw.buf = append(lw.buf, '[')
	} else {
		lw.buf = append(lw.buf, ',')
	}
	lw.n++
	key, key64 := jsonKey(kv.Key, lw.q.keysBase64)
	switch {
	case !lw.q.keysOnly:
		e := listEntry{Key: key, KeyBase64: key64, Value: kv.Value, CreateIndex: kv.CreateIndex, ModifyIndex: kv.ModifyIndex, Group: uint32(kv.Group)}
		if e.Value == nil {
			e.Value = []byte{}
		}
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		lw.buf = append(lw.buf, b...)
	case key64 != "":
		// A key a JSON string cannot hold is an object in a keys list.
		lw.buf = append(lw.buf, `{"key_base64":`...)
		lw.buf = appendJSONString(lw.buf, key64)
		lw.buf = append(lw.buf, '}')
	default:
		lw.buf = appendJSONString(lw.buf, key)
	}
	if len(lw.buf) >= listFlushBytes {
		return lw.flush()
	}
	return nil
}

func (lw *listWriter) flush() error {
	if !lw.started {
		lw.started = true
		lw.w.Header().Set("Content-Type", "application/json")
		lw.w.WriteHeader(http.StatusOK)
	}
	_, err := lw.w.Write(lw.buf)
	lw.buf = lw.buf[:0]
	return err
}

func (lw *listWriter) finish() error {
	if lw.n == 0 {
		lw.buf = append(lw.buf, '[')
	}
	lw.buf = append(lw.buf, "]\n"...)
	if !lw.started {
		lw.w.Header().Set("Content-Length", strconv.Itoa(len(lw.buf)))
	}
	return lw.flush()
}

// listSlot waits for one of the MaxConcurrentLists slots, for at most
// ListQueueWait; it returns the slot's release.
func (a *API) listSlot(ctx context.Context) (func(), error) {
	t := time.NewTimer(a.cfg.ListQueueWait)
	defer t.Stop()
	select {
	case a.lists <- struct{}{}:
		return func() { <-a.lists }, nil
	case <-t.C:
		return nil, fmt.Errorf("%w: %d lists are running on this node, the most it runs at once; retry, or list in pages with limit and after",
			base.ErrUnavailable, cap(a.lists))
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: the client went away while its list waited", base.ErrUnavailable)
	}
}
