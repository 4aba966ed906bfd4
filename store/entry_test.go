package store

import (
	"bytes"
	"testing"
)

// FuzzParseRecord: a stored record parses back to what was encoded, the
// copying and the aliasing decoders agree, and no bytes make either panic.
func FuzzParseRecord(f *testing.F) {
	f.Add(uint64(1), uint64(7), []byte("value"), []byte{})
	f.Add(uint64(0), uint64(1<<63), []byte{}, []byte{0x80})
	f.Add(uint64(300), uint64(301), []byte{0, 1, 2}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, create, modify uint64, value, raw []byte) {
		c, m, v, err := parseRecord([]byte("k"), encodeRecord(create, modify, value))
		if err != nil || c != create || m != modify || !bytes.Equal(v, value) {
			t.Fatalf("round trip (%d, %d, %q): got (%d, %d, %q, %v)", create, modify, value, c, m, v, err)
		}
		c, m, v, err = parseRecord([]byte("k"), raw)
		e, derr := decodeRecord([]byte("k"), raw, true)
		if (err == nil) != (derr == nil) {
			t.Fatalf("parseRecord error %v, decodeRecord error %v", err, derr)
		}
		if err == nil && (e.CreateIndex != c || e.ModifyIndex != m || !bytes.Equal(e.Value, v) || string(e.Key) != "k") {
			t.Fatalf("parseRecord (%d, %d, %q) but decodeRecord %+v", c, m, v, e)
		}
	})
}
