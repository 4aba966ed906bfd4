// Package snapshot defines ringkv's checkpoint format: one file layout used
// for Raft snapshots, for the per-group parts of backups and for restores.
//
// A checkpoint is a fixed-size header, the state image, and a trailer:
//
//	magic   [8]byte  "RKVCKPT\x00"
//	version uint32   FormatVersion
//	group   uint32   Raft group id
//	index   uint64   last Raft index applied to the image
//	term    uint64   term of that entry (0 when unknown)
//	keys    uint64   number of keys in the image
//	size    uint64   length of the image in bytes
//	root    [32]byte Merkle root of the image's entries (see Tree)
//	hcrc    uint32   CRC-32C of the header fields above
//	image   [size]byte
//	digest  [32]byte SHA-256 of the image
//
// All integers are big-endian. Readers check the magic, version, header CRC
// and, once the image is consumed, its digest, so a truncated or altered
// checkpoint is refused before anything is swapped in.
//
// The package also holds Tree, the Merkle tree over a group's key-hash
// space (merkle.go): leaves are buckets of key hashes, each the XOR of its
// entries' digests, so the tree is updated in O(depth) per change and two
// replicas with the same entries have the same root; Diff compares two
// trees top-down and names the differing buckets.
//
// The package uses the standard library only.
package snapshot
