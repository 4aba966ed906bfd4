package store

import (
	"encoding/binary"
	"fmt"
)

// Entry is a stored key with its value and indexes.
type Entry struct {
	Key         []byte
	Value       []byte
	CreateIndex uint64
	ModifyIndex uint64
}

// encodeRecord lays out a stored value: uvarint create index, uvarint
// modify index, value bytes.
func encodeRecord(create, modify uint64, value []byte) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64+len(value))
	b = binary.AppendUvarint(b, create)
	b = binary.AppendUvarint(b, modify)
	return append(b, value...)
}

// decodeRecord parses encodeRecord's output; the value is copied, since
// bbolt's memory is only valid inside the transaction.
func decodeRecord(key, b []byte, withValue bool) (Entry, error) {
	create, n := binary.Uvarint(b)
	if n <= 0 {
		return Entry{}, fmt.Errorf("store: corrupt record for key %q", key)
	}
	b = b[n:]
	modify, n := binary.Uvarint(b)
	if n <= 0 {
		return Entry{}, fmt.Errorf("store: corrupt record for key %q", key)
	}
	e := Entry{Key: append([]byte(nil), key...), CreateIndex: create, ModifyIndex: modify}
	if withValue {
		e.Value = append([]byte{}, b[n:]...)
	}
	return e, nil
}
