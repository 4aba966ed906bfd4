//go:build ringkv_nomerkle

package store

// maintainMerkle is false in this build, which exists only to measure what
// keeping the Merkle tree costs: roots stay those of an empty store.
const maintainMerkle = false
