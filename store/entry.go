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
	create, modify, value, err := parseRecord(key, b)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Key: append([]byte(nil), key...), CreateIndex: create, ModifyIndex: modify}
	if withValue {
		e.Value = append([]byte{}, value...)
	}
	return e, nil
}

// parseRecord parses encodeRecord's output without copying: value aliases
// b, so it is only valid while b is (inside the transaction). Applies use
// it for the record a write replaces, which they read and forget there.
func parseRecord(key, b []byte) (create, modify uint64, value []byte, err error) {
	create, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, nil, fmt.Errorf("store: corrupt record for key %q", key)
	}
	b = b[n:]
	modify, n = binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, nil, fmt.Errorf("store: corrupt record for key %q", key)
	}
	return create, modify, b[n:], nil
}
