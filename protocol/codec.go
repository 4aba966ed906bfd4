package protocol

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/ringkv/ringkv/base"
)

// The bodies of stream frames are binary: a version byte, fixed-size
// fields, unsigned varints, and byte strings as a varint length and the
// bytes.
//
//	request: 1 op:u8 flags:u8 group:u32 deadline_ms:u32 consistency:u8
//	         cas:varint index:varint term:varint key:bytes value:bytes
//	result:  1 0 flags:u8 served_by:bytes raft_index:varint
//	           [write: key:bytes index group raft_index raft_term (varints)]
//	           [entry: key:bytes value:bytes create modify group (varints)]
//	result:  1 1 code:bytes error:bytes index:varint group:varint leader:bytes
//
// A request carries only what puts, deletes, gets and waits use.
const streamCodecVersion = 1

// Codes of the streamed ops and read consistencies; 0 is unused for ops and
// means the default for consistency.
var (
	streamOps          = []Op{"", OpPut, OpDelete, OpGet, OpWait}
	streamConsistences = []Consistency{"", Linearizable, Lease, Stale}
)

const (
	reqHasCAS = 1 << iota
	reqAsync
	reqFlags = reqHasCAS | reqAsync
)

const (
	resWrite = 1 << iota
	resEntry
	resAsync
	resFlags = resWrite | resEntry | resAsync
)

func codeOf[T comparable](list []T, v T) byte {
	for i, x := range list {
		if x == v {
			return byte(i)
		}
	}
	return 0xff
}

