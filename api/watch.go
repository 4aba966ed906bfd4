package api

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ringkv/ringkv/base"
)

// Event types of a watch.
const (
	EventPut    = "put"
	EventDelete = "delete"
)

// WatchEvent is one change a watch delivers (GET /v1/watch/{prefix}, the
// data of one server-sent event). Value travels as base64 (null for a
// delete); KeyBase64 holds the key's exact bytes when they are not valid
// UTF-8, which a JSON string cannot hold.
type WatchEvent struct {
	Type      string       `json:"type"`
	Key       string       `json:"key"`
	KeyBase64 []byte       `json:"key_base64,omitempty"`
	Value     []byte       `json:"value"`
	Index     uint64       `json:"index"`
	Group     base.GroupID `json:"group"`
	RaftIndex uint64       `json:"raft_index"`
}

// KeyBytes is the event's key as exact bytes.
func (e WatchEvent) KeyBytes() []byte {
	if e.KeyBase64 != nil {
		return e.KeyBase64
	}
	return []byte(e.Key)
}

// EventKey sets an event's key fields from its bytes.
func EventKey(e *WatchEvent, key []byte) {
	e.Key = string(key)
	if !utf8.Valid(key) {
		e.KeyBase64 = key
	}
}

// A Cursor is a watch's position: for each group, the number of the last
// change of its history delivered (0: none). A group it does not name is
// read from its first change. It is written "g:n,g:n" in group order.
type Cursor map[base.GroupID]uint64

// maxCursorGroups bounds the groups a cursor may name.
const maxCursorGroups = 4096

// String is the cursor's text form, which ParseCursor reads.
func (c Cursor) String() string { return string(c.AppendText(nil)) }

// AppendText appends the cursor's text form to b.
func (c Cursor) AppendText(b []byte) []byte {
	var arr [16]base.GroupID
	ids := arr[:0]
	for g := range c {
		ids = append(ids, g)
	}
	slices.Sort(ids)
	for i, g := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(g), 10)
		b = append(b, ':')
		b = strconv.AppendUint(b, c[g], 10)
	}
	return b
}

// Clone returns a copy of c.
func (c Cursor) Clone() Cursor {
	out := make(Cursor, len(c))
	for g, n := range c {
		out[g] = n
	}
	return out
}

// ParseCursor reads a cursor's text form. An empty string is the empty
// cursor.
func ParseCursor(s string) (Cursor, error) {
	c := Cursor{}
	if s == "" {
		return c, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > maxCursorGroups {
		return nil, fmt.Errorf("%w: a cursor of %d groups (at most %d)", base.ErrBadRequest, len(parts), maxCursorGroups)
	}
	for _, p := range parts {
		gs, ns, ok := strings.Cut(p, ":")
		g, gerr := strconv.ParseUint(gs, 10, 32)
		n, nerr := strconv.ParseUint(ns, 10, 64)
		if !ok || gerr != nil || nerr != nil || g == 0 {
			return nil, fmt.Errorf("%w: cursor %q: want GROUP:POSITION pairs separated by commas", base.ErrBadRequest, s)
		}
		if _, dup := c[base.GroupID(g)]; dup {
			return nil, fmt.Errorf("%w: cursor %q names group %d twice", base.ErrBadRequest, s, g)
		}
		c[base.GroupID(g)] = n
	}
	return c, nil
}
