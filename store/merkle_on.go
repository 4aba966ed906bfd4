//go:build !ringkv_nomerkle

package store

// maintainMerkle is false only in builds tagged ringkv_nomerkle, which
// exist to measure what keeping the tree costs; their roots are meaningless.
const maintainMerkle = true