func appendBytes(b, s []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// encodeStreamRequest encodes a request whose op is streamed.
func encodeStreamRequest(it BatchItem) []byte {
	b := make([]byte, 0, 32+len(it.Key)+len(it.Value))
	var flags byte
	if it.HasCAS {
		flags |= reqHasCAS
	}
	if it.Async {
		flags |= reqAsync
	}
	b = append(b, streamCodecVersion, codeOf(streamOps, it.Op), flags)
	b = binary.BigEndian.AppendUint32(b, uint32(it.Group))
	b = binary.BigEndian.AppendUint32(b, uint32(min(max(it.DeadlineMS, 0), math.MaxUint32)))
	b = append(b, codeOf(streamConsistences, it.Consistency))
	b = binary.AppendUvarint(b, it.CAS)
	b = binary.AppendUvarint(b, it.Index)
	b = binary.AppendUvarint(b, it.Term)
	b = appendBytes(b, it.Key)
	return appendBytes(b, it.Value)
}

// DecodeStreamRequest parses and validates a request frame's body.
func DecodeStreamRequest(body []byte) (BatchItem, error) {
	var it BatchItem
	d := decoder{b: body}
	if v := d.byte(); v != streamCodecVersion {
		return it, fmt.Errorf("%w: request encoding version %d", base.ErrBadRequest, v)
	}
	op, flags := d.byte(), d.byte()
	it.Group = base.GroupID(d.u32())
	it.DeadlineMS = int64(d.u32())
	cons := d.byte()
	it.CAS, it.Index, it.Term = d.uvarint(), d.uvarint(), d.uvarint()
	it.Key, it.Value = d.bytes(), d.bytes()
	switch {
	case d.err != nil:
		return it, d.err
	case len(d.b) > 0:
		return it, fmt.Errorf("%w: %d bytes after the request", base.ErrBadRequest, len(d.b))
	case op == 0 || int(op) >= len(streamOps):
		return it, fmt.Errorf("%w: op %d is not forwarded on a stream", base.ErrBadRequest, op)
	case flags&^reqFlags != 0:
		return it, fmt.Errorf("%w: request flags %#x", base.ErrBadRequest, flags)
	case int(cons) >= len(streamConsistences):
		return it, fmt.Errorf("%w: consistency %d", base.ErrBadRequest, cons)
	case it.DeadlineMS <= 0:
		return it, fmt.Errorf("%w: deadline %d ms", base.ErrBadRequest, it.DeadlineMS)
	}
	it.Op, it.Consistency = streamOps[op], streamConsistences[cons]
	it.HasCAS, it.Async = flags&reqHasCAS != 0, flags&reqAsync != 0
	if err := it.Validate(); err != nil {
		return it, err
	}
	return it, nil
}

// encodeStreamResult encodes a response or an error.
func encodeStreamResult(r BatchResult) []byte {
	if r.Error != nil {
		w := r.Error
		b := make([]byte, 0, 32+len(w.Error)+len(w.Code)+len(w.Leader))
		b = append(b, streamCodecVersion, 1)
		b = appendBytes(b, []byte(w.Code))
		b = appendBytes(b, []byte(w.Error))
		b = binary.AppendUvarint(b, w.Index)
		b = binary.AppendUvarint(b, uint64(w.Group))
		return appendBytes(b, []byte(w.Leader))
	}
	resp := r.Response
	var flags byte
	size := 32 + len(resp.ServedBy)
	if w := resp.Write; w != nil {
		flags |= resWrite
		if w.Async {
			flags |= resAsync
		}
		size += 40 + len(w.Key)
	}
	if e := resp.Entry; e != nil {
		flags |= resEntry
		size += 40 + len(e.Key) + len(e.Value)
	}
	b := make([]byte, 0, size)
	b = append(b, streamCodecVersion, 0, flags)
	b = appendBytes(b, []byte(resp.ServedBy))
	b = binary.AppendUvarint(b, resp.RaftIndex)
	if w := resp.Write; w != nil {
		b = appendBytes(b, w.Key)
		b = binary.AppendUvarint(b, w.Index)
		b = binary.AppendUvarint(b, uint64(w.Group))
		b = binary.AppendUvarint(b, w.RaftIndex)
		b = binary.AppendUvarint(b, w.RaftTerm)
	}
	if e := resp.Entry; e != nil {
		b = appendBytes(b, e.Key)
		b = appendBytes(b, e.Value)
		b = binary.AppendUvarint(b, e.CreateIndex)
		b = binary.AppendUvarint(b, e.ModifyIndex)
		b = binary.AppendUvarint(b, uint64(e.Group))
	}
	return b
}

// decodeStreamResult parses a result frame's body.
func decodeStreamResult(body []byte) (BatchResult, error) {
	var r BatchResult
	d := decoder{b: body}
	version, kind := d.byte(), d.byte()
	if d.err == nil && version != streamCodecVersion {
		return r, fmt.Errorf("%w: result encoding version %d", errFrame, version)
	}
	switch kind {
	case 1:
		w := base.WireError{Code: string(d.bytes()), Error: string(d.bytes()), Index: d.uvarint()}
		w.Group = uint32(d.group())
		w.Leader = string(d.bytes())
		r.Error = &w
	case 0:
		flags := d.byte()
		resp := Response{ServedBy: base.NodeID(d.bytes()), RaftIndex: d.uvarint()}
		if flags&^resFlags != 0 || (flags&resAsync != 0 && flags&resWrite == 0) {
			return r, fmt.Errorf("%w: result flags %#x", errFrame, flags)
		}
		if flags&resWrite != 0 {
			w := WriteResult{Key: d.bytes(), Index: d.uvarint(), Group: d.group(), RaftIndex: d.uvarint(), RaftTerm: d.uvarint(), Async: flags&resAsync != 0}
			resp.Write = &w
		}
		if flags&resEntry != 0 {
			e := KV{Key: d.bytes(), Value: d.bytes(), CreateIndex: d.uvarint(), ModifyIndex: d.uvarint(), Group: d.group()}
			resp.Entry = &e
		}
		r.Response = &resp
	default:
		if d.err == nil {
			return r, fmt.Errorf("%w: result kind %d", errFrame, kind)
		}
	}
	if d.err != nil {
		return BatchResult{}, fmt.Errorf("%w: result: %v", errFrame, d.err)
	}
	if len(d.b) > 0 {
		return BatchResult{}, fmt.Errorf("%w: %d bytes after the result", errFrame, len(d.b))
	}
	return r, nil
}

// decoder reads a body front to back; the first error sticks and every
// later read returns zero.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or malformed %s", base.ErrBadRequest, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) u32() uint32 {
	if len(d.b) < 4 {
		d.fail("integer")
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) group() base.GroupID {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail("group")
		return 0
	}
	return base.GroupID(v)
}

// bytes returns a byte string (nil when empty). It shares the body's
// memory, which readFrame allocates afresh for every frame.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("byte string")
		return nil
	}
	if n == 0 {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}
