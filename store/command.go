package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
)

// Op is a command's operation.
type Op uint8

// Operations a Command can carry.
const (
	OpPut    Op = 1
	OpDelete Op = 2
	// OpVerify changes nothing: every replica records its Merkle root at
	// the entry's index under the entry's key (a nonce), so that replicas
	// can be compared at exactly the same point of the log.
	OpVerify Op = 3
	// OpBatch packs several put and delete commands on distinct keys into
	// one log entry (see EncodeBatch); they apply in order at the entry's
	// index.
	OpBatch Op = 4
)

const (
	flagCAS    = 1 << 0
	flagDeep   = 1 << 1
	knownFlags = flagCAS | flagDeep
)

// ErrBadCommand is returned by DecodeCommand for bytes that are not a
// command.
var ErrBadCommand = errors.New("store: malformed command")

// Command is one state-machine mutation.
type Command struct {
	Op    Op
	Key   []byte
	Value []byte // OpPut only
	// CAS, when HasCAS, makes the command conditional on the key's modify
	// index being CAS (0: the key must be absent).
	HasCAS bool
	CAS    uint64
	// Deep (OpVerify only) also recomputes the Merkle root from the
	// stored entries at the command's index, checking the data itself
	// rather than the tree kept alongside it.
	Deep bool
}

// Encode returns the command's wire form:
// op byte, flags byte, [uvarint cas], uvarint key length, key, value.
func (c Command) Encode() []byte {
	b := make([]byte, 0, 2+2*binary.MaxVarintLen64+len(c.Key)+len(c.Value))
	var flags byte
	if c.HasCAS {
		flags |= flagCAS
	}
	if c.Deep {
		flags |= flagDeep
	}
	b = append(b, byte(c.Op), flags)
	if c.HasCAS {
		b = binary.AppendUvarint(b, c.CAS)
	}
	b = binary.AppendUvarint(b, uint64(len(c.Key)))
	b = append(b, c.Key...)
	return append(b, c.Value...)
}

// DecodeCommand parses Encode's output. The returned slices alias b.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) < 2 {
		return Command{}, fmt.Errorf("%w: %d bytes", ErrBadCommand, len(b))
	}
	c := Command{Op: Op(b[0])}
	flags := b[1]
	if c.Op != OpPut && c.Op != OpDelete && c.Op != OpVerify {
		return Command{}, fmt.Errorf("%w: op %d", ErrBadCommand, b[0])
	}
	if flags&^knownFlags != 0 {
		return Command{}, fmt.Errorf("%w: flags %#x", ErrBadCommand, flags)
	}
	b = b[2:]
	if flags&flagDeep != 0 {
		if c.Op != OpVerify {
			return Command{}, fmt.Errorf("%w: deep flag on op %d", ErrBadCommand, c.Op)
		}
		c.Deep = true
	}
	if flags&flagCAS != 0 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return Command{}, fmt.Errorf("%w: cas index", ErrBadCommand)
		}
		c.HasCAS, c.CAS, b = true, v, b[n:]
	}
	kl, n := binary.Uvarint(b)
	if n <= 0 || kl == 0 || kl > uint64(len(b)-n) {
		return Command{}, fmt.Errorf("%w: key length", ErrBadCommand)
	}
	b = b[n:]
	c.Key = b[:kl:kl]
	c.Value = b[kl:]
	if (c.Op == OpDelete || c.Op == OpVerify) && len(c.Value) != 0 {
		return Command{}, fmt.Errorf("%w: op %d carries a value", ErrBadCommand, c.Op)
	}
	if c.Op == OpVerify && c.HasCAS {
		return Command{}, fmt.Errorf("%w: verify with cas", ErrBadCommand)
	}
	return c, nil
}

// MaxBatch bounds the commands in one OpBatch entry.
const MaxBatch = 4096

// EncodeBatch packs encoded put and delete commands on distinct keys into
// one entry: op byte, flags byte (0), uvarint count, then for each command
// its uvarint length and bytes.
func EncodeBatch(cmds [][]byte) []byte {
	n := 2 + binary.MaxVarintLen64
	for _, c := range cmds {
		n += binary.MaxVarintLen64 + len(c)
	}
	b := make([]byte, 0, n)
	b = append(b, byte(OpBatch), 0)
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	return b
}

// IsBatch reports whether b is an OpBatch entry.
func IsBatch(b []byte) bool { return len(b) >= 2 && Op(b[0]) == OpBatch }

// batchSeed hashes keys for DecodeBatch's check for repeats.
var batchSeed = maphash.MakeSeed()

// DecodeBatch parses EncodeBatch's output into its commands, each checked
// as DecodeCommand does. Only puts and deletes may be packed, on distinct
// keys, so that each key still changes at most once per index.
func DecodeBatch(b []byte) ([]Command, error) {
	if !IsBatch(b) || b[1] != 0 {
		return nil, fmt.Errorf("%w: not a batch", ErrBadCommand)
	}
	b = b[2:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n == 0 || n > MaxBatch || n > uint64(len(b)) {
		return nil, fmt.Errorf("%w: batch count", ErrBadCommand)
	}
	b = b[k:]
	cmds := make([]Command, 0, n)
	// Keys are told apart by hash (no string per key); a hash seen before
	// is checked against every key so far, so a collision is not taken
	// for a repeat.
	seen := make(map[uint64]struct{}, n)
	for i := uint64(0); i < n; i++ {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: batch command %d length", ErrBadCommand, i)
		}
		c, err := DecodeCommand(b[k : k+int(l)])
		if err != nil {
			return nil, fmt.Errorf("batch command %d: %w", i, err)
		}
		if c.Op != OpPut && c.Op != OpDelete {
			return nil, fmt.Errorf("%w: batch command %d is op %d", ErrBadCommand, i, c.Op)
		}
		h := maphash.Bytes(batchSeed, c.Key)
		if _, maybe := seen[h]; maybe {
			for _, o := range cmds {
				if bytes.Equal(o.Key, c.Key) {
					return nil, fmt.Errorf("%w: batch touches key %q twice", ErrBadCommand, c.Key)
				}
			}
		}
		seen[h] = struct{}{}
		cmds = append(cmds, c)
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the batch", ErrBadCommand, len(b))
	}
	return cmds, nil
}
